import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { setImmediate as nextTurn, setTimeout as sleep } from 'node:timers/promises';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { after, test } from 'node:test';
import type { Digest } from '../../src/oci/digest.js';
import { ContentStore } from '../../src/store/index.js';
import { tempDir } from '../helpers/temp.js';

// Memory per stream is bounded, whatever the object's size: many concurrent pulls of one big
// blob through the store (reading it, or reading behind its write) hold a few read chunks each,
// not the blob or megabytes of read-ahead. 64 concurrent pulls of a 64 MiB blob through 4 MiB
// chunks peaked at 544 MiB.

const MiB = 1024 * 1024;
const STREAMS = 64;
const SIZE = 64 * MiB;
/** What one paused stream may hold (the contract's bound: peak memory grows by ~1 MiB per stream). */
const PER_STREAM_MAX = MiB;

const dirs: string[] = [];
after(async () => {
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

/** The GC, to measure what is held rather than what is not yet collected. */
function exposeGc(): () => void {
  setFlagsFromString('--expose-gc');
  return runInNewContext('gc') as () => void;
}

/** 64 MiB, made in place (a fill pattern that differs per MiB, so that it is not all one page). */
function blob(): Buffer {
  const b = Buffer.alloc(SIZE);
  for (let i = 0; i < SIZE / MiB; i++) b.fill(i & 0xff, i * MiB, (i + 1) * MiB);
  return b;
}

/** Lets every stream read until it stops by itself (its buffer full, nobody reading). */
async function settle(): Promise<void> {
  for (let i = 0; i < 20; i++) {
    await nextTurn();
    await sleep(5);
  }
}

/** Starts every stream, takes one chunk of each, then leaves them paused: what do they hold? (Destroyed after.) */
async function heldByPausedStreams(open: () => Promise<Readable>): Promise<number> {
  const gc = exposeGc();
  gc();
  const before = process.memoryUsage().arrayBuffers;
  const streams: Readable[] = [];
  for (let i = 0; i < STREAMS; i++) streams.push(await open());
  await Promise.all(
    streams.map(
      (s) =>
        new Promise<void>((resolve, reject) => {
          s.once('error', reject);
          s.once('readable', () => {
            assert.ok(s.read() !== null);
            resolve();
          });
        }),
    ),
  );
  await settle();
  gc();
  const grown = process.memoryUsage().arrayBuffers - before;
  for (const s of streams) s.destroy();
  return grown;
}

async function storeOf(bytes: Buffer, trustCtimeAgeMs?: number): Promise<{ store: ContentStore; digest: Digest; path: string }> {
  const dir = await tempDir('sigil-mem-');
  dirs.push(dir);
  const store = await ContentStore.open({ dir, maxBytes: 1 << 30, ...(trustCtimeAgeMs !== undefined ? { trustCtimeAgeMs } : {}) });
  const digest = `sha256:${createHash('sha256').update(bytes).digest('hex')}` as Digest;
  await store.putBytes(digest, bytes);
  return { store, digest, path: join(dir, 'blobs', 'sha256', digest.slice('sha256:'.length)) };
}

function bounded(grown: number, what: string): void {
  assert.ok(grown <= STREAMS * PER_STREAM_MAX, `${STREAMS} paused ${what} hold ${(grown / MiB).toFixed(1)} MiB (at most ${(PER_STREAM_MAX / MiB).toFixed(2)} MiB each)`);
}

test('paused reads of a stored 64 MiB object, hashed as they stream, hold at most 1 MiB each', async () => {
  const { store, digest } = await storeOf(blob());
  try {
    bounded(await heldByPausedStreams(async () => (await store.openRead(digest)) as Readable), 'hashing reads');
  } finally {
    await store.close();
  }
});

test('paused trusted reads of a stored 64 MiB object hold at most 1 MiB each', async () => {
  const bytes = blob();
  const { store, digest, path } = await storeOf(bytes, 20);
  try {
    while ((await stat(path)).ctimeMs > Date.now() - 30) await sleep(10);
    const first = (await store.openRead(digest)) as Readable; // hashed: trusted afterwards
    for await (const _ of first);
    bounded(await heldByPausedStreams(async () => (await store.openRead(digest)) as Readable), 'trusted reads');
  } finally {
    await store.close();
  }
});

test('paused readers behind a 64 MiB write hold at most 1 MiB each', async () => {
  const bytes = blob();
  const dir = await tempDir('sigil-mem-');
  dirs.push(dir);
  const store = await ContentStore.open({ dir, maxBytes: 1 << 30 });
  try {
    const digest = `sha256:${createHash('sha256').update(bytes).digest('hex')}` as Digest;
    const w = store.beginWrite(digest, SIZE);
    assert.equal(w.kind, 'writer');
    if (w.kind !== 'writer') return;
    // all but the last byte written: followers can read all of it but the held-back byte
    await new Promise<void>((resolve, reject) => w.writer.write(bytes.subarray(0, SIZE - 1), (e) => (e ? reject(e) : resolve())));
    const grown = await heldByPausedStreams(async () => {
      const f = store.beginWrite(digest, SIZE);
      assert.equal(f.kind, 'follower');
      return (f as { stream: Readable }).stream;
    });
    w.writer.end(bytes.subarray(SIZE - 1));
    await w.done;
    bounded(grown, 'followers');
  } finally {
    await store.close();
  }
});
