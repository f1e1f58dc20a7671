import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { IncomingMessage } from 'node:http';
import { SigilError } from '../errors.js';
import type { FaultHandler, FaultServer } from '../../test/helpers/fault-server.js';
import { UpstreamTestbed, answerJson } from '../../test/helpers/upstream-rig.js';
import type { UpstreamRig } from '../../test/helpers/upstream-rig.js';
import type { CallContext, Caller, Endpoint, Schedule } from './call.js';
import type { Exchange } from './http.js';

const DEADLINE_MS = 20_000;
const bed = new UpstreamTestbed();
after(() => bed.close());
const upstream = (handler: FaultHandler): Promise<FaultServer> => bed.server(handler);

/** A deadline timer the test fires by hand; records what was armed and cancelled. */
function handTimer(): { schedule: Schedule; armed: number[]; cancelled: number; fire(): void } {
  const fires: Array<() => void> = [];
  const t = {
    armed: [] as number[],
    cancelled: 0,
    schedule: ((fire, ms) => {
      fires.push(fire);
      t.armed.push(ms);
      return () => void t.cancelled++;
    }) as Schedule,
    fire: () => fires.forEach((f) => f()),
  };
  return t;
}

function caller(s: FaultServer, opts: { schedule?: Schedule } = {}): { caller: Caller; rig: UpstreamRig } {
  const rig = bed.rig({ timeoutMs: DEADLINE_MS });
  return { caller: rig.caller(s.url, opts.schedule), rig };
}

/** An endpoint reading the body as text; `over` replaces any of its fields. */
function endpoint(over: Partial<Endpoint<string>> = {}): Endpoint<string> {
  return {
    kind: 'manifest',
    what: 'thing a/b',
    method: 'GET',
    path: '/v2/a/b/things/x',
    deadline: true,
    answers: [200],
    async answer(res: Exchange, { http }: CallContext) {
      return (await http.readCapped(res, 1024, () => new SigilError({ code: 'INTERNAL', message: 'too big' }))).toString();
    },
    ...over,
  };
}

