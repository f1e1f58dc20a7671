import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import type { ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import { readFile, rm } from 'node:fs/promises';
import type { AddressInfo, Socket } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { pino } from 'pino';
import { Metrics } from '../../src/audit/metrics.js';
import type { UpstreamConfig } from '../../src/config/types.js';
import { isSigilError } from '../../src/errors.js';
import type { SigilError, SigilErrorCode } from '../../src/errors.js';
import type { Digest } from '../../src/oci/digest.js';
import { MT } from '../../src/oci/media-types.js';
import { UpstreamClient } from '../../src/upstream/client.js';
import type { Timeouts } from '../../src/upstream/client.js';
import { MANIFEST_MAX_BYTES, MAX_REDIRECTS } from '../../src/upstream/limits.js';
import { startFaultServer } from '../helpers/fault-server.js';
import type { FaultHandler, FaultServer } from '../helpers/fault-server.js';
import { freePort } from '../helpers/net.js';
import { tempDir } from '../helpers/temp.js';
import { selfSignedCert } from '../helpers/tls.js';
import { getBlob, pushImage } from '../helpers/push.js';
import type { PushedImage } from '../helpers/push.js';
import { startRegistry } from '../helpers/registry.js';
import type { RegistryHandle } from '../helpers/registry.js';
import { startTokenServer } from '../helpers/token-server.js';
import type { TokenServerHandle } from '../helpers/token-server.js';
import { sha256 } from '../helpers/digest.js';
import { fakeClock } from '../helpers/clock.js';
import { drain } from '../helpers/stream.js';

// ---------------------------------------------------------------- helpers


interface Harness {
  client: UpstreamClient;
  metrics: Metrics;
  logs: Array<Record<string, unknown>>;
  rawLogs: string[];
}

const clients: UpstreamClient[] = [];
const servers: FaultServer[] = [];

function makeClient(
  url: string,
  opts: {
    credentials?: { username: string; password: string };
    timeouts?: Partial<Timeouts>;
    now?: () => number;
    tls?: UpstreamConfig['tls'];
  } = {},
): Harness {
  const metrics = new Metrics({ defaultMetrics: false });
  const rawLogs: string[] = [];
  const logger = pino({ level: 'debug' }, { write: (s: string) => void rawLogs.push(s) });
  const cfg: UpstreamConfig = {
    name: 'test-upstream',
    aliases: [],
    url: new URL(url),
    staleIfError: false,
    verifyBlobDigests: true,
    ...(opts.credentials ? { credentials: opts.credentials } : {}),
    ...(opts.tls ? { tls: opts.tls } : {}),
  };
  const client = new UpstreamClient(cfg, { metrics, logger, timeouts: opts.timeouts, now: opts.now });
  clients.push(client);
  return {
    client,
    metrics,
    rawLogs,
    get logs() {
      return rawLogs.map((l) => JSON.parse(l) as Record<string, unknown>);
    },
  };
}

async function fault(handler: FaultHandler): Promise<FaultServer> {
  const s = await startFaultServer(handler);
  servers.push(s);
  return s;
}

async function rejectsWith(p: Promise<unknown>, code: SigilErrorCode): Promise<SigilError> {
  let caught: unknown;
  try {
    await p;
  } catch (err) {
    caught = err;
  }
  assert.ok(isSigilError(caught), `expected SigilError ${code}, got ${String(caught)}`);
  assert.equal(caught.code, code, caught.message);
  return caught;
}

async function counter(metrics: Metrics, name: string, labels: Record<string, string>): Promise<number> {
  const m = (await metrics.registry.getMetricsAsJSON()).find((x) => x.name === name);
  const v = (m?.values ?? []).find((x) => Object.entries(labels).every(([k, val]) => String(x.labels[k]) === val));
  return v === undefined ? 0 : Number(v.value);
}

function json(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const b = Buffer.from(JSON.stringify(body));
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': String(b.length), ...headers });
  res.end(b);
}

const OCI_MANIFEST = Buffer.from(
  JSON.stringify({
    schemaVersion: 2,
    mediaType: MT.OCI_MANIFEST,
    config: { mediaType: MT.OCI_EMPTY, digest: sha256(Buffer.from('{}')), size: 2 },
    layers: [],
  }),
);

/** Serves `bytes` as every manifest, with the given headers. */
function manifestServer(bytes: Buffer, headers: Record<string, string> = {}): Promise<FaultServer> {
  return fault((req, res) => {
    res.writeHead(200, { 'content-type': MT.OCI_MANIFEST, 'content-length': String(bytes.length), ...headers });
    res.end(req.method === 'HEAD' ? undefined : bytes);
  });
}

after(async () => {
  await Promise.all(clients.map((c) => c.close()));
  await Promise.all(servers.map((s) => s.stop()));
});

// ---------------------------------------------------------------- a real registry

describe('UpstreamClient against distribution 2.8', () => {
  let registry: RegistryHandle;
  let image: PushedImage;
  let dockerImage: PushedImage;
  let h: Harness;

  before(async () => {
    registry = await startRegistry();
    image = await pushImage({ url: registry.url }, 'team/app', 'v1', { layers: 2, layerSize: 400_000 });
    dockerImage = await pushImage({ url: registry.url }, 'team/app', 'docker', { format: 'docker' });
    await pushImage({ url: registry.url }, 'team/app', 'v2');
    h = makeClient(registry.url);
  });
  after(async () => {
    await registry?.stop();
  });

  test('ping answers', async () => {
    await h.client.ping();
  });

  test('manifest by tag: the exact bytes, their digest and media type', async () => {
    const m = await h.client.fetchManifest('team/app', 'v1');
    assert.deepEqual(m.bytes, image.manifest);
    assert.equal(m.digest, image.digest);
    assert.equal(m.mediaType, MT.OCI_MANIFEST);
  });

  test('manifest by digest, OCI and Docker', async () => {
    const m = await h.client.fetchManifest('team/app', image.digest);
    assert.equal(m.digest, image.digest);
    assert.deepEqual(m.bytes, image.manifest);
    const d = await h.client.fetchManifest('team/app', dockerImage.digest);
    assert.equal(d.mediaType, MT.DOCKER_MANIFEST);
    assert.equal(sha256(d.bytes), dockerImage.digest);
  });

  test('unknown tag and unknown digest: MANIFEST_UNKNOWN 404 with the registry code', async () => {
    const e = await rejectsWith(h.client.fetchManifest('team/app', 'nope'), 'MANIFEST_UNKNOWN');
    assert.equal(e.status, 404);
    assert.equal(e.oci, 'MANIFEST_UNKNOWN');
    await rejectsWith(h.client.fetchManifest('team/app', sha256(Buffer.from('x'))), 'MANIFEST_UNKNOWN');
  });

  test('blob GET streams the whole blob, digest checked', async () => {
    const layer = image.layers[0];
    const before = await counter(h.metrics, 'sigil_bytes_streamed_total', { upstream: 'test-upstream' });
    const r = await h.client.openBlob('team/app', layer.digest as Digest, { method: 'GET' });
    assert.equal(r.status, 200);
    assert.equal(r.headers['content-length'], String(layer.size));
    assert.ok(r.body);
    const got = await drain(r.body);
    assert.equal(got.error, undefined);
    assert.equal(got.bytes.length, layer.size);
    assert.equal(sha256(got.bytes), layer.digest);
    assert.deepEqual(got.bytes, (await getBlob({ url: registry.url }, 'team/app', layer.digest)).body);
    const after = await counter(h.metrics, 'sigil_bytes_streamed_total', { upstream: 'test-upstream' });
    assert.equal(after - before, layer.size);
  });

  test('blob HEAD: headers, no body', async () => {
    const layer = image.layers[1];
    const r = await h.client.openBlob('team/app', layer.digest as Digest, { method: 'HEAD' });
    assert.equal(r.status, 200);
    assert.equal(r.body, null);
    assert.equal(r.headers['content-length'], String(layer.size));
    // only safe headers pass
    for (const k of Object.keys(r.headers)) {
      assert.ok(['content-type', 'content-length', 'content-range', 'accept-ranges', 'etag'].includes(k), k);
    }
  });

  test('blob Range: 206 passed through with the part asked for', async () => {
    const layer = image.layers[0];
    const whole = (await getBlob({ url: registry.url }, 'team/app', layer.digest)).body;
    const r = await h.client.openBlob('team/app', layer.digest as Digest, { method: 'GET', range: 'bytes=100-1123' });
    assert.equal(r.status, 206);
    assert.equal(r.headers['content-range'], `bytes 100-1123/${layer.size}`);
    assert.ok(r.body);
    const got = await drain(r.body);
    assert.equal(got.error, undefined);
    assert.deepEqual(got.bytes, whole.subarray(100, 1124));
  });

  test('unknown blob: BLOB_UNKNOWN 404', async () => {
    const e = await rejectsWith(h.client.openBlob('team/app', sha256(Buffer.from('nope')), { method: 'GET' }), 'BLOB_UNKNOWN');
    assert.equal(e.status, 404);
  });

  test('tags: listed; distribution 2.8 ignores n, so upstreamPaginated is false', async () => {
    const all = await h.client.listTags('team/app', {});
    assert.equal(all.name, 'team/app');
    assert.deepEqual([...all.tags].sort(), ['docker', 'v1', 'v2']);
    assert.equal(all.upstreamPaginated, false);
    const page = await h.client.listTags('team/app', { n: 1 });
    assert.equal(page.upstreamPaginated, false);
    assert.equal(page.tags.length, 3);
    await rejectsWith(h.client.listTags('no/such', {}), 'NAME_UNKNOWN');
  });

  test('referrers: distribution 2.8 has no API → unsupported', async () => {
    assert.deepEqual(await h.client.referrers('team/app', image.digest as Digest), { kind: 'unsupported' });
    assert.deepEqual(await h.client.referrers('team/app', image.digest as Digest, MT.SIGSTORE_BUNDLE_V03), { kind: 'unsupported' });
  });

  test('metrics count requests by kind and status; debug logs carry kind, path, status and ms', async () => {
    assert.ok((await counter(h.metrics, 'sigil_upstream_requests_total', { kind: 'manifest', status: '200' })) >= 3);
    assert.ok((await counter(h.metrics, 'sigil_upstream_requests_total', { kind: 'blob', status: '206' })) >= 1);
    const rec = h.logs.find((l) => l.kind === 'manifest' && l.status === 200);
    assert.ok(rec);
    assert.equal(rec.upstream, 'test-upstream');
    assert.equal(typeof rec.ms, 'number');
    assert.match(String(rec.path), /^\/v2\/team\/app\/manifests\//);
  });
});

// ---------------------------------------------------------------- token auth, real registry

describe('UpstreamClient with token auth (distribution 2.8 + token server)', () => {
  let tokens: TokenServerHandle;
  let registry: RegistryHandle;
  let image: PushedImage;
  const users = { alice: 's3cret-pw' };

  before(async () => {
    tokens = await startTokenServer({ users });
    registry = await startRegistry({ tokenAuth: tokens });
    image = await pushImage({ url: registry.url, username: 'alice', password: users.alice }, 'private/app', 'v1');
  });
  after(async () => {
    await registry?.stop();
    await tokens?.stop();
  });

  test('anonymous, no anonymous pull: UPSTREAM_DENIED 403, after one token fetch and one retry', async () => {
    const h = makeClient(registry.url);
    const n0 = tokens.requests.length;
    const e = await rejectsWith(h.client.fetchManifest('private/app', 'v1'), 'UPSTREAM_DENIED');
    assert.equal(e.status, 403);
    const asked = tokens.requests.slice(n0);
    assert.equal(asked.length, 1);
    assert.equal(asked[0].user, null);
    assert.deepEqual(asked[0].scope, ['repository:private/app:pull']);
    assert.equal(await counter(h.metrics, 'sigil_upstream_requests_total', { kind: 'manifest', status: '401' }), 2);
  });

  test('wrong password: UPSTREAM_DENIED, the password in no message or log', async () => {
    const h = makeClient(registry.url, { credentials: { username: 'alice', password: 'wrong-pw-123' } });
    const e = await rejectsWith(h.client.fetchManifest('private/app', 'v1'), 'UPSTREAM_DENIED');
    assert.doesNotMatch(e.message, /wrong-pw-123/);
    assert.ok(!h.rawLogs.join('').includes('wrong-pw-123'));
  });

  test('credentials: works; one token fetch serves many requests of one repository', async () => {
    const h = makeClient(registry.url, { credentials: { username: 'alice', password: users.alice } });
    const n0 = tokens.requests.length;
    for (let i = 0; i < 5; i++) {
      const m = await h.client.fetchManifest('private/app', i % 2 === 0 ? 'v1' : image.digest);
      assert.equal(m.digest, image.digest);
    }
    const r = await h.client.openBlob('private/app', image.config.digest as Digest, { method: 'GET' });
    assert.ok(r.body);
    const got = await drain(r.body);
    assert.equal(sha256(got.bytes), image.config.digest);
    await h.client.listTags('private/app', {});

    const asked = tokens.requests.slice(n0);
    assert.equal(asked.length, 1, 'one token fetch');
    assert.equal(asked[0].user, 'alice');
    assert.deepEqual(asked[0].scope, ['repository:private/app:pull']);
    // the token was sent up front after the first challenge: a single 401 in all
    assert.equal(await counter(h.metrics, 'sigil_upstream_requests_total', { kind: 'manifest', status: '401' }), 1);
    assert.equal(await counter(h.metrics, 'sigil_upstream_requests_total', { kind: 'blob', status: '401' }), 0);
    assert.equal(await counter(h.metrics, 'sigil_upstream_requests_total', { kind: 'token', status: '200' }), 1);

    // neither the token nor the password is ever logged
    const raw = h.rawLogs.join('\n');
    assert.ok(h.rawLogs.length > 0);
    assert.ok(!raw.includes(users.alice));
    assert.ok(!raw.includes(Buffer.from(`alice:${users.alice}`).toString('base64')));
    assert.ok(!/Bearer|eyJ/.test(raw), 'no token in logs');
  });

  test('concurrent requests that need the same token share one fetch', async () => {
    const h = makeClient(registry.url, { credentials: { username: 'alice', password: users.alice } });
    const n0 = tokens.requests.length;
    const all = await Promise.all(Array.from({ length: 8 }, () => h.client.fetchManifest('private/app', 'v1')));
    assert.ok(all.every((m) => m.digest === image.digest));
    assert.equal(tokens.requests.length - n0, 1);
  });

  test('ping with auth (a token without scope)', async () => {
    const h = makeClient(registry.url, { credentials: { username: 'alice', password: users.alice } });
    const n0 = tokens.requests.length;
    await h.client.ping();
    assert.equal(tokens.requests.length - n0, 1);
    assert.deepEqual(tokens.requests[n0].scope, []);
  });
});

// ---------------------------------------------------------------- faults a real registry cannot produce

describe('UpstreamClient: digest checks (fault servers)', () => {
  test('a lying Docker-Content-Digest → DIGEST_MISMATCH', async () => {
    const s = await manifestServer(OCI_MANIFEST, { 'docker-content-digest': sha256(Buffer.from('other bytes')) });
    const h = makeClient(s.url);
    const e = await rejectsWith(h.client.fetchManifest('a/b', 'latest'), 'DIGEST_MISMATCH');
    assert.equal(e.status, 502);
    assert.equal(await counter(h.metrics, 'sigil_upstream_errors_total', { kind: 'manifest', code: 'DIGEST_MISMATCH' }), 1);
  });

  test('a truthful Docker-Content-Digest passes; Content-Type parameters are dropped', async () => {
    const s = await manifestServer(OCI_MANIFEST, {
      'docker-content-digest': sha256(OCI_MANIFEST),
      'content-type': `${MT.OCI_MANIFEST}; charset=utf-8`,
    });
    const m = await makeClient(s.url).client.fetchManifest('a/b', 'latest');
    assert.equal(m.digest, sha256(OCI_MANIFEST));
    assert.equal(m.mediaType, MT.OCI_MANIFEST);
  });

  test('other bytes for a requested digest → DIGEST_MISMATCH, even with a matching header', async () => {
    const other = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: MT.OCI_MANIFEST, layers: ['evil'] }));
    const s = await manifestServer(other, { 'docker-content-digest': sha256(other) });
    await rejectsWith(makeClient(s.url).client.fetchManifest('a/b', sha256(OCI_MANIFEST)), 'DIGEST_MISMATCH');
  });

  test('a sha512 reference is checked with sha512', async () => {
    const s = await manifestServer(OCI_MANIFEST);
    const d512 = `sha512:${createHash('sha512').update(OCI_MANIFEST).digest('hex')}` as Digest;
    const m = await makeClient(s.url).client.fetchManifest('a/b', d512);
    assert.equal(m.digest, d512);
  });

  test('no Content-Type: the body mediaType, else OCI manifest', async () => {
    const index = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: MT.OCI_INDEX, manifests: [] }));
    const bare = Buffer.from(JSON.stringify({ schemaVersion: 2, layers: [] }));
    const s = await fault((req, res) => {
      const b = req.url?.includes('/index/') ? index : bare;
      res.writeHead(200, { 'content-length': String(b.length) });
      res.end(b);
    });
    const h = makeClient(s.url);
    assert.equal((await h.client.fetchManifest('x/index/y', 'latest')).mediaType, MT.OCI_INDEX);
    assert.equal((await h.client.fetchManifest('x/bare/y', 'latest')).mediaType, MT.OCI_MANIFEST);
  });

  test('the Accept asked for is sent, else every manifest type', async () => {
    const s = await manifestServer(OCI_MANIFEST);
    const h = makeClient(s.url);
    await h.client.fetchManifest('a/b', 'latest', { accept: MT.OCI_INDEX });
    await h.client.fetchManifest('a/b', 'latest');
    assert.equal(s.requests[0].headers.accept, MT.OCI_INDEX);
    const dflt = String(s.requests[1].headers.accept);
    for (const t of [MT.OCI_INDEX, MT.OCI_MANIFEST, MT.DOCKER_MANIFEST_LIST, MT.DOCKER_MANIFEST]) assert.ok(dflt.includes(t), t);
    // the API takes no client headers: nothing but ours goes upstream
    assert.equal(s.requests[0].headers.authorization, undefined);
    assert.equal(s.requests[0].headers.cookie, undefined);
  });

  test('exactly MANIFEST_MAX_BYTES is accepted; one byte more is MANIFEST_TOO_LARGE', async () => {
    const ok = Buffer.alloc(MANIFEST_MAX_BYTES, 0x20);
    const s1 = await manifestServer(ok);
    const m = await makeClient(s1.url).client.fetchManifest('a/b', 'latest');
    assert.equal(m.bytes.length, MANIFEST_MAX_BYTES);
    const s2 = await manifestServer(Buffer.alloc(MANIFEST_MAX_BYTES + 1, 0x20));
    const e = await rejectsWith(makeClient(s2.url).client.fetchManifest('a/b', 'latest'), 'MANIFEST_TOO_LARGE');
    assert.equal(e.status, 502);
  });

  test('an over-size manifest without Content-Length is cut off as it streams', async () => {
    let written = 0;
    let serverSawClose = false;
    const s = await fault(async (_req, res) => {
      res.writeHead(200, { 'content-type': MT.OCI_MANIFEST }); // chunked
      res.on('close', () => {
        serverSawClose = true;
      });
      const chunk = Buffer.alloc(512 * 1024, 0x20);
      while (!res.destroyed && written < 64 * 1024 * 1024) {
        written += chunk.length;
        if (!res.write(chunk)) {
          await new Promise<void>((resolve) => {
            const done = (): void => {
              res.off('drain', done);
              res.off('close', done);
              resolve();
            };
            res.on('drain', done);
            res.on('close', done);
          });
        }
      }
      res.end();
    });
    await rejectsWith(makeClient(s.url).client.fetchManifest('a/b', 'latest'), 'MANIFEST_TOO_LARGE');
    await sleep(100);
    assert.ok(serverSawClose);
    assert.ok(written < 32 * 1024 * 1024, `read on to ${written} bytes`);
  });
});

