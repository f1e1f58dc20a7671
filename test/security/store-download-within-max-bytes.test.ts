import assert from 'node:assert/strict';
import { readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { request } from 'undici';
import { startFaultServer, type FaultServer } from '../helpers/fault-server.js';
import { tempDir } from '../helpers/temp.js';
import { startSigil, type SigilHandle } from '../helpers/sigil.js';

// Prevents: an upstream filling the disk through the content store. A blob download is written
// to <store>/tmp with no bound but the upstream's own Content-Length (absent here, or as large as
// it likes): nothing stops it at cache.store.maxBytes, and the digest is only checked at the end,
// which an endless body never reaches. (The same holds in enforce mode for any layer digest a
// verified manifest names: the upstream picks the bytes it serves for it.)
const MAX_BYTES = 1024 * 1024;
const SENT_BYTES = 4 * MAX_BYTES;
const DIGEST = `sha256:${'ab'.repeat(32)}`;

const cleanup: Array<() => Promise<void>> = [];
after(async () => {
  for (const c of cleanup.reverse()) await c();
});

async function dirBytes(dir: string): Promise<number> {
  let total = 0;
  for (const name of await readdir(dir)) total += (await stat(join(dir, name)).catch(() => ({ size: 0 }))).size;
  return total;
}

test('a blob download into the store never grows past cache.store.maxBytes on disk', async () => {
  let sent = 0;
  const up: FaultServer = await startFaultServer(async (req, res) => {
    const url = req.url ?? '';
    if (!url.includes('/blobs/')) {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end('{}');
      return;
    }
    // No Content-Length (chunked): 4 MiB quickly, then the body stays open (a drip would do too).
    res.writeHead(200, { 'content-type': 'application/octet-stream' });
    const chunk = Buffer.alloc(64 * 1024, 7);
    while (sent < SENT_BYTES) {
      if (!res.write(chunk)) await new Promise((r) => res.once('drain', r));
      sent += chunk.length;
    }
  });
  cleanup.push(() => up.stop());
  const storeDir = await tempDir('sigil-size-');
  const sigil: SigilHandle = await startSigil(
    `server:\n  listen: 127.0.0.1:0\nupstreams:\n  - name: up.test\n    url: ${up.url}\ndefaultUpstream: up.test\ncache:\n  store:\n    dir: ${storeDir}\n    maxBytes: ${MAX_BYTES}\n`,
  );
  cleanup.push(() => sigil.stop());

  const ac = new AbortController();
  cleanup.push(async () => ac.abort());
  const res = await request(`${sigil.url}/v2/open/big/blobs/${DIGEST}`, { signal: ac.signal });
  res.body.on('data', () => {}).on('error', () => {});
  let peak = 0;
  const t0 = Date.now();
  while (Date.now() - t0 < 4000) {
    peak = Math.max(peak, await dirBytes(join(storeDir, 'tmp')));
    if (sent >= SENT_BYTES && Date.now() - t0 > 1000) break;
    await new Promise((r) => setTimeout(r, 50));
  }
  assert.ok(sent >= SENT_BYTES, `the upstream sent ${sent} bytes`);
  assert.ok(peak <= MAX_BYTES, `the store's temp files reached ${peak} bytes with maxBytes ${MAX_BYTES}: a download is not bounded by the store size`);
});