describe('Caller: the one skeleton of every upstream call', () => {
  test("the endpoint's method, path, query (in its order) and headers go to the upstream's origin; its answer is the result", async () => {
    const s = await upstream((_req, res) => answerJson(res, 200, 'hello'));
    const { caller: c } = caller(s);
    const got = await c.call(endpoint({ query: { n: '10', last: 'a b' }, headers: { accept: 'application/json' } }));
    assert.equal(got, '"hello"');
    assert.equal(s.requests.length, 1);
    assert.equal(s.requests[0].method, 'GET');
    assert.equal(s.requests[0].url, '/v2/a/b/things/x?n=10&last=a+b');
    assert.equal(s.requests[0].headers.accept, 'application/json');
  });

  test("a path that leaves the upstream's origin is refused before any request is sent", async () => {
    const s = await upstream((_req, res) => answerJson(res, 200, {}));
    const { caller: c, rig } = caller(s);
    await assert.rejects(c.call(endpoint({ path: '//elsewhere.example/v2/' })), {
      code: 'INTERNAL',
      message: 'upstream test-upstream: refusing a URL off the upstream',
    });
    assert.equal(s.requests.length, 0);
    assert.equal(await rig.counter('sigil_upstream_errors_total', { kind: 'manifest', code: 'INTERNAL' }), 1);
  });

  test('every call answers a 401 challenge: the token is fetched and the request retried once', async () => {
    const s = await upstream((req, res) => {
      if (req.url?.startsWith('/token')) return answerJson(res, 200, { token: 't0k' });
      if (req.headers.authorization !== 'Bearer t0k') {
        return answerJson(res, 401, {}, { 'www-authenticate': `Bearer realm="http://${req.headers.host}/token"` });
      }
      answerJson(res, 200, 'in');
    });
    assert.equal(await caller(s).caller.call(endpoint()), '"in"');
    assert.deepEqual(
      s.requests.map((r) => [r.url.split('?')[0], r.headers.authorization ?? null]),
      [['/v2/a/b/things/x', null], ['/token', null], ['/v2/a/b/things/x', 'Bearer t0k']],
    );
  });

  test("a status the endpoint does not take is error-map's error: a 404 is its notFound with the upstream's message", async () => {
    const s = await upstream((req, res) => {
      if (req.url?.includes('/gone/')) return answerJson(res, 404, { errors: [{ code: 'MANIFEST_UNKNOWN', message: 'no such thing' }] });
      answerJson(res, 503, {});
    });
    const { caller: c } = caller(s);
    const notFound = await c.call(endpoint({ path: '/v2/gone/things/x', notFound: 'MANIFEST_UNKNOWN' })).catch((e: unknown) => e);
    assert.ok(notFound instanceof SigilError);
    assert.equal(notFound.code, 'MANIFEST_UNKNOWN');
    assert.equal(notFound.message, 'no such thing');
    // without notFound, a 404 is the upstream's error, passed on
    await assert.rejects(c.call(endpoint({ path: '/v2/gone/things/x' })), { code: 'UPSTREAM_ERROR', status: 404 });
    await assert.rejects(c.call(endpoint()), {
      code: 'UPSTREAM_BAD_RESPONSE',
      message: 'upstream test-upstream: thing a/b: the upstream answered 503',
    });
    // a status the endpoint takes is its own to read
    assert.equal(await c.call(endpoint({ path: '/v2/gone/things/x', answers: [404], answer: async (res) => `got ${res.status}` })), 'got 404');
  });

  test('ordinary answers are not counted as failures; upstream failures are counted by kind and code', async () => {
    const s = await upstream((req, res) => (req.url?.includes('/gone/') ? answerJson(res, 404, {}) : answerJson(res, 502, {})));
    const { caller: c, rig } = caller(s);
    await assert.rejects(c.call(endpoint({ kind: 'tags', path: '/v2/gone/tags/list', notFound: 'NAME_UNKNOWN' })), { code: 'NAME_UNKNOWN' });
    await assert.rejects(c.call(endpoint({ kind: 'referrers' })), { code: 'UPSTREAM_BAD_RESPONSE' });
    assert.equal(await rig.counter('sigil_upstream_errors_total', { kind: 'tags' }), 0);
    assert.equal(await rig.counter('sigil_upstream_errors_total', { upstream: 'test-upstream', kind: 'referrers', code: 'UPSTREAM_BAD_RESPONSE' }), 1);
  });

  test('past the metadata deadline: UPSTREAM_TIMEOUT naming what was asked and the deadline; the request is aborted', async () => {
    let arrived!: () => void;
    const waiting = new Promise<void>((resolve) => (arrived = resolve));
    let closed!: () => void;
    const aborted = new Promise<void>((resolve) => (closed = resolve));
    const s = await upstream((req: IncomingMessage) => {
      req.socket.once('close', closed);
      arrived(); // and never answer
    });
    const timer = handTimer();
    const { caller: c, rig } = caller(s, { schedule: timer.schedule });
    const call = c.call(endpoint());
    await waiting;
    timer.fire();
    await assert.rejects(call, {
      code: 'UPSTREAM_TIMEOUT',
      message: `upstream test-upstream: thing a/b: no answer within ${DEADLINE_MS} ms`,
    });
    await aborted;
    assert.deepEqual(timer.armed, [DEADLINE_MS]);
    assert.equal(timer.cancelled, 1);
    assert.equal(await rig.counter('sigil_upstream_errors_total', { kind: 'manifest', code: 'UPSTREAM_TIMEOUT' }), 1);
  });

  test('an endpoint without a deadline (a blob) arms no timer: its body is read after the call returned', async () => {
    let finish!: () => void;
    const more = new Promise<void>((resolve) => (finish = resolve));
    const s = await upstream(async (_req, res) => {
      res.writeHead(200, { 'content-length': '8' });
      res.write('head');
      await more;
      res.end('tail');
    });
    const timer = handTimer();
    const { caller: c } = caller(s, { schedule: timer.schedule });
    const res = await c.call({ ...endpoint({ kind: 'blob', deadline: false }), answer: async (r: Exchange) => r });
    assert.deepEqual(timer.armed, []);
    finish();
    assert.equal(Buffer.concat(await res.body.toArray()).toString(), 'headtail');
  });

  test('redirects are followed only for endpoints that ask for it', async () => {
    const s = await upstream((req, res) => {
      if (req.url === '/moved') return answerJson(res, 200, 'moved here');
      res.writeHead(307, { location: '/moved', 'content-length': '0' });
      res.end();
    });
    const { caller: c } = caller(s);
    assert.equal(await c.call(endpoint({ followRedirects: true })), '"moved here"');
    await assert.rejects(c.call(endpoint()), { code: 'UPSTREAM_BAD_RESPONSE', message: 'upstream test-upstream: thing a/b: unexpected upstream status 307' });
  });

  test('whatever else an endpoint throws is INTERNAL "<kind> failed unexpectedly", counted', async () => {
    const s = await upstream((_req, res) => answerJson(res, 200, {}));
    const { caller: c, rig } = caller(s);
    const bug = new TypeError('a bug');
    const e = await c.call(endpoint({ kind: 'tags', answer: () => Promise.reject(bug) })).catch((err: unknown) => err);
    assert.ok(e instanceof SigilError);
    assert.equal(e.code, 'INTERNAL');
    assert.equal(e.message, 'upstream test-upstream: tags failed unexpectedly');
    assert.equal(e.cause, bug);
    assert.equal(await rig.counter('sigil_upstream_errors_total', { kind: 'tags', code: 'INTERNAL' }), 1);
  });

  test("a failure that surfaces after the call returned (countError) is counted under the endpoint's kind", async () => {
    const s = await upstream((_req, res) => answerJson(res, 200, {}));
    const { caller: c, rig } = caller(s);
    const report = await c.call({ ...endpoint({ kind: 'blob', deadline: false }), answer: async (res, call) => (await res.body.dump(), call.countError) });
    report(new SigilError({ code: 'DIGEST_MISMATCH', message: 'late' }));
    report(new SigilError({ code: 'BLOB_UNKNOWN', message: 'an ordinary answer' }));
    assert.equal(await rig.counter('sigil_upstream_errors_total', { kind: 'blob', code: 'DIGEST_MISMATCH' }), 1);
    assert.equal(await rig.counter('sigil_upstream_errors_total', { kind: 'blob', code: 'BLOB_UNKNOWN' }), 0);
  });
});