describe('UpstreamClient: blob stream checks (fault servers)', () => {
  const CHUNK = 64 * 1024;

  /** Sends `bytes` in `CHUNK` pieces, pausing between them so they arrive as separate chunks. */
  function blobServer(bytes: Buffer, opts: { resetAfter?: number; stallAfter?: number } = {}): Promise<FaultServer> {
    return fault(async (_req, res) => {
      res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': String(bytes.length) });
      for (let off = 0; off < bytes.length; off += CHUNK) {
        if (opts.resetAfter !== undefined && off >= opts.resetAfter) {
          res.socket?.destroy();
          return;
        }
        if (opts.stallAfter !== undefined && off >= opts.stallAfter) return; // never finishes
        res.write(bytes.subarray(off, off + CHUNK));
        await sleep(30);
      }
      res.end();
    });
  }

  test('wrong bytes: the stream errors with DIGEST_MISMATCH and the consumer never gets the last chunk', async () => {
    const served = randomBytes(4 * CHUNK);
    const s = await blobServer(served);
    const h = makeClient(s.url);
    const r = await h.client.openBlob('a/b', sha256(Buffer.from('the real blob')), { method: 'GET' });
    assert.equal(r.status, 200);
    assert.ok(r.body);
    const got = await drain(r.body);
    assert.ok(isSigilError(got.error));
    assert.equal(got.error.code, 'DIGEST_MISMATCH');
    assert.ok(got.bytes.length < served.length, `consumer got ${got.bytes.length} of ${served.length} bytes`);
    assert.deepEqual(got.bytes, served.subarray(0, got.bytes.length));
    assert.equal(await counter(h.metrics, 'sigil_upstream_errors_total', { kind: 'blob', code: 'DIGEST_MISMATCH' }), 1);
  });

  test('wrong bytes in a single chunk: the consumer gets nothing', async () => {
    const s = await blobServer(Buffer.from('small and wrong'));
    const r = await makeClient(s.url).client.openBlob('a/b', sha256(Buffer.from('small and right')), { method: 'GET' });
    assert.ok(r.body);
    const got = await drain(r.body);
    assert.equal((got.error as SigilError).code, 'DIGEST_MISMATCH');
    assert.equal(got.bytes.length, 0);
  });

  test('right bytes in many chunks: all of them, in order', async () => {
    const served = randomBytes(4 * CHUNK + 123);
    const s = await blobServer(served);
    const r = await makeClient(s.url).client.openBlob('a/b', sha256(served), { method: 'GET' });
    assert.ok(r.body);
    const got = await drain(r.body);
    assert.equal(got.error, undefined);
    assert.deepEqual(got.bytes, served);
  });

  test('connection reset mid-body: the stream errors, no hang', async () => {
    const served = randomBytes(4 * CHUNK);
    const s = await blobServer(served, { resetAfter: 2 * CHUNK });
    const r = await makeClient(s.url).client.openBlob('a/b', sha256(served), { method: 'GET' });
    assert.ok(r.body);
    const t0 = Date.now();
    const got = await drain(r.body);
    assert.ok(isSigilError(got.error), String(got.error));
    assert.equal(got.error.code, 'UPSTREAM_BAD_RESPONSE');
    assert.ok(got.bytes.length < served.length);
    assert.ok(Date.now() - t0 < 2000);
  });

  test('connection reset mid-body of a manifest: error, no hang', async () => {
    const s = await fault((_req, res) => {
      res.writeHead(200, { 'content-type': MT.OCI_MANIFEST, 'content-length': '1000' });
      res.write(Buffer.alloc(100, 0x20));
      setTimeout(() => res.socket?.destroy(), 20);
    });
    const t0 = Date.now();
    await rejectsWith(makeClient(s.url).client.fetchManifest('a/b', 'latest'), 'UPSTREAM_BAD_RESPONSE');
    assert.ok(Date.now() - t0 < 2000);
  });

  test('a stalled blob body: UPSTREAM_TIMEOUT after the idle timeout', async () => {
    const served = randomBytes(4 * CHUNK);
    const s = await blobServer(served, { stallAfter: CHUNK });
    const r = await makeClient(s.url, { timeouts: { bodyIdleMs: 300 } }).client.openBlob('a/b', sha256(served), { method: 'GET' });
    assert.ok(r.body);
    const t0 = Date.now();
    const got = await drain(r.body);
    assert.equal((got.error as SigilError).code, 'UPSTREAM_TIMEOUT');
    assert.ok(Date.now() - t0 < 3000);
  });

  test('206 passes through unhashed; 404 → BLOB_UNKNOWN; 416 → RANGE_INVALID', async () => {
    const s = await fault((req, res) => {
      if (req.url?.includes('/missing/')) return json(res, 404, { errors: [{ code: 'BLOB_UNKNOWN', message: 'blob unknown' }] });
      if (req.headers.range === 'bytes=999-') {
        res.writeHead(416, { 'content-range': 'bytes */10', 'content-length': '0' });
        return void res.end();
      }
      res.writeHead(206, { 'content-range': 'bytes 0-3/10', 'content-length': '4', 'set-cookie': 'a=b', 'x-amz-id-2': 'x' });
      res.end('part');
    });
    const h = makeClient(s.url);
    const d = sha256(Buffer.from('0123456789'));
    const r = await h.client.openBlob('a/b', d, { method: 'GET', range: 'bytes=0-3' });
    assert.equal(r.status, 206);
    assert.deepEqual(r.headers, { 'content-range': 'bytes 0-3/10', 'content-length': '4' });
    assert.ok(r.body);
    assert.equal((await drain(r.body)).bytes.toString(), 'part');
    assert.equal(s.requests[0].headers.range, 'bytes=0-3');
    await rejectsWith(h.client.openBlob('a/missing/b', d, { method: 'GET' }), 'BLOB_UNKNOWN');
    const e = await rejectsWith(h.client.openBlob('a/b', d, { method: 'GET', range: 'bytes=999-' }), 'RANGE_INVALID');
    assert.equal(e.status, 416);
    assert.deepEqual(e.headers, { 'Content-Range': 'bytes */10' });
  });
});

