import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readdir, readFile, rename } from 'node:fs/promises';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { isSigilError } from '../../src/errors.js';
import type { Digest } from '../../src/oci/digest.js';
import { HashPool } from '../../src/hash/hash-pool.js';
import { InFlightWrite, rest } from '../../src/store/inflight.js';
import { tempDir } from '../helpers/temp.js';
import { sha256 } from '../helpers/digest.js';
import { drain } from '../helpers/stream.js';


const freshDir = (): Promise<string> => tempDir('sigil-inflight');
const pool = new HashPool({ size: 1 });
after(async () => {
  await pool.close();
});

interface Harness {
  write: InFlightWrite;
  dir: string;
  tmp: string;
  final: string;
  /** Resolves the pending commit (the rename into place). */
  finishCommit(): void;
  commitStarted: Promise<void>;
}

/** An InFlightWrite whose commit waits until the test lets it go (or fails when `failCommit`). */
async function harness(data: Buffer, digest: Digest, opts: { failCommit?: boolean; hashes?: HashPool } = {}): Promise<Harness> {
  const dir = await freshDir();
  const tmp = join(dir, 'blob.tmp');
  const final = join(dir, 'blob');
  let finishCommit = (): void => {};
  let started = (): void => {};
  const commitStarted = new Promise<void>((r) => (started = r));
  const gate = new Promise<void>((r) => (finishCommit = r));
  const write = new InFlightWrite({
    digest,
    expectedSize: data.length,
    maxSize: 1 << 30,
    tmpPath: tmp,
    idleTimeoutMs: 10_000,
    commit: async (path) => {
      started();
      await gate;
      if (opts.failCommit === true) throw new Error('rename failed (test)');
      await rename(path, final);
    },
    settled: () => {},
    ...(opts.hashes !== undefined ? { hashes: opts.hashes } : {}),
  });
  return { write, dir, tmp, final, finishCommit, commitStarted };
}

async function feed(w: InFlightWrite, data: Buffer, sizes: readonly number[]): Promise<void> {
  let off = 0;
  for (let i = 0; off < data.length; i++) {
    const n = sizes[i % sizes.length];
    if (!w.writer.write(data.subarray(off, off + n))) await new Promise((r) => w.writer.once('drain', r));
    off += n;
  }
  w.writer.end();
}

test('followers get every byte once the digest checks, before the fsync and rename are over', async () => {
  const data = randomBytes(3 * 1024 * 1024 + 5);
  const h = await harness(data, sha256(data));
  const follower = drain(h.write.follow());
  await feed(h.write, data, [65_536]);
  await h.commitStarted;
  const got = await follower; // the commit is still held back
  assert.equal(got.error, undefined);
  assert.ok(got.bytes.equals(data));
  assert.equal(h.write.state().kind, 'verified');
  h.finishCommit();
  await h.write.done;
  assert.equal(h.write.state().kind, 'committed');
  assert.ok((await readFile(h.final)).equals(data));
});

test('a commit that fails after the check: done rejects, the temp is gone, nothing is stored', async () => {
  const data = randomBytes(1024 * 1024);
  const h = await harness(data, sha256(data), { failCommit: true });
  const follower = drain(h.write.follow());
  await feed(h.write, data, [100_000]);
  await h.commitStarted;
  assert.ok((await follower).bytes.equals(data), 'the bytes were right: the reader had them all');
  h.finishCommit();
  await assert.rejects(h.write.done);
  assert.equal(h.write.state().kind, 'failed');
  assert.deepEqual(await readdir(h.dir), []);
});

test('wrong bytes: a follower never has the last byte, and the commit never starts', async () => {
  const data = randomBytes(2 * 1024 * 1024);
  const other = Buffer.from(data);
  other[other.length - 1] ^= 1;
  const h = await harness(other, sha256(data));
  let committed = false;
  void h.commitStarted.then(() => (committed = true));
  const follower = drain(h.write.follow());
  await feed(h.write, other, [65_536]);
  await assert.rejects(h.write.done, (e: unknown) => isSigilError(e) && e.code === 'DIGEST_MISMATCH');
  const got = await follower;
  assert.ok(isSigilError(got.error) && got.error.code === 'DIGEST_MISMATCH');
  assert.ok(got.bytes.length < other.length, `follower had ${got.bytes.length} of ${other.length}`);
  assert.equal(committed, false);
});

test('many small and empty chunks are batched into the file in order', async () => {
  const data = randomBytes(1024 * 1024 + 333);
  const h = await harness(data, sha256(data));
  await feed(h.write, data, [1, 0, 7, 4096, 0, 65_536, 13]);
  await h.commitStarted;
  h.finishCommit();
  await h.write.done;
  assert.ok((await readFile(h.final)).equals(data));
});

test('rest(): what is left of a batch after a short write', () => {
  const a = Buffer.from('abc');
  const b = Buffer.from('defg');
  const c = Buffer.from('h');
  const str = (bs: Buffer[]): string => bs.map((x) => x.toString()).join('|');
  assert.equal(str(rest([a, b, c], 0)), 'abc|defg|h');
  assert.equal(str(rest([a, b, c], 2)), 'c|defg|h');
  assert.equal(str(rest([a, b, c], 3)), 'defg|h');
  assert.equal(str(rest([a, b, c], 5)), 'fg|h');
  assert.equal(str(rest([a, b, c], 8)), '');
});

test('hashed on a worker thread (the app pool): right bytes commit, wrong ones never complete a follower', async () => {
  const data = randomBytes(5 * 1024 * 1024 + 1);
  const ok = await harness(data, sha256(data), { hashes: pool });
  const f1 = drain(ok.write.follow());
  await feed(ok.write, data, [65_536, 1_000_000]);
  assert.deepEqual(pool.load(), [1], 'the hash runs on the worker');
  await ok.commitStarted;
  ok.finishCommit();
  await ok.write.done;
  assert.ok((await f1).bytes.equals(data));
  assert.ok((await readFile(ok.final)).equals(data));

  const other = Buffer.from(data);
  other[0] ^= 1;
  const bad = await harness(other, sha256(data), { hashes: pool });
  const f2 = drain(bad.write.follow());
  await feed(bad.write, other, [65_536]);
  await assert.rejects(bad.write.done, (e: unknown) => isSigilError(e) && e.code === 'DIGEST_MISMATCH');
  const got = await f2;
  assert.ok(got.bytes.length < other.length);
  assert.deepEqual(pool.load(), [0], 'no job left on the worker');
});
