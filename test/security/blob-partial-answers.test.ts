import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, test } from 'node:test';
import { request } from 'undici';
import { startFaultServer, type FaultHandler } from '../helpers/fault-server.js';
import { startSigil, simpleConfig, type SigilHandle } from '../helpers/sigil.js';
import { sha256 } from '../helpers/digest.js';
import { drain } from '../helpers/stream.js';

// An upstream that answers `206 Partial Content` where it must not: the digest check must not be
// skipped by calling a whole (wrong) blob "a part".
const TIMEOUTS = { connectMs: 500, headersMs: 2000, bodyIdleMs: 2000, metadataDeadlineMs: 3000 };
const GOOD = randomBytes(300 * 1024);
const DIGEST = sha256(GOOD);
const WRONG = randomBytes(GOOD.length); // same length, other bytes

const cleanups: Array<() => Promise<void>> = [];
after(async () => {
  for (const c of cleanups.reverse()) await c();
});

async function through(handler: FaultHandler): Promise<SigilHandle> {
  const up = await startFaultServer(handler);
  cleanups.push(() => up.stop());
  const sigil = await startSigil(simpleConfig([{ name: 'up.test', url: up.url }]), { timeouts: TIMEOUTS });
  cleanups.push(() => sigil.stop());
  return sigil;
}

/** What the client got: status, headers, the bytes it received, and whether the body completed. */
async function fetchBlob(sigil: SigilHandle, headers: Record<string, string> = {}) {
  const res = await request(`${sigil.url}/v2/up.test/a/b/blobs/${DIGEST}`, { headers, headersTimeout: 10_000, bodyTimeout: 10_000 });
  const { bytes, error } = await drain(res.body);
  return { status: res.statusCode, headers: res.headers, body: bytes, complete: error === undefined };
}

async function badResponses(sigil: SigilHandle): Promise<number> {
  const v = (await sigil.metrics.upstreamErrors.get()).values.filter((x) => x.labels.kind === 'blob' && x.labels.code === 'UPSTREAM_BAD_RESPONSE');
  return v.reduce((n, x) => n + x.value, 0);
}

/** Answers 206 with `body` and `contentRange`, whatever was asked. */
function partial(body: Buffer, contentRange: string | undefined): FaultHandler {
  return (_req, res) => {
    res.writeHead(206, {
      'content-type': 'application/octet-stream',
      'content-length': String(body.length),
      ...(contentRange !== undefined ? { 'content-range': contentRange } : {}),
    });
    res.end(body);
  };
}

test('a 206 to a GET without Range is an upstream error (502), never a complete blob', async () => {
  for (const contentRange of [`bytes 0-${WRONG.length - 1}/${WRONG.length}`, undefined, `bytes 0-99/${WRONG.length}`]) {
    const sigil = await through(partial(WRONG, contentRange));
    const r = await fetchBlob(sigil);
    assert.equal(r.status, 502, `Content-Range ${contentRange}: ${r.body.subarray(0, 200).toString()}`);
    assert.ok(!r.body.includes(WRONG.subarray(0, 1024)), 'none of the upstream bytes reached the client');
    assert.equal((JSON.parse(r.body.toString()) as { errors: Array<{ code: string }> }).errors[0].code, 'UNAVAILABLE');
    assert.equal(await badResponses(sigil), 1, 'counted as an upstream failure');
    assert.ok(sigil.logs.some((l) => l.level >= 40 && String(l.msg).includes('206')), 'a warning says what the upstream did');
  }
});

test('a 206 with other bytes than the range asked for is an upstream error (502)', async () => {
  const sigil = await through(partial(WRONG.subarray(0, 200), `bytes 0-199/${WRONG.length}`));
  const r = await fetchBlob(sigil, { range: 'bytes=100-299' });
  assert.equal(r.status, 502);
  assert.equal(await badResponses(sigil), 1);
  // more than asked
  const sigil1 = await through(partial(WRONG.subarray(100, 400), `bytes 100-399/${WRONG.length}`));
  assert.equal((await fetchBlob(sigil1, { range: 'bytes=100-299' })).status, 502);
  // Content-Length that disagrees with the Content-Range
  const sigil2 = await through(partial(WRONG.subarray(0, 300), `bytes 100-299/${WRONG.length}`));
  assert.equal((await fetchBlob(sigil2, { range: 'bytes=100-299' })).status, 502);
});

test('a 206 whose range is the whole blob is hashed: wrong bytes are cut off, right bytes pass whole', async () => {
  const whole = `bytes 0-${GOOD.length - 1}/${GOOD.length}`;
  for (const range of ['bytes=0-', `bytes=0-${GOOD.length - 1}`, `bytes=-${GOOD.length}`, `bytes=0-${GOOD.length * 2}`]) {
    const bad = await fetchBlob(await through(partial(WRONG, whole)), { range });
    assert.equal(bad.status, 206, range);
    assert.ok(!bad.complete && bad.body.length < WRONG.length, `${range}: the client received ${bad.body.length} of ${WRONG.length} wrong bytes`);
    const good = await fetchBlob(await through(partial(GOOD, whole)), { range });
    assert.equal(good.status, 206);
    assert.ok(good.complete && good.body.equals(GOOD), range);
  }
});

test('a 206 that is the part asked for (or the first part of an open-ended range) passes as it is', async () => {
  const sigil = await through(partial(GOOD.subarray(100, 300), `bytes 100-299/${GOOD.length}`));
  const r = await fetchBlob(sigil, { range: 'bytes=100-299' });
  assert.equal(r.status, 206);
  assert.equal(r.headers['content-range'], `bytes 100-299/${GOOD.length}`);
  assert.ok(r.complete && r.body.equals(GOOD.subarray(100, 300)));
  // RFC 9110: a server may send less of an open-ended range than asked, starting where asked
  const r2 = await fetchBlob(await through(partial(GOOD.subarray(0, 1000), `bytes 0-999/${GOOD.length}`)), { range: 'bytes=0-' });
  assert.equal(r2.status, 206);
  assert.ok(r2.complete && r2.body.equals(GOOD.subarray(0, 1000)));
  assert.equal(await badResponses(sigil), 0);
});