describe('UpstreamClient: redirects and auth (fault servers)', () => {
  /** An upstream that wants `Bearer good-token` (fetched from its own /token) and redirects blobs to `target`. */
  async function tokenUpstream(target: () => string): Promise<{ upstream: FaultServer; tokenFetches: () => number }> {
    let fetches = 0;
    const upstream = await fault((req, res) => {
      const url = new URL(req.url ?? '/', 'http://x');
      if (url.pathname === '/token') {
        fetches++;
        return json(res, 200, { token: 'good-token', expires_in: 300 });
      }
      if (req.headers.authorization !== 'Bearer good-token') {
        return json(res, 401, { errors: [{ code: 'UNAUTHORIZED', message: 'auth' }] }, {
          'www-authenticate': `Bearer realm="http://${req.headers.host}/token",service="svc",scope="repository:a/b:pull"`,
        });
      }
      res.writeHead(307, { location: target(), 'content-length': '0' });
      res.end();
    });
    return { upstream, tokenFetches: () => fetches };
  }

  test('blob redirect to another host: followed, with Range, without the upstream token', async () => {
    const blob = randomBytes(10_000);
    const storage = await fault((req, res) => {
      res.writeHead(200, {
        'content-type': 'application/octet-stream',
        'content-length': String(blob.length),
        'set-cookie': 'session=1',
        'x-amz-request-id': 'abc',
      });
      res.end(req.method === 'HEAD' ? undefined : blob);
    });
    const { upstream, tokenFetches } = await tokenUpstream(() => `${storage.url}/bucket/blob?X-Amz-Signature=secret-sig`);
    const h = makeClient(upstream.url, { credentials: { username: 'u', password: 'p' } });
    const r = await h.client.openBlob('a/b', sha256(blob), { method: 'GET', range: 'bytes=0-' });
    assert.equal(r.status, 200);
    assert.deepEqual(r.headers, { 'content-type': 'application/octet-stream', 'content-length': String(blob.length) });
    assert.ok(r.body);
    const got = await drain(r.body);
    assert.equal(got.error, undefined);
    assert.deepEqual(got.bytes, blob);

    // the upstream required the token and got it on the retry
    assert.equal(tokenFetches(), 1);
    const blobReqs = upstream.requests.filter((q) => q.url.startsWith('/v2/'));
    assert.equal(blobReqs.length, 2);
    assert.equal(blobReqs[0].headers.authorization, undefined);
    assert.equal(blobReqs[1].headers.authorization, 'Bearer good-token');
    // the storage host got no credentials at all, but the Range
    assert.equal(storage.requests.length, 1);
    assert.equal(storage.requests[0].headers.authorization, undefined);
    assert.equal(storage.requests[0].headers.range, 'bytes=0-');
    assert.equal(storage.requests[0].url, '/bucket/blob?X-Amz-Signature=secret-sig');
    // a signed redirect URL's query is not logged
    assert.ok(!h.rawLogs.join('').includes('secret-sig'));
    assert.ok(!h.rawLogs.join('').includes('good-token'));

    // HEAD follows too; the token is now sent up front
    const head = await h.client.openBlob('a/b', sha256(blob), { method: 'HEAD' });
    assert.equal(head.status, 200);
    assert.equal(head.body, null);
    assert.equal(storage.requests[1].method, 'HEAD');
    assert.equal(storage.requests[1].headers.authorization, undefined);
    assert.equal(upstream.requests.filter((q) => q.url.startsWith('/v2/')).length, 3);
    assert.equal(tokenFetches(), 1);
  });

  test('a redirect to the upstream itself keeps its Authorization', async () => {
    const blob = Buffer.from('same-origin blob');
    const s = await fault((req, res) => {
      if (req.url?.startsWith('/token')) return json(res, 200, { token: 'own-token' });
      if (req.headers.authorization !== 'Bearer own-token') {
        return json(res, 401, {}, { 'www-authenticate': `Bearer realm="http://${req.headers.host}/token"` });
      }
      if (req.url?.startsWith('/v2/')) {
        res.writeHead(302, { location: '/internal/blob', 'content-length': '0' });
        return void res.end();
      }
      res.writeHead(200, { 'content-length': String(blob.length) });
      res.end(blob);
    });
    const r = await makeClient(s.url).client.openBlob('a/b', sha256(blob), { method: 'GET' });
    assert.ok(r.body);
    assert.deepEqual((await drain(r.body)).bytes, blob);
    const internal = s.requests.filter((q) => q.url === '/internal/blob');
    assert.equal(internal.length, 1);
    assert.equal(internal[0].headers.authorization, 'Bearer own-token');
  });

  test('redirect loops end after MAX_REDIRECTS; non-http redirects are refused', async () => {
    const loop = await fault((req, res) => {
      res.writeHead(302, { location: `${req.url ?? '/'}x`, 'content-length': '0' });
      res.end();
    });
    const e = await rejectsWith(makeClient(loop.url).client.openBlob('a/b', sha256(Buffer.from('x')), { method: 'GET' }), 'UPSTREAM_BAD_RESPONSE');
    assert.match(e.message, /redirects/);
    assert.equal(loop.requests.length, MAX_REDIRECTS + 1);

    const file = await fault((_req, res) => {
      res.writeHead(302, { location: 'file:///etc/passwd', 'content-length': '0' });
      res.end();
    });
    await rejectsWith(makeClient(file.url).client.openBlob('a/b', sha256(Buffer.from('x')), { method: 'GET' }), 'UPSTREAM_BAD_RESPONSE');
  });

  test('a 401 after a fresh token → UPSTREAM_DENIED, no loop', async () => {
    let tokenFetches = 0;
    const s = await fault((req, res) => {
      if (req.url?.startsWith('/token')) {
        tokenFetches++;
        return json(res, 200, { access_token: 'useless' });
      }
      json(res, 401, { errors: [{ code: 'UNAUTHORIZED' }] }, { 'www-authenticate': `Bearer realm="http://${req.headers.host}/token"` });
    });
    const e = await rejectsWith(makeClient(s.url).client.fetchManifest('a/b', 'latest'), 'UPSTREAM_DENIED');
    assert.equal(e.status, 403);
    assert.equal(tokenFetches, 1);
    assert.equal(s.requests.filter((q) => q.url.startsWith('/v2/')).length, 2);
  });

  test('an expired token is replaced up front, without a 401 (injected clock)', async () => {
    const clock = fakeClock(5_000_000);
    let tokenFetches = 0;
    let unauthorized = 0;
    const s = await fault((req, res) => {
      if (req.url?.startsWith('/token')) {
        tokenFetches++;
        return json(res, 200, { token: `tok-${tokenFetches}`, expires_in: 60 });
      }
      if (!String(req.headers.authorization ?? '').startsWith('Bearer tok-')) {
        unauthorized++;
        return json(res, 401, {}, { 'www-authenticate': `Bearer realm="http://${req.headers.host}/token",service="s"` });
      }
      res.writeHead(200, { 'content-type': MT.OCI_MANIFEST, 'content-length': String(OCI_MANIFEST.length) });
      res.end(OCI_MANIFEST);
    });
    const h = makeClient(s.url, { now: clock.now });
    await h.client.fetchManifest('a/b', 'latest');
    await h.client.fetchManifest('a/b', 'latest');
    assert.deepEqual([tokenFetches, unauthorized], [1, 1]);
    clock.advance(60_000);
    await h.client.fetchManifest('a/b', 'latest');
    assert.deepEqual([tokenFetches, unauthorized], [2, 1]);
    assert.equal(s.requests.at(-1)?.headers.authorization, 'Bearer tok-2');
    // another repository: its own scope, fetched up front
    await h.client.fetchManifest('c/d', 'latest');
    assert.deepEqual([tokenFetches, unauthorized], [3, 1]);
    const last = s.requests.filter((q) => q.url.startsWith('/token')).at(-1);
    assert.match(last?.url ?? '', /scope=repository%3Ac%2Fd%3Apull/);
  });

  test('a Basic challenge: credentials sent (then up front); none configured → UPSTREAM_DENIED', async () => {
    const good = `Basic ${Buffer.from('bob:pw').toString('base64')}`;
    const s = await fault((req, res) => {
      if (req.headers.authorization !== good) {
        return json(res, 401, {}, { 'www-authenticate': 'Basic realm="registry"' });
      }
      json(res, 200, { name: 'a/b', tags: ['x'] });
    });
    const h = makeClient(s.url, { credentials: { username: 'bob', password: 'pw' } });
    assert.deepEqual((await h.client.listTags('a/b', {})).tags, ['x']);
    assert.deepEqual((await h.client.listTags('a/b', {})).tags, ['x']);
    assert.deepEqual(
      s.requests.map((q) => q.headers.authorization),
      [undefined, good, good],
    );
    await rejectsWith(makeClient(s.url).client.listTags('a/b', {}), 'UPSTREAM_DENIED');
    const wrong = makeClient(s.url, { credentials: { username: 'bob', password: 'nope' } });
    const e = await rejectsWith(wrong.client.listTags('a/b', {}), 'UPSTREAM_DENIED');
    assert.doesNotMatch(e.message, /nope/);
  });

  test('a broken token server: UPSTREAM_BAD_RESPONSE; a token-server 429 passes Retry-After', async () => {
    let mode: 500 | 429 = 500;
    const s = await fault((req, res) => {
      if (req.url?.startsWith('/token')) return json(res, mode, {}, mode === 429 ? { 'retry-after': '9' } : {});
      json(res, 401, {}, { 'www-authenticate': `Bearer realm="http://${req.headers.host}/token"` });
    });
    const h = makeClient(s.url);
    await rejectsWith(h.client.fetchManifest('a/b', 'latest'), 'UPSTREAM_BAD_RESPONSE');
    mode = 429;
    const e = await rejectsWith(h.client.fetchManifest('a/b', 'latest'), 'UPSTREAM_TOOMANYREQUESTS');
    assert.deepEqual(e.headers, { 'Retry-After': '9' });
  });
});

