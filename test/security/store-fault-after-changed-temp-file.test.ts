import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, test } from 'node:test';
import { isSigilError } from '../../src/errors.js';
import { behindDownload } from '../../src/registry/behind-download.js';
import { FOLLOW_CHUNK_BYTES, FOLLOW_RECENT_BYTES } from '../../src/store/index.js';
import { FakeRegistry, silentLogger } from '../helpers/fake-registry.js';
import { overwrite, removeStores, sha256, storeWith } from '../helpers/trusted-store.js';

// A request reading behind a download that lags reads the temp file back, and checks what it
// delivers itself (store/follower.ts). When the store fails under it (a disk fault: someone who can
// write the store's directory can fill its disk), the rest comes from the upstream and the whole is
// checked: what was delivered and the rest. What must hold: bytes delivered from a changed temp
// file are never completed that way — not even when the file is put back as it was before it is
// read again, so that reading it again gives other bytes than those delivered.

after(removeStores);

const ioFault = (): Error => Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC', syscall: 'write' });

/** A reader of `s` that the test watches: bytes so far, and how it ended. */
function watch(s: Readable) {
  const parts: Buffer[] = [];
  let had = 0;
  const ended = new Promise<{ complete: boolean; error?: unknown }>((resolve) => {
    s.on('data', (c: Buffer) => {
      parts.push(c);
      had += c.length;
    });
    s.once('end', () => resolve({ complete: true }));
    s.once('error', (error) => resolve({ complete: false, error }));
  });
  return {
    ended,
    bytes: () => Buffer.concat(parts),
    async had(n: number): Promise<void> {
      for (let i = 0; i < 2000 && had < n; i++) await sleep(2);
      assert.equal(had, n);
    },
  };
}

const cases = [
  // every byte read back from the file
  { name: 'chunks not kept', handedOver: false, half: 2 * FOLLOW_CHUNK_BYTES, readsFile: true },
  // every byte from the writer's chunks in memory: the file is not what was delivered
  { name: 'a reader within the chunks kept in memory', handedOver: true, half: 2 * FOLLOW_CHUNK_BYTES, readsFile: false },
  // the first bytes from the file, the rest from memory once it caught up
  { name: 'a reader that starts behind the chunks kept in memory and catches up', handedOver: true, half: FOLLOW_RECENT_BYTES + 2 * FOLLOW_CHUNK_BYTES, readsFile: true },
];

for (const { name, handedOver, half, readsFile } of cases) {
  test(`bytes delivered from a changed temp file are not completed after a disk fault, even with the file put back before it is read again (${name})`, async () => {
    const size = half + FOLLOW_CHUNK_BYTES + 17;
    const bytes = randomBytes(size);
    const digest = sha256(bytes);
    const { store, dir } = await storeWith(randomBytes(10));
    try {
      const w = store.beginWrite(digest, size, { chunksHandedOver: handedOver });
      assert.ok(w.kind === 'writer');
      w.done.catch(() => {});
      await w.opened;
      const up = new FakeRegistry();
      up.blobs.set(digest, bytes);
      // as an upstream's body comes: in chunks, each its own buffer
      for (let at = 0; at < half; at += FOLLOW_CHUNK_BYTES) {
        const chunk = Buffer.from(bytes.subarray(at, Math.min(half, at + FOLLOW_CHUNK_BYTES)));
        await new Promise<void>((resolve, reject) => w.writer.write(chunk, (err) => (err ? reject(err) : resolve())));
      }
      const [tmp] = await readdir(join(dir, 'tmp'));
      assert.ok(tmp, 'the temp file');
      const path = join(dir, 'tmp', tmp);
      while ((await stat(path)).size < half) await sleep(5);
      // Changed before the reader reads it. (A reader that joins now finds the written chunks out of
      // memory when they are not kept; when they are, it reads memory, and this spec still holds.)
      const at = 1000;
      await overwrite(path, at, randomBytes(16));
      const f = store.beginWrite(digest, size);
      assert.ok(f.kind === 'follower');
      const r = watch(behindDownload(up, { repository: 'app', digest, size }, f.stream, { logger: silentLogger() }));
      await r.had(half - 1);
      // put back as it was: reading it again now gives the right bytes
      await overwrite(path, at, bytes.subarray(at, at + 16));
      w.writer.destroy(ioFault());
      const end = await r.ended;
      const got = r.bytes();
      if (end.complete) assert.ok(got.equals(bytes), `completed with ${got.length} bytes that are not the blob's`);
      if (readsFile) {
        assert.ok(!end.complete, 'the bytes delivered were changed: not completed');
        assert.ok(isSigilError(end.error) && end.error.code === 'DIGEST_MISMATCH', `failed with ${String(end.error)}`);
      }
    } finally {
      await store.close();
    }
  });
}
