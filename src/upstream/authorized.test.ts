import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { FaultHandler, FaultServer } from '../../test/helpers/fault-server.js';
import { UpstreamTestbed, answerJson } from '../../test/helpers/upstream-rig.js';
import type { RigOptions, UpstreamRig } from '../../test/helpers/upstream-rig.js';
import { sendAuthorized } from './authorized.js';
import type { UpstreamRequest } from './authorized.js';

const bed = new UpstreamTestbed();
after(() => bed.close());
const upstream = (handler: FaultHandler): Promise<FaultServer> => bed.server(handler);
const rig = (opts: RigOptions = {}): UpstreamRig => bed.rig(opts);

function request(s: FaultServer, over: Partial<UpstreamRequest> = {}): UpstreamRequest {
  return {
    kind: 'manifest',
    method: 'GET',
    url: new URL('/v2/a/b/manifests/latest', s.url),
    headers: { accept: 'application/json' },
    scope: 'repository:a/b:pull',
    signal: undefined,
    ...over,
  };
}

/** Wants `Bearer good`; its own /token serves `token`. */
async function bearerUpstream(token: string): Promise<FaultServer> {
  return upstream((req, res) => {
    if (req.url?.startsWith('/token')) return answerJson(res, 200, { token });
    if (req.headers.authorization !== 'Bearer good') {
      return answerJson(res, 401, {}, { 'www-authenticate': `Bearer realm="http://${req.headers.host}/token",service="svc"` });
    }
    answerJson(res, 200, {});
  });
}

const paths = (s: FaultServer): string[] => s.requests.map((r) => r.url);

describe('sendAuthorized: one request, with the upstream auth flow', () => {
  test('no challenge: one request with the endpoint headers and nothing else; no credential', async () => {
    const s = await upstream((_req, res) => answerJson(res, 200, {}));
    const r = rig();
    const got = await sendAuthorized(r.http, r.auth, request(s));
    assert.equal(got.res.status, 200);
    assert.equal(got.credential, undefined);
    assert.equal(s.requests.length, 1);
    assert.equal(s.requests[0].headers.authorization, undefined);
    assert.equal(s.requests[0].headers.accept, 'application/json');
  });

  test("a 401 is answered once: the token for the request's scope is fetched and the request retried with it", async () => {
    const s = await bearerUpstream('good');
    const r = rig();
    const got = await sendAuthorized(r.http, r.auth, request(s));
    assert.equal(got.res.status, 200);
    assert.equal(got.credential?.header, 'Bearer good');
    assert.deepEqual(paths(s), ['/v2/a/b/manifests/latest', '/token?service=svc&scope=repository%3Aa%2Fb%3Apull', '/v2/a/b/manifests/latest']);
    assert.equal(s.requests[2].headers.authorization, 'Bearer good');
    assert.equal(s.requests[2].headers.accept, 'application/json');

    // the realm is known now: the next request sends the (cached) token up front
    const again = await sendAuthorized(r.http, r.auth, request(s));
    assert.equal(again.res.status, 200);
    assert.equal(s.requests.length, 4);
    assert.equal(s.requests[3].headers.authorization, 'Bearer good');
  });

  test('a 401 to the retry is UPSTREAM_DENIED after exactly two requests: never a loop', async () => {
    const s = await bearerUpstream('useless');
    const r = rig();
    await assert.rejects(sendAuthorized(r.http, r.auth, request(s)), {
      code: 'UPSTREAM_DENIED',
      message: 'upstream test-upstream refused access after authentication',
    });
    assert.deepEqual(paths(s).filter((p) => p.startsWith('/v2/')), ['/v2/a/b/manifests/latest', '/v2/a/b/manifests/latest']);
  });

  test('a Basic challenge gets the configured credentials, and none configured is UPSTREAM_DENIED without a retry', async () => {
    const s = await upstream((req, res) => {
      if (req.headers.authorization !== `Basic ${Buffer.from('u:p').toString('base64')}`) {
        return answerJson(res, 401, {}, { 'www-authenticate': 'Basic realm="registry"' });
      }
      answerJson(res, 200, {});
    });
    const withCreds = rig({ credentials: { username: 'u', password: 'p' } });
    const got = await sendAuthorized(withCreds.http, withCreds.auth, request(s));
    assert.equal(got.res.status, 200);
    assert.equal(got.credential?.kind, 'basic');

    const before = s.requests.length;
    const anonymous = rig();
    await assert.rejects(sendAuthorized(anonymous.http, anonymous.auth, request(s)), {
      code: 'UPSTREAM_DENIED',
      message: 'upstream test-upstream asks for credentials and none are configured',
    });
    assert.equal(s.requests.length - before, 1);
  });

  test('the credential never appears in a log record', async () => {
    const s = await bearerUpstream('good');
    const r = rig({ credentials: { username: 'u', password: 'secret-password' } });
    await sendAuthorized(r.http, r.auth, request(s));
    const logged = JSON.stringify(r.logs);
    assert.ok(r.logs.length >= 3, 'every request is logged at debug level');
    assert.ok(!logged.includes('good'), 'token logged');
    assert.ok(!logged.includes('secret-password') && !logged.includes(Buffer.from('u:secret-password').toString('base64')), 'password logged');
  });
});