describe('UpstreamClient: upstream failures (fault servers)', () => {
  test('slow headers → UPSTREAM_TIMEOUT within the (injected) headers timeout', async () => {
    const s = await fault(() => undefined); // never answers
    const h = makeClient(s.url, { timeouts: { headersMs: 300 } });
    const t0 = Date.now();
    const e = await rejectsWith(h.client.fetchManifest('a/b', 'latest'), 'UPSTREAM_TIMEOUT');
    const ms = Date.now() - t0;
    assert.equal(e.status, 504);
    assert.ok(ms >= 250 && ms < 2000, `${ms} ms`);
    await rejectsWith(h.client.openBlob('a/b', sha256(Buffer.from('x')), { method: 'GET' }), 'UPSTREAM_TIMEOUT');
    assert.equal(await counter(h.metrics, 'sigil_upstream_errors_total', { kind: 'manifest', code: 'UPSTREAM_TIMEOUT' }), 1);
  });

  test('a manifest body that trickles on forever → UPSTREAM_TIMEOUT at the overall deadline', async () => {
    const s = await fault(async (_req, res) => {
      res.writeHead(200, { 'content-type': MT.OCI_MANIFEST });
      while (!res.destroyed) {
        res.write(' ');
        await sleep(50);
      }
    });
    const h = makeClient(s.url, { timeouts: { metadataDeadlineMs: 400 } });
    const t0 = Date.now();
    await rejectsWith(h.client.fetchManifest('a/b', 'latest'), 'UPSTREAM_TIMEOUT');
    const ms = Date.now() - t0;
    assert.ok(ms >= 350 && ms < 2000, `${ms} ms`);
  });

  test('connection refused → UPSTREAM_UNREACHABLE, fast', async () => {
    const port = await freePort(); // nothing listens there
    const h = makeClient(`http://127.0.0.1:${port}`);
    const t0 = Date.now();
    const e = await rejectsWith(h.client.fetchManifest('a/b', 'latest'), 'UPSTREAM_UNREACHABLE');
    assert.equal(e.status, 502);
    assert.ok(Date.now() - t0 < 1000);
    await rejectsWith(h.client.ping(), 'UPSTREAM_UNREACHABLE');
  });

  test('429 → UPSTREAM_TOOMANYREQUESTS with Retry-After', async () => {
    const s = await fault((_req, res) => json(res, 429, { errors: [{ code: 'TOOMANYREQUESTS', message: 'slow down' }] }, { 'retry-after': '7' }));
    const e = await rejectsWith(makeClient(s.url).client.fetchManifest('a/b', 'latest'), 'UPSTREAM_TOOMANYREQUESTS');
    assert.equal(e.status, 429);
    assert.deepEqual(e.headers, { 'Retry-After': '7' });
  });

  test('503 → UPSTREAM_BAD_RESPONSE 502 naming the upstream status', async () => {
    const s = await fault((_req, res) => json(res, 503, { errors: [{ code: 'UNAVAILABLE' }] }));
    const e = await rejectsWith(makeClient(s.url).client.fetchManifest('a/b', 'latest'), 'UPSTREAM_BAD_RESPONSE');
    assert.equal(e.status, 502);
    assert.match(e.message, /503/);
  });

  test('404s keep the upstream code and message; other 4xx pass status and code; 403 → UPSTREAM_DENIED', async () => {
    const s = await fault((req, res) => {
      if (req.url?.startsWith('/v2/name/')) return json(res, 404, { errors: [{ code: 'NAME_UNKNOWN', message: 'no such repo' }] });
      if (req.url?.startsWith('/v2/plain/')) return json(res, 404, { errors: [{ code: 'MANIFEST_UNKNOWN', message: 'gone fishing' }] });
      if (req.url?.startsWith('/v2/bad/')) return json(res, 400, { errors: [{ code: 'MANIFEST_INVALID', message: 'broken' }] });
      json(res, 403, { errors: [{ code: 'DENIED', message: 'no' }] });
    });
    const h = makeClient(s.url);
    const n = await rejectsWith(h.client.fetchManifest('name/x', 'latest'), 'NAME_UNKNOWN');
    assert.deepEqual([n.status, n.oci, n.message], [404, 'NAME_UNKNOWN', 'no such repo']);
    const p = await rejectsWith(h.client.fetchManifest('plain/x', 'latest'), 'MANIFEST_UNKNOWN');
    assert.deepEqual([p.status, p.oci, p.message], [404, 'MANIFEST_UNKNOWN', 'gone fishing']);
    const b = await rejectsWith(h.client.fetchManifest('bad/x', 'latest'), 'UPSTREAM_ERROR');
    assert.deepEqual([b.status, b.oci], [400, 'MANIFEST_INVALID']);
    const d = await rejectsWith(h.client.fetchManifest('other/x', 'latest'), 'UPSTREAM_DENIED');
    assert.equal(d.status, 403);
  });
});

