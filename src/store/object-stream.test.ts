import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { open, writeFile } from 'node:fs/promises';
import { createServer, request } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { PassThrough, Transform, Writable } from 'node:stream';
import { finished, pipeline } from 'node:stream/promises';
import { test } from 'node:test';
import { sha256Hex } from '../../test/helpers/digest.js';
import { collect } from '../../test/helpers/stream.js';
import { tempDir } from '../../test/helpers/temp.js';
import { READ_CHUNK_BYTES } from './limits.js';
import { ObjectStream, type ObjectStreamOptions } from './object-stream.js';
import { SLABS_PER_STREAM, SlabPool } from './read-slabs.js';

async function fileOf(bytes: Buffer): Promise<string> {
  const path = join(await tempDir('object-stream-'), 'object');
  await writeFile(path, bytes);
  return path;
}

/** A pool that counts the slabs it had to allocate. */
class CountingPool extends SlabPool {
  /** Slabs of one size, `idleKept` of them kept idle. */
  static of(bytes: number, idleKept: number): CountingPool {
    return new CountingPool({ budgetBytes: bytes, minBytes: bytes, maxBytes: bytes, slabsPerStream: 1, idleBytesKept: bytes * idleKept });
  }
  allocated = 0;
  override take(): Buffer {
    if (this.idle === 0) this.allocated++;
    return super.take();
  }
}

async function streamOf(path: string, opts: Partial<ObjectStreamOptions> & { size: number }): Promise<ObjectStream> {
  const fh = await open(path);
  return new ObjectStream({ fh, start: 0, end: opts.size - 1, short: (pos) => new Error(`short at ${pos}`), ...opts });
}

/**
 * For the specs' own destinations below, which copy a chunk before they report it written (as a
 * socket has sent it by then): they may be given slabs. By default only an HTTP response is.
 */
const likeASocket = { doneWhenWritten: () => true };

/**
 * A destination that completes each write only when the spec says so, and copies what it was
 * given at that moment (what a socket would have sent).
 */
class HeldWritable extends Writable {
  readonly pending: Array<() => void> = [];
  readonly sent: Buffer[] = [];
  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    this.pending.push(() => {
      this.sent.push(Buffer.from(chunk));
      cb();
    });
  }
  release(): boolean {
    const next = this.pending.shift();
    next?.();
    return next !== undefined;
  }
}

/** Event-loop turns until `cond` holds (file reads complete on the thread pool, in their own time). */
async function until(cond: () => boolean, what: string): Promise<void> {
  for (let i = 0; !cond(); i++) {
    if (i > 100_000) throw new Error(`never: ${what}`);
    await new Promise((r) => setImmediate(r));
  }
}

/** Chunks given to `dest` and not yet reported written (the one being written included). */
const unwritten = (dest: Writable): number => dest.writableLength / READ_CHUNK_BYTES;

test('piped, the stream writes the whole range into its destination and ends it', async () => {
  const bytes = randomBytes(3 * READ_CHUNK_BYTES + 1234);
  const path = await fileOf(bytes);
  const pool = CountingPool.of(READ_CHUNK_BYTES, 8);
  const s = await streamOf(path, { size: bytes.length, start: 1000, end: bytes.length - 7, slabs: pool, ...likeASocket });
  const got: Buffer[] = [];
  const dest = new Writable({
    write(chunk: Buffer, _e, cb) {
      got.push(Buffer.from(chunk));
      cb();
    },
  });
  s.pipe(dest);
  await once(dest, 'finish');
  assert.deepEqual(Buffer.concat(got), bytes.subarray(1000, bytes.length - 6));
});

