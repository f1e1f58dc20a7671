import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { FaultHandler, FaultServer } from '../../test/helpers/fault-server.js';
import { UpstreamTestbed } from '../../test/helpers/upstream-rig.js';
import type { SentCredential } from './auth.js';
import type { UpstreamRequest } from './authorized.js';
import { MAX_REDIRECTS } from './limits.js';
import { followRedirects } from './redirects.js';

const bed = new UpstreamTestbed();
after(() => bed.close());
const server = (handler: FaultHandler): Promise<FaultServer> => bed.server(handler);

const redirect = (location: string): FaultHandler => (_req, res) => {
  res.writeHead(302, { location, 'content-length': '0' });
  res.end();
};

const ok: FaultHandler = (_req, res) => {
  res.writeHead(200, { 'content-length': '4' });
  res.end('blob');
};

const TOKEN: SentCredential = { header: 'Bearer upstream-token', kind: 'bearer' };
const DESCRIBE = 'upstream test-upstream: blob sha256:ab of a/b';

/** Sends the first request to `upstream` as the auth step would (with TOKEN), then follows its redirects. */
async function follow(upstream: FaultServer, path = '/v2/a/b/blobs/sha256:ab'): Promise<{ status: number; body: string }> {
  const rig = bed.rig();
  const req: UpstreamRequest = { kind: 'blob', method: 'GET', url: new URL(path, upstream.url), headers: { range: 'bytes=0-' }, scope: undefined, signal: undefined };
  const first = await rig.http.send(req.kind, req.method, req.url, { ...req.headers, authorization: TOKEN.header }, undefined);
  const res = await followRedirects({ res: first, credential: TOKEN }, req, { http: rig.http, origin: new URL(upstream.url).origin, describe: DESCRIBE });
  return { status: res.status, body: Buffer.concat(await res.body.toArray()).toString() };
}

describe('followRedirects: blob redirects, credentials kept on the upstream', () => {
  test('an answer that is not a redirect is the answer', async () => {
    const s = await server(ok);
    assert.deepEqual(await follow(s), { status: 200, body: 'blob' });
    assert.equal(s.requests.length, 1);
  });

  test("another host gets the request's headers (Range) but not the upstream's Authorization; the signed URL is kept whole", async () => {
    const storage = await server(ok);
    const s = await server(redirect(`${storage.url}/bucket/blob?X-Signature=sig`));
    assert.deepEqual(await follow(s), { status: 200, body: 'blob' });
    assert.equal(storage.requests.length, 1);
    assert.equal(storage.requests[0].url, '/bucket/blob?X-Signature=sig');
    assert.equal(storage.requests[0].headers.range, 'bytes=0-');
    assert.equal(storage.requests[0].headers.authorization, undefined);
  });

  test("a target on the upstream's own origin (a relative Location too) keeps its Authorization", async () => {
    const s = await server((req, res) => (req.url === '/internal/blob' ? ok(req, res) : redirect('/internal/blob')(req, res)));
    assert.deepEqual(await follow(s), { status: 200, body: 'blob' });
    assert.equal(s.requests[1].url, '/internal/blob');
    assert.equal(s.requests[1].headers.authorization, 'Bearer upstream-token');
  });

  test('a loop ends after MAX_REDIRECTS hops: UPSTREAM_BAD_RESPONSE', async () => {
    const s = await server((req, res) => redirect(`${req.url ?? '/'}x`)(req, res));
    await assert.rejects(follow(s), { code: 'UPSTREAM_BAD_RESPONSE', message: `${DESCRIBE}: more than ${MAX_REDIRECTS} redirects` });
    assert.equal(s.requests.length, MAX_REDIRECTS + 1);
  });

  test('a target that is not http(s), carries user:password, or is missing is refused before it is contacted', async () => {
    const elsewhere = await server(ok);
    for (const location of ['file:///etc/passwd', `http://user:pass@${elsewhere.host}/blob`, 'gopher://x/']) {
      const s = await server(redirect(location));
      await assert.rejects(follow(s), { code: 'UPSTREAM_BAD_RESPONSE', message: `${DESCRIBE}: unusable redirect` }, location);
    }
    const noLocation = await server((_req, res) => {
      res.writeHead(307, { 'content-length': '0' });
      res.end();
    });
    await assert.rejects(follow(noLocation), { code: 'UPSTREAM_BAD_RESPONSE', message: `${DESCRIBE}: unusable redirect` });
    assert.equal(elsewhere.requests.length, 0);
  });
});