describe('UpstreamClient: tags and referrers (fault servers)', () => {
  test('tags: n and last passed on; a Link header or an honoured n means upstreamPaginated', async () => {
    const s = await fault((req, res) => {
      const url = new URL(req.url ?? '/', 'http://x');
      if (url.pathname.startsWith('/v2/linked/')) {
        return json(res, 200, { name: 'linked/r', tags: ['a', 'b'] }, { link: '</v2/linked/r/tags/list?n=2&last=b>; rel="next"' });
      }
      if (url.pathname.startsWith('/v2/honest/')) return json(res, 200, { name: 'honest/r', tags: ['c', 'd'] });
      if (url.pathname.startsWith('/v2/empty/')) return json(res, 200, { name: 'empty/r', tags: null });
      return json(res, 200, { name: 'ignorant/r', tags: ['a', 'b', 'c', 'd'] });
    });
    const h = makeClient(s.url);
    const linked = await h.client.listTags('linked/r', { n: 2 });
    assert.deepEqual(linked, { name: 'linked/r', tags: ['a', 'b'], upstreamPaginated: true });
    const honest = await h.client.listTags('honest/r', { n: 2, last: 'b' });
    assert.equal(honest.upstreamPaginated, true);
    assert.equal(s.requests[1].url, '/v2/honest/r/tags/list?n=2&last=b');
    assert.equal((await h.client.listTags('ignorant/r', { n: 2 })).upstreamPaginated, false);
    // fewer than n but `last` not honoured: not paginated by the upstream
    assert.equal((await h.client.listTags('ignorant/r', { n: 10, last: 'b' })).upstreamPaginated, false);
    assert.deepEqual((await h.client.listTags('empty/r', {})).tags, []);
    await rejectsWith(h.client.listTags('a/b', { n: -1 }), 'PAGINATION_NUMBER_INVALID');
  });

  test('referrers API: the body, content type and OCI-Filters-Applied; 405 → unsupported', async () => {
    const index = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: MT.OCI_INDEX, manifests: [] }));
    const s = await fault((req, res) => {
      if (req.url?.startsWith('/v2/old/')) {
        res.writeHead(405, { 'content-length': '0' });
        return void res.end();
      }
      res.writeHead(200, { 'content-type': MT.OCI_INDEX, 'oci-filters-applied': 'artifactType', 'content-length': String(index.length) });
      res.end(index);
    });
    const h = makeClient(s.url);
    const d = sha256(Buffer.from('subject'));
    const r = await h.client.referrers('new/r', d, MT.SIGSTORE_BUNDLE_V03);
    assert.equal(r.kind, 'api');
    if (r.kind === 'api') {
      assert.deepEqual(r.body, index);
      assert.equal(r.contentType, MT.OCI_INDEX);
      assert.equal(r.filtersApplied, 'artifactType');
    }
    assert.equal(new URL(s.requests[0].url, 'http://x').searchParams.get('artifactType'), MT.SIGSTORE_BUNDLE_V03);
    assert.deepEqual(await h.client.referrers('old/r', d), { kind: 'unsupported' });
  });
});

