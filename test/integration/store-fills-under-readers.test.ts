import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, test } from 'node:test';
import { request } from 'undici';
import { startFaultServer, type FaultServer } from '../helpers/fault-server.js';
import { startSigil, simpleConfig, type SigilHandle } from '../helpers/sigil.js';
import { mountTmpfs } from '../helpers/tmpfs.js';
import { sha256, sha256Hex } from '../helpers/digest.js';

// The disk fills while several requests read one blob behind the store's download of it: the
// store stops writing, and every one of those requests still gets the whole blob, right (a store
// fault degrades to pass-through, it does not cut downloads off).
const UP = 'reg.test';
const BLOB = randomBytes(6 * 1024 * 1024);
const DIGEST = sha256(BLOB);
const HALF = 3 * 1024 * 1024;

const cleanups: Array<() => Promise<void>> = [];
after(async () => {
  for (const c of cleanups.reverse()) await c();
});

test('the disk filling during a stored download: every request reading behind it still gets the whole blob, right', async (t) => {
  const fs = await mountTmpfs(24 * 1024 * 1024);
  if ('unavailable' in fs) return t.skip(fs.unavailable);
  cleanups.push(() => fs.stop());
  const dir = join(fs.dir, 'store');
  let release!: () => void;
  const released = new Promise<void>((r) => (release = r));
  const up: FaultServer = await startFaultServer(async (req, res) => {
    if (req.url === '/v2/' || req.url === '/v2') {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end('{}');
      return;
    }
    if (!req.url?.endsWith(`/blobs/${DIGEST}`)) {
      res.writeHead(404);
      res.end();
      return;
    }
    const m = /^bytes=(\d+)-$/.exec(String(req.headers.range ?? ''));
    if (m) {
      const start = Number(m[1]);
      res.writeHead(206, { 'content-length': String(BLOB.length - start), 'content-range': `bytes ${start}-${BLOB.length - 1}/${BLOB.length}` });
      res.end(BLOB.subarray(start));
      return;
    }
    res.writeHead(200, { 'content-length': String(BLOB.length), 'content-type': 'application/octet-stream' });
    res.write(BLOB.subarray(0, HALF));
    await released;
    res.end(BLOB.subarray(HALF));
  });
  cleanups.push(() => up.stop());
  const s: SigilHandle = await startSigil(simpleConfig([{ name: UP, url: up.url }], `cache:\n  store:\n    dir: ${dir}\n    maxBytes: 1073741824\n`));
  cleanups.push(() => s.stop());

  const get = async (): Promise<{ status: number; body: Buffer | Error }> => {
    const r = await request(`${s.url}/v2/${UP}/r/blobs/${DIGEST}`);
    try {
      return { status: r.statusCode, body: Buffer.from(await r.body.arrayBuffer()) };
    } catch (err) {
      return { status: r.statusCode, body: err as Error };
    }
  };
  const pulls = [get(), get(), get()];
  // the first half is on disk (in the store's temp file)
  for (let i = 0; i < 200; i++) {
    const names = await readdir(join(dir, 'tmp')).catch(() => []);
    if (names.length > 0) break;
    await sleep(25);
  }
  await sleep(300);
  await fs.fill();
  release();
  for (const p of await Promise.all(pulls)) {
    assert.equal(p.status, 200);
    assert.ok(Buffer.isBuffer(p.body), `the download was cut off: ${String(p.body)}`);
    assert.equal(sha256Hex(p.body), DIGEST.slice('sha256:'.length), 'the whole blob, right');
  }
  const ready = await request(`${s.url}/readyz`);
  const body = (await ready.body.json()) as { degraded?: { store?: string } };
  assert.equal(ready.statusCode, 200);
  assert.match(body.degraded?.store ?? '', /ENOSPC/, 'the store says why it does not write');
});