test('piped, a stream has at most SLABS_PER_STREAM chunks out while its destination is slow, and reuses them', async () => {
  const bytes = randomBytes(10 * READ_CHUNK_BYTES);
  const path = await fileOf(bytes);
  const pool = CountingPool.of(READ_CHUNK_BYTES, 8);
  const s = await streamOf(path, { size: bytes.length, slabs: pool, ...likeASocket });
  const dest = new HeldWritable({ highWaterMark: 1 });
  s.pipe(dest);
  const finished = once(dest, 'finish');
  let outstanding = 0;
  for (let released = 0; released < 10; released++) {
    await until(() => dest.pending.length > 0 && (unwritten(dest) === SLABS_PER_STREAM || released >= 10 - SLABS_PER_STREAM), 'the stream waits for its destination');
    await new Promise((r) => setImmediate(r)); // room for a third read, were the stream to take one
    outstanding = Math.max(outstanding, unwritten(dest));
    dest.release();
  }
  await finished;
  assert.deepEqual(Buffer.concat(dest.sent), bytes, 'what the destination had when each write completed is the file');
  assert.ok(outstanding <= SLABS_PER_STREAM, `at most ${SLABS_PER_STREAM} chunks waited for the destination at once (saw ${outstanding})`);
  assert.ok(pool.allocated <= SLABS_PER_STREAM, `ten chunks were read into ${pool.allocated} slabs`);
  assert.equal(pool.idle, pool.allocated, 'every slab went back to the pool once written');
});

test('piped, a slab whose write failed is not given back (the destination may still hold it)', async () => {
  const bytes = randomBytes(2 * READ_CHUNK_BYTES);
  const path = await fileOf(bytes);
  const pool = CountingPool.of(READ_CHUNK_BYTES, 8);
  const s = await streamOf(path, { size: bytes.length, slabs: pool, ...likeASocket });
  const dest = new Writable({
    write(_chunk, _e, cb) {
      cb(new Error('socket gone'));
    },
  });
  dest.on('error', () => {});
  s.pipe(dest);
  await until(() => dest.destroyed, 'the first write failed');
  s.destroy();
  await finished(s).catch(() => {});
  assert.equal(pool.idle, 0);
});

test('piped, the last chunk reaches the destination only after beforeLast passed; when it fails, never', async () => {
  const bytes = randomBytes(2 * READ_CHUNK_BYTES + 10);
  const path = await fileOf(bytes);
  for (const passes of [true, false]) {
    let release!: (ok: boolean) => void;
    const verdict = new Promise<boolean>((r) => (release = r));
    let asked = false;
    const s = await streamOf(path, {
      size: bytes.length,
      beforeLast: async () => {
        asked = true;
        if (!(await verdict)) throw new Error('digest mismatch');
      },
      slabs: CountingPool.of(READ_CHUNK_BYTES, 8),
      ...likeASocket,
    });
    const got: Buffer[] = [];
    const dest = new Writable({
      write(chunk: Buffer, _e, cb) {
        got.push(Buffer.from(chunk));
        cb();
      },
    });
    s.pipe(dest);
    const failed = once(s, 'error').then(([e]) => e as Error);
    await until(() => asked, 'beforeLast is asked');
    assert.equal(Buffer.concat(got).length, 2 * READ_CHUNK_BYTES, 'everything but the last chunk was written');
    release(passes);
    if (passes) {
      await once(dest, 'finish');
      assert.deepEqual(Buffer.concat(got), bytes);
    } else {
      assert.match((await failed).message, /digest mismatch/);
      assert.equal(Buffer.concat(got).length, 2 * READ_CHUNK_BYTES);
      assert.equal(dest.writableEnded, false, 'the destination is not ended as if complete');
    }
  }
});

test('piped with end: false, the destination stays open; the stream ends and closes its file', async () => {
  const bytes = randomBytes(1000);
  const path = await fileOf(bytes);
  let closed = false;
  const s = await streamOf(path, { size: bytes.length, closed: () => (closed = true), ...likeASocket });
  const dest = new Writable({ write: (_c, _e, cb) => cb() });
  s.pipe(dest, { end: false });
  await once(s, 'end');
  await once(s, 'close');
  assert.equal(dest.writableEnded, false);
  assert.equal(closed, true);
});