describe('UpstreamClient: names cannot change where requests go', () => {
  test('invalid repository, tag or digest is refused before any request', async () => {
    const s = await manifestServer(OCI_MANIFEST);
    const c = makeClient(s.url).client;
    for (const repo of ['../etc', 'a/../../b', 'A/b', 'a//b', '@evil.example/x', 'a?b', 'a#b', '', 'x/']) {
      await rejectsWith(c.fetchManifest(repo, 'latest'), 'NAME_INVALID');
    }
    for (const ref of ['..', 'a/b', 'latest@evil.example', 'x?y', '', '-x', 'a'.repeat(129)]) {
      await rejectsWith(c.fetchManifest('a/b', ref), 'TAG_INVALID');
    }
    for (const ref of ['sha256:abc', 'md5:0123', 'sha256:' + 'A'.repeat(64), 'x:y@evil.example']) {
      await rejectsWith(c.fetchManifest('a/b', ref), 'DIGEST_INVALID');
    }
    await rejectsWith(c.openBlob('a/b', 'sha256:../../x' as Digest, { method: 'GET' }), 'DIGEST_INVALID');
    await rejectsWith(c.referrers('a/b', 'latest' as Digest), 'DIGEST_INVALID');
    await rejectsWith(c.listTags('a/../b', {}), 'NAME_INVALID');
    assert.equal(s.requests.length, 0);
  });
});

