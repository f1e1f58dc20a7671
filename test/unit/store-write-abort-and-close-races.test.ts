import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { open, readdir, readFile } from 'node:fs/promises';
import type { FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, test } from 'node:test';
import { HashPool } from '../../src/hash/hash-pool.js';
import type { Digest } from '../../src/oci/digest.js';
import { ContentStore } from '../../src/store/content-store.js';
import { InFlightWrite } from '../../src/store/inflight.js';
import { tempDir } from '../helpers/temp.js';
import { sha256 } from '../helpers/digest.js';
import { drain } from '../helpers/stream.js';

// Races of the store's streaming write: the 'verified' state, the hash on a worker
// thread, short pwritev, and close() while the fsync and rename run behind the readers.


const freshDir = (): Promise<string> => tempDir('sigil-write-races');
const pool = new HashPool({ size: 1 });
after(async () => {
  await pool.close();
});

test('an abort that lands while the worker has the digest ready is final (no commit, settled once, state failed)', async () => {
  // The hash worker finished the job (DONE) but the event loop has not yet resumed digest() when
  // close() (or the idle timer) aborts the write: RingHash.abort() cannot cancel a DONE job and
  // digest() still resolves. #final does not look at the state again: it turns 'failed' back into
  // 'verified', fsyncs, calls commit() for a write whose `done` already rejected and whose temp
  // is being removed, calls settled() a second time, and ends in 'committed'.
  const dir = await freshDir();
  const data = randomBytes(3 * 1024 * 1024);
  let write: InFlightWrite | undefined;
  let commits = 0;
  let settles = 0;
  const hashes = {
    start(alg: 'sha256' | 'sha512', expected?: number) {
      const job = pool.start(alg, expected);
      const digest = job.digest.bind(job);
      job.digest = () => {
        const p = digest();
        // The worker finishes while the event loop is busy elsewhere; then the abort arrives.
        const until = Date.now() + 200;
        while (Date.now() < until) {
          /* busy: the event loop is serving something else */
        }
        write!.abort(new Error('content store closing (test)'));
        return p;
      };
      return job;
    },
  } as unknown as HashPool;
  write = new InFlightWrite({
    digest: sha256(data),
    expectedSize: data.length,
    maxSize: 1 << 30,
    tmpPath: join(dir, 'blob.tmp'),
    idleTimeoutMs: 10_000,
    hashes,
    commit: async () => {
      commits++;
    },
    settled: () => {
      settles++;
    },
  });
  const follower = drain(write.follow()); // holds the descriptor open, as a reader does
  write.writer.end(data);
  await assert.rejects(write.done);
  await follower;
  await sleep(200); // whatever #final still does after the abort
  assert.equal(write.state().kind, 'failed', 'an aborted write stays failed');
  assert.equal(commits, 0, 'commit() never runs for an aborted write');
  assert.equal(settles, 1, 'settled() runs once');
  assert.deepEqual(await readdir(dir), []);
  assert.deepEqual(pool.load(), [0]);
});

test('short pwritev results are continued where they stopped (file and followers byte-exact)', async () => {
  const dir = await freshDir();
  const probe = await open(join(dir, 'probe'), 'w');
  const proto = Object.getPrototypeOf(probe) as { writev: FileHandle['writev'] };
  await probe.close();
  const writev = proto.writev;
  let shortWrites = 0;
  // At most a third of what is asked (at least 1 byte), cut in the middle of a buffer.
  proto.writev = function (this: FileHandle, bufs: readonly NodeJS.ArrayBufferView[], position?: number | null) {
    const total = bufs.reduce((n, b) => n + b.byteLength, 0);
    let budget = Math.max(1, Math.floor(total / 3));
    if (budget < total) shortWrites++;
    const cut: Buffer[] = [];
    for (const b of bufs) {
      if (budget === 0) break;
      const buf = Buffer.from(b.buffer, b.byteOffset, b.byteLength);
      cut.push(buf.subarray(0, Math.min(budget, buf.length)));
      budget -= Math.min(budget, buf.length);
    }
    return writev.call(this, cut, position ?? undefined);
  } as FileHandle['writev'];
  try {
    const store = await ContentStore.open({ dir, maxBytes: 1 << 30, sweepMetaAtOpen: false });
    const data = randomBytes(2 * 1024 * 1024 + 17);
    const digest = sha256(data);
    const w = store.beginWrite(digest, data.length);
    assert.equal(w.kind, 'writer');
    const f = store.beginWrite(digest, data.length);
    assert.equal(f.kind, 'follower');
    const followed = drain(f.stream);
    for (let off = 0; off < data.length; off += 70_001) {
      if (!w.writer.write(data.subarray(off, off + 70_001))) await new Promise((r) => w.writer.once('drain', r));
    }
    w.writer.end();
    await w.done;
    const got = await followed;
    assert.equal(got.error, undefined);
    assert.ok(got.bytes.equals(data), 'the follower has exactly the bytes');
    assert.ok((await store.readAll(digest, data.length)) !== null, 'the stored object hashes to its digest');
    assert.ok(shortWrites > 3, `short writes happened (${shortWrites})`);
    await store.close();
  } finally {
    proto.writev = writev;
  }
});

test('close() while fsync/rename run behind the readers: readers with every byte are right; the object is whole or absent; no temp; nothing appears later', async () => {
  for (let i = 0; i < 25; i++) {
    const dir = await freshDir();
    const store = await ContentStore.open({ dir, maxBytes: 1 << 30, sweepMetaAtOpen: false, hashes: pool });
    const data = randomBytes(1024 * 1024 + i);
    const digest = sha256(data);
    const w = store.beginWrite(digest, data.length);
    const f = store.beginWrite(digest, data.length);
    assert.ok(w.kind === 'writer' && f.kind === 'follower');
    const followed = drain(f.stream);
    w.writer.end(data);
    const got = await followed;
    await store.close();
    const done = await w.done.then(
      () => 'stored',
      () => 'aborted',
    );
    const objects = join(dir, 'blobs', 'sha256');
    const atClose = await readdir(objects);
    await sleep(50);
    assert.deepEqual(await readdir(objects), atClose, 'nothing is renamed into place after close()');
    assert.deepEqual(await readdir(join(dir, 'tmp')), []);
    if (got.error === undefined) assert.ok(got.bytes.equals(data));
    else assert.ok(got.bytes.length < data.length);
    for (const name of atClose) assert.equal(sha256(await readFile(join(objects, name))), `sha256:${name}`);
    assert.ok(done === 'aborted' || atClose.length === 1, 'a write reported stored is stored');
  }
});
