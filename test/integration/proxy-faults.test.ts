import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, test } from 'node:test';
import { request } from 'undici';
import { startFaultServer, type FaultHandler, type FaultServer } from '../helpers/fault-server.js';
import { freePort } from '../helpers/net.js';
import { startSigil, simpleConfig, type SigilHandle } from '../helpers/sigil.js';
import { sha256 } from '../helpers/digest.js';

// Faults a real registry cannot produce, from in-process fake upstreams.
const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json';
const MANIFEST = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: OCI_MANIFEST, config: {}, layers: [] }));
const DIGEST = sha256(MANIFEST);
const OTHER = `sha256:${'1'.repeat(64)}`;
const TIMEOUTS = { connectMs: 500, headersMs: 400, bodyIdleMs: 400, metadataDeadlineMs: 1500 };

const cleanups: Array<() => Promise<void>> = [];
after(async () => {
  for (const c of cleanups.reverse()) await c();
});

async function through(handler: FaultHandler): Promise<{ up: FaultServer; sigil: SigilHandle }> {
  const up = await startFaultServer(handler);
  cleanups.push(() => up.stop());
  const sigil = await startSigil(simpleConfig([{ name: 'up.test', url: up.url }]), { timeouts: TIMEOUTS });
  cleanups.push(() => sigil.stop());
  return { up, sigil };
}

async function get(url: string, headers: Record<string, string> = {}) {
  const t0 = Date.now();
  const res = await request(url, { headers, headersTimeout: 10_000, bodyTimeout: 10_000 });
  const body = Buffer.from(await res.body.arrayBuffer());
  return { status: res.statusCode, headers: res.headers, body, ms: Date.now() - t0 };
}

function errorCode(body: Buffer): string {
  return (JSON.parse(body.toString()) as { errors: Array<{ code: string }> }).errors[0].code;
}

test('a lying Docker-Content-Digest is a 502 and no manifest bytes are served', async () => {
  const { sigil } = await through((_req, res) => {
    res.writeHead(200, { 'content-type': OCI_MANIFEST, 'docker-content-digest': OTHER });
    res.end(MANIFEST);
  });
  const r = await get(`${sigil.url}/v2/up.test/a/b/manifests/latest`);
  assert.equal(r.status, 502);
  assert.equal(errorCode(r.body), 'DIGEST_INVALID');
  assert.ok(!r.body.includes(MANIFEST));
  assert.equal(r.headers['docker-content-digest'], undefined);
});

test('other bytes for a requested digest are a 502, nothing served', async () => {
  const { sigil } = await through((_req, res) => {
    res.writeHead(200, { 'content-type': OCI_MANIFEST });
    res.end(MANIFEST);
  });
  const r = await get(`${sigil.url}/v2/up.test/a/b/manifests/${OTHER}`);
  assert.equal(r.status, 502);
  assert.ok(!r.body.includes(MANIFEST));
  const ok = await get(`${sigil.url}/v2/up.test/a/b/manifests/${DIGEST}`);
  assert.equal(ok.status, 200);
  assert.deepEqual(ok.body, MANIFEST);
});

test('a blob whose bytes do not match its digest never reaches the client complete', async () => {
  const bad = Buffer.alloc(256 * 1024, 7);
  const { sigil } = await through((_req, res) => {
    res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': String(bad.length) });
    res.end(bad);
  });
  const res = await request(`${sigil.url}/v2/up.test/a/b/blobs/${OTHER}`);
  let received = 0;
  await assert.rejects(async () => {
    for await (const chunk of res.body) received += (chunk as Buffer).length;
  });
  assert.ok(received < bad.length, `client received ${received} of ${bad.length} bytes`);
});

test('big blobs (hashed off the event loop): wrong bytes never reach the client complete, right ones pass whole', async () => {
  const size = 8 * 1024 * 1024 + 17; // over OFF_THREAD_MIN_BYTES and several hash rings
  const good = randomBytes(size);
  const goodDigest = sha256(good);
  const bad = Buffer.from(good);
  bad[size - 1] ^= 1; // only the last byte differs
  const { sigil } = await through((req, res) => {
    const body = (req.url ?? '').includes(goodDigest) ? good : bad;
    // chunked (no Content-Length) for the bad one: the hash cannot be sized up front
    res.writeHead(200, { 'content-type': 'application/octet-stream', ...(body === good ? { 'content-length': String(size) } : {}) });
    res.end(body);
  });
  const res = await request(`${sigil.url}/v2/up.test/a/b/blobs/${goodDigest.replace(/.$/, (c) => (c === '0' ? '1' : '0'))}`);
  let received = 0;
  await assert.rejects(async () => {
    for await (const chunk of res.body) received += (chunk as Buffer).length;
  });
  assert.ok(received < size, `client received ${received} of ${size} bytes`);
  // the lie is logged and counted against the upstream
  assert.ok(
    sigil.logs.some((l) => JSON.stringify(l).includes('DIGEST_MISMATCH')),
    'a log line names the mismatch',
  );
  const errors = (await sigil.metrics.upstreamErrors.get()).values.filter((v) => v.labels.code === 'DIGEST_MISMATCH');
  assert.equal(errors.reduce((n, v) => n + v.value, 0), 1);
  const ok = await get(`${sigil.url}/v2/up.test/a/b/blobs/${goodDigest}`);
  assert.equal(ok.status, 200);
  assert.ok(ok.body.equals(good));
  assert.ok(sigil.hashes.load().length > 0, 'a hash worker was used');
});