describe('UpstreamClient over TLS', () => {
  let dir: string;
  let ca: string;
  let url: string;
  let tokenServer: FaultServer;
  const sockets = new Set<Socket>();
  let server: ReturnType<typeof createHttpsServer>;

  before(async () => {
    dir = await tempDir('sigil-upstream-tls');
    const cert = await selfSignedCert(dir);
    ca = await readFile(cert.certPath, 'utf8');
    tokenServer = await fault((_req, res) => json(res, 200, { token: 'tls-token' }));
    server = createHttpsServer({ cert: ca, key: await readFile(cert.keyPath) }, (req, res) => {
      if (req.url === '/v2/') return json(res, 200, {});
      if (req.headers.authorization !== 'Bearer tls-token') {
        return json(res, 401, {}, { 'www-authenticate': `Bearer realm="${tokenServer.url}/token",service="tls"` });
      }
      res.writeHead(200, { 'content-type': MT.OCI_MANIFEST, 'content-length': String(OCI_MANIFEST.length) });
      res.end(OCI_MANIFEST);
    });
    server.on('connection', (s: Socket) => {
      sockets.add(s);
      s.once('close', () => sockets.delete(s));
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    url = `https://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  after(async () => {
    await Promise.all(clients.map((c) => c.close()));
    for (const s of sockets) s.destroy();
    await new Promise<void>((resolve) => server?.close(() => resolve()));
    await rm(dir, { recursive: true, force: true });
  });

  test('an unknown CA is refused: UPSTREAM_UNREACHABLE naming TLS', async () => {
    const e = await rejectsWith(makeClient(url).client.ping(), 'UPSTREAM_UNREACHABLE');
    assert.match(e.message, /TLS/);
  });

  test('tls.ca is trusted (on top of the public roots); insecureSkipVerify skips verification', async () => {
    await makeClient(url, { tls: { ca, insecureSkipVerify: false } }).client.ping();
    await makeClient(url, { tls: { insecureSkipVerify: true } }).client.ping();
  });

  test('credentials of an https upstream never go to a plain-http realm', async () => {
    const h = makeClient(url, { tls: { ca, insecureSkipVerify: false }, credentials: { username: 'u', password: 'secret' } });
    const m = await h.client.fetchManifest('a/b', 'latest');
    assert.equal(m.digest, sha256(OCI_MANIFEST));
    assert.equal(tokenServer.requests.length, 1);
    assert.equal(tokenServer.requests[0].headers.authorization, undefined);
  });
});