test('a piped stream destroyed while its destination holds a write stops reading and closes its file', async () => {
  const bytes = randomBytes(6 * READ_CHUNK_BYTES);
  const path = await fileOf(bytes);
  let closed = false;
  const s = await streamOf(path, { size: bytes.length, closed: () => (closed = true), slabs: CountingPool.of(READ_CHUNK_BYTES, 8), ...likeASocket });
  const dest = new HeldWritable({ highWaterMark: 1 });
  s.pipe(dest);
  await until(() => unwritten(dest) === SLABS_PER_STREAM, 'the stream waits for its destination');
  s.destroy();
  await finished(s).catch(() => {});
  dest.release();
  dest.release();
  await new Promise((r) => setImmediate(r));
  assert.equal(closed, true);
  assert.equal(dest.sent.length, SLABS_PER_STREAM, 'nothing was written after the destroy');
  assert.equal(unwritten(dest), 0);
});

test('read as a stream (not piped), each chunk is a buffer of its own that the consumer may keep', async () => {
  const bytes = randomBytes(3 * READ_CHUNK_BYTES);
  const path = await fileOf(bytes);
  const pool = CountingPool.of(READ_CHUNK_BYTES, 8);
  const s = await streamOf(path, { size: bytes.length, slabs: pool });
  const chunks: Buffer[] = [];
  for await (const c of s) chunks.push(c as Buffer);
  assert.deepEqual(Buffer.concat(chunks), bytes);
  assert.equal(new Set(chunks.map((c) => c.buffer)).size, chunks.length);
  assert.equal(pool.allocated, 0);
});

test('piped into a stream that passes its chunks on or keeps them (a PassThrough, a Transform in a pipeline, a Writable), each chunk is a buffer of its own', async () => {
  const bytes = randomBytes(8 * READ_CHUNK_BYTES + 321);
  const path = await fileOf(bytes);
  /** Keeps the chunks it is given and reads them once all came (as a reader behind a queue does, later). */
  const keeper = (got: Buffer[]): Writable => {
    const kept: Buffer[] = [];
    return new Writable({
      write(chunk: Buffer, _e, cb) {
        kept.push(chunk);
        cb();
      },
      final(cb) {
        for (const c of kept) got.push(Buffer.from(c));
        cb();
      },
    });
  };
  const ways: Record<string, (s: ObjectStream, got: Buffer[]) => Promise<void>> = {
    'a PassThrough': async (s, got) => {
      const dest = keeper(got);
      s.pipe(new PassThrough()).pipe(dest);
      await finished(dest);
    },
    'a Transform in a pipeline': (s, got) => pipeline(s, new Transform({ transform: (c, _e, cb) => cb(null, c) }), keeper(got)),
    'a Writable': async (s, got) => {
      const dest = keeper(got);
      s.pipe(dest);
      await finished(dest);
    },
  };
  for (const [way, run] of Object.entries(ways)) {
    const pool = CountingPool.of(READ_CHUNK_BYTES, 8);
    const got: Buffer[] = [];
    await run(await streamOf(path, { size: bytes.length, slabs: pool }), got);
    assert.equal(sha256Hex(Buffer.concat(got)), sha256Hex(bytes), `${way}: the object's bytes`);
    assert.equal(pool.allocated, 0, `${way}: no slab was read into`);
  }
});