test('a connection reset mid-body ends the client response with an error, no hang', async () => {
  const { sigil } = await through((_req, res) => {
    res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': '1000000' });
    for (let i = 0; i < 8; i++) res.write(Buffer.alloc(32 * 1024, i));
    setTimeout(() => res.socket?.destroy(), 100);
  });
  const t0 = Date.now();
  const res = await request(`${sigil.url}/v2/up.test/a/b/blobs/${OTHER}`);
  assert.equal(res.statusCode, 200);
  let received = 0;
  await assert.rejects(async () => {
    for await (const chunk of res.body) received += (chunk as Buffer).length;
  });
  assert.ok(received < 1_000_000);
  assert.ok(Date.now() - t0 < 5000);
});

test('a reset before the first bytes reach the client is a clean 502 without blob headers', async () => {
  const { sigil } = await through((_req, res) => {
    res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': '1000000' });
    res.write(Buffer.alloc(1000));
    setTimeout(() => res.socket?.destroy(), 50);
  });
  const r = await get(`${sigil.url}/v2/up.test/a/b/blobs/${OTHER}`);
  assert.equal(r.status, 502);
  assert.equal(r.headers['docker-content-digest'], undefined);
  assert.equal(errorCode(r.body), 'UNAVAILABLE');
});

test('an upstream that never sends headers gives 504 within the timeout', async () => {
  const { sigil } = await through(() => {
    /* never answers */
  });
  const r = await get(`${sigil.url}/v2/up.test/a/b/manifests/latest`);
  assert.equal(r.status, 504);
  assert.ok(r.ms < 5000, `${r.ms} ms`);
  const b = await get(`${sigil.url}/v2/up.test/a/b/blobs/${OTHER}`);
  assert.equal(b.status, 504);
});

test('429 passes on with Retry-After; 503 becomes 502', async () => {
  let status = 429;
  const { sigil } = await through((_req, res) => {
    res.writeHead(status, { 'content-type': 'application/json', 'retry-after': '17' });
    res.end('{"errors":[{"code":"TOOMANYREQUESTS","message":"slow down"}]}');
  });
  const r = await get(`${sigil.url}/v2/up.test/a/b/manifests/latest`);
  assert.equal(r.status, 429);
  assert.equal(r.headers['retry-after'], '17');
  assert.equal(errorCode(r.body), 'TOOMANYREQUESTS');
  status = 503;
  const s = await get(`${sigil.url}/v2/up.test/a/b/manifests/latest`);
  assert.equal(s.status, 502);
});

test('an unreachable upstream is a fast 502', async () => {
  const port = await freePort(); // nothing listens here
  const sigil = await startSigil(simpleConfig([{ name: 'gone.test', url: `http://127.0.0.1:${port}` }]), { timeouts: TIMEOUTS });
  cleanups.push(() => sigil.stop());
  const r = await get(`${sigil.url}/v2/gone.test/a/b/manifests/latest`);
  assert.equal(r.status, 502);
  assert.ok(r.ms < 2000, `${r.ms} ms`);
  assert.match(r.body.toString(), /gone\.test|unreachable|refused/i);
});

test('a manifest larger than 4 MiB is refused with 502, not buffered without bound', async () => {
  const { sigil } = await through((_req, res) => {
    res.writeHead(200, { 'content-type': OCI_MANIFEST });
    const chunk = Buffer.alloc(1024 * 1024, 0x20);
    for (let i = 0; i < 6; i++) res.write(chunk);
    res.end();
  });
  const r = await get(`${sigil.url}/v2/up.test/a/b/manifests/latest`);
  assert.equal(r.status, 502);
  assert.match(r.body.toString(), /exceeds 4194304 bytes/);
});

test('verifyBlobDigests: false passes blobs through unhashed (clients check them); manifests are still checked', async () => {
  const bad = Buffer.alloc(64 * 1024, 9);
  const up = await startFaultServer((req, res) => {
    if ((req.url ?? '').includes('/manifests/')) {
      res.writeHead(200, { 'content-type': OCI_MANIFEST, 'docker-content-digest': OTHER });
      res.end(MANIFEST);
      return;
    }
    res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': String(bad.length) });
    res.end(bad);
  });
  const sigil = await startSigil(simpleConfig([{ name: 'up.test', url: up.url, extra: '    verifyBlobDigests: false\n' }]), { timeouts: TIMEOUTS });
  cleanups.push(() => up.stop(), () => sigil.stop());
  const b = await get(`${sigil.url}/v2/up.test/a/b/blobs/${OTHER}`);
  assert.equal(b.status, 200);
  assert.equal(b.body.length, bad.length);
  const m = await get(`${sigil.url}/v2/up.test/a/b/manifests/latest`);
  assert.equal(m.status, 502);
});