test('many piped streams of different objects over real HTTP connections share slabs and each client gets its own bytes', async () => {
  const objects = await Promise.all(
    Array.from({ length: 12 }, async (_, i) => {
      const bytes = randomBytes(READ_CHUNK_BYTES * (2 + (i % 4)) + i * 977);
      return { bytes, path: await fileOf(bytes) };
    }),
  );
  const pool = CountingPool.of(READ_CHUNK_BYTES, 64);
  const server = createServer((req, res) => {
    const o = objects[Number(req.url!.slice(1))]!;
    res.setHeader('content-length', o.bytes.length);
    void streamOf(o.path, { size: o.bytes.length, slabs: pool }).then((s) => s.pipe(res));
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as AddressInfo;
  try {
    const fetchOne = (i: number): Promise<string> =>
      new Promise((resolve, reject) => {
        request({ host: '127.0.0.1', port, path: `/${i}` }, (res) => {
          // a slow reader now and then, so that writes wait in the socket while other streams reuse slabs
          if (i % 3 === 0) res.pause(), setTimeout(() => res.resume(), 20);
          collect(res).then((b) => resolve(sha256Hex(b)), reject);
        })
          .on('error', reject)
          .end();
      });
    for (let round = 0; round < 3; round++) {
      const got = await Promise.all(objects.map((_, i) => fetchOne(i)));
      assert.deepEqual(
        got,
        objects.map((o) => sha256Hex(o.bytes)),
      );
    }
    assert.ok(pool.allocated <= objects.length * SLABS_PER_STREAM, `${pool.allocated} slabs for ${objects.length} streams at once`);
    assert.ok(pool.idle > 0, 'slabs came back to the pool');
  } finally {
    server.close();
    server.closeAllConnections();
  }
});

test('a piped stream counts among its pool\'s readers while it reads (its slabs are sized from them), not once it ended or was destroyed', async () => {
  const bytes = randomBytes(6 * READ_CHUNK_BYTES);
  const path = await fileOf(bytes);
  const pool = CountingPool.of(READ_CHUNK_BYTES, 8);
  const held = new HeldWritable({ highWaterMark: 1 });
  const a = await streamOf(path, { size: bytes.length, slabs: pool, ...likeASocket });
  a.pipe(held);
  await until(() => unwritten(held) === SLABS_PER_STREAM, 'the first stream waits for its destination');
  const sink = new Writable({ write: (_c, _e, cb) => cb() });
  const b = await streamOf(path, { size: bytes.length, slabs: pool, ...likeASocket });
  b.pipe(sink);
  assert.equal(pool.streams, 2, 'both read');
  await once(sink, 'finish');
  assert.equal(pool.streams, 1, 'the one that ended left');
  a.destroy();
  await finished(a).catch(() => {});
  while (held.release());
  await until(() => pool.streams === 0, 'the destroyed one left too');
});

test('a piped stream counts among its pool\'s readers until its destination took its last chunks: slabs held by responses that are still being written stay within the budget', async () => {
  const KIB = 1024;
  const budgetBytes = 512 * KIB;
  const opts = { budgetBytes, minBytes: 64 * KIB, maxBytes: 256 * KIB, slabsPerStream: SLABS_PER_STREAM, idleBytesKept: 0 };
  let taken = 0;
  const pool = new (class extends SlabPool {
    override take(): Buffer {
      const slab = super.take();
      taken += slab.length;
      return slab;
    }
  })(opts);
  // Each object fits one slab: its stream reads it all and ends while its (slow) client still holds the chunk.
  const bytes = randomBytes(64 * KIB);
  const path = await fileOf(bytes);
  const dests: HeldWritable[] = [];
  const STREAMS = 4;
  for (let i = 0; i < STREAMS; i++) {
    const s = await streamOf(path, { size: bytes.length, slabs: pool, ...likeASocket });
    const dest = new HeldWritable({ highWaterMark: 1 });
    dests.push(dest);
    s.pipe(dest);
    await once(s, 'end');
    assert.equal(pool.streams, i + 1, `stream ${i} read everything, its chunk is not written yet: it still counts`);
  }
  const bound = Math.max(budgetBytes, STREAMS * opts.minBytes * SLABS_PER_STREAM);
  assert.ok(taken <= bound, `${taken} bytes of slabs out for ${STREAMS} unwritten responses (budget ${bound})`);
  dests[0]!.release();
  await until(() => pool.streams === STREAMS - 1, 'a stream whose last chunk was written leaves');
  dests[1]!.destroy();
  await until(() => pool.streams === STREAMS - 2, 'a stream whose destination closed leaves');
  for (const d of dests) while (d.release());
  await until(() => pool.streams === 0, 'every stream left');
  for (const d of dests) if (!d.destroyed) assert.deepEqual(Buffer.concat(d.sent), bytes);
});
