import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import type { Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { SigilError, isSigilError } from '../../src/errors.js';
import type { SigilErrorCode } from '../../src/errors.js';
import type { Digest } from '../../src/oci/digest.js';
import { ContentStore } from '../../src/store/index.js';
import type { BeginWrite } from '../../src/store/index.js';
import { tempDir } from '../helpers/temp.js';
import { sha256 } from '../helpers/digest.js';


const freshDir = (): Promise<string> => tempDir('sigil-store-write');

async function open(opts: { writeIdleTimeoutMs?: number } = {}): Promise<{ store: ContentStore; dir: string }> {
  const dir = await freshDir();
  return { store: await ContentStore.open({ dir, maxBytes: 64 << 20, ...opts }), dir };
}

function writerOf(b: BeginWrite): { writer: Writable; done: Promise<void> } {
  assert.equal(b.kind, 'writer');
  return b;
}

function followerOf(b: BeginWrite): Readable {
  assert.equal(b.kind, 'follower');
  return b.stream;
}

/** Collects a stream; resolves with its bytes or its error, and the bytes seen so far. */
function drain(s: Readable): { seen: () => number; result: Promise<{ bytes: Buffer } | { error: unknown; bytes: Buffer }> } {
  const parts: Buffer[] = [];
  let n = 0;
  s.on('data', (c: Buffer) => {
    parts.push(c);
    n += c.length;
  });
  const result = new Promise<{ bytes: Buffer } | { error: unknown; bytes: Buffer }>((resolve) => {
    s.on('end', () => resolve({ bytes: Buffer.concat(parts) }));
    s.on('error', (error) => resolve({ error, bytes: Buffer.concat(parts) }));
  });
  return { seen: () => n, result };
}

const write = (w: Writable, chunk: Buffer): Promise<void> =>
  new Promise((resolve, reject) => w.write(chunk, (err) => (err ? reject(err) : resolve())));

const code = (c: SigilErrorCode) => (err: unknown) => isSigilError(err) && err.code === c;

const openFds = async (): Promise<number> => (await readdir('/proc/self/fd')).length;

/** Resolves once the process holds `n` descriptors again (a file closes asynchronously); fails after `timeoutMs`. */
async function descriptorsBackTo(n: number, timeoutMs = 5000): Promise<void> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const now = await openFds();
    if (now === n) return;
    if (Date.now() > end) assert.equal(now, n, 'descriptors still open');
    await sleep(5);
  }
}

async function until(cond: () => boolean, what: string, timeoutMs = 5000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > end) assert.fail(`timed out waiting for ${what}`);
    await sleep(5);
  }
}

describe('beginWrite', () => {
  test('one writer; followers read behind it, then the stored file; no descriptor leaks', async () => {
    const { store, dir } = await open();
    const fds = await openFds();
    const bytes = randomBytes(300_000);
    const d = sha256(bytes);
    const { writer, done } = writerOf(store.beginWrite(d, bytes.length));
    const early = drain(followerOf(store.beginWrite(d)));
    await write(writer, bytes.subarray(0, 100_000));
    await until(() => early.seen() === 100_000 - 1, 'the early follower to catch up (one byte held back)');
    const late = drain(followerOf(store.beginWrite(d, bytes.length)));
    await write(writer, bytes.subarray(100_000));
    await sleep(50);
    assert.equal(early.seen(), bytes.length - 1, 'the last byte waits for the digest check');
    assert.equal(await store.has(d), false, 'not an object before commit');
    writer.end();
    await done;
    assert.deepEqual(await early.result, { bytes });
    assert.deepEqual(await late.result, { bytes });
    const after = drain(followerOf(store.beginWrite(d)));
    assert.deepEqual(await after.result, { bytes });
    assert.deepEqual(await readdir(join(dir, 'tmp')), []);
    assert.deepEqual(store.usage(), { bytes: bytes.length, objects: 1 });
    await descriptorsBackTo(fds);
    await store.close();
  });

  test('works as a pipeline destination', async () => {
    const { store } = await open();
    const chunks = Array.from({ length: 20 }, () => randomBytes(10_000));
    const all = Buffer.concat(chunks);
    const d = sha256(all);
    const { writer, done } = writerOf(store.beginWrite(d));
    await pipeline(Readable.from(chunks), writer);
    await done;
    assert.deepEqual(await store.readAll(d, all.length), all);
    await store.close();
  });

  test('wrong bytes: DIGEST_MISMATCH for the writer and every follower, no object, no temp', async () => {
    const { store, dir } = await open();
    const d = sha256(Buffer.from('expected'));
    const { writer, done } = writerOf(store.beginWrite(d));
    const f = drain(followerOf(store.beginWrite(d)));
    writer.end(Buffer.from('something else'));
    await assert.rejects(done, code('DIGEST_MISMATCH'));
    const got = await f.result;
    assert.ok('error' in got && code('DIGEST_MISMATCH')(got.error));
    assert.notDeepEqual(got.bytes, Buffer.from('something else'), 'the follower never had the complete wrong blob');
    assert.equal(await store.has(d), false);
    assert.deepEqual(await readdir(join(dir, 'tmp')), []);
    assert.deepEqual(await readdir(join(dir, 'blobs', 'sha256')), []);
    // The digest is free again: a later, correct write succeeds.
    const again = writerOf(store.beginWrite(d));
    again.writer.end(Buffer.from('expected'));
    await again.done;
    assert.equal(await store.has(d), true);
    await store.close();
  });

  test('a size other than the expected one fails the write (too many or too few bytes)', async () => {
    const { store, dir } = await open();
    const bytes = Buffer.from('0123456789');
    const d = sha256(bytes);
    const over = writerOf(store.beginWrite(d, 5));
    over.writer.end(bytes);
    await assert.rejects(over.done, code('DIGEST_MISMATCH'));
    const under = writerOf(store.beginWrite(d, 11));
    under.writer.end(bytes);
    await assert.rejects(under.done, code('DIGEST_MISMATCH'));
    assert.equal(await store.has(d), false);
    assert.deepEqual(await readdir(join(dir, 'tmp')), []);
    await store.close();
  });

  test('writer abort: followers get the writer\'s error, nothing is stored', async () => {
    const { store, dir } = await open();
    const bytes = randomBytes(100_000);
    const d = sha256(bytes);
    const { writer, done } = writerOf(store.beginWrite(d));
    const f1 = drain(followerOf(store.beginWrite(d)));
    await write(writer, bytes.subarray(0, 50_000));
    const f2 = drain(followerOf(store.beginWrite(d)));
    await until(() => f1.seen() > 0, 'the first follower to start');
    const cause = new SigilError({ code: 'UPSTREAM_UNREACHABLE', message: 'connection reset' });
    writer.destroy(cause);
    await assert.rejects(done, (err) => err === cause);
    for (const f of [f1, f2]) {
      const got = await f.result;
      assert.ok('error' in got && got.error === cause);
    }
    // A plain error becomes INTERNAL, with the original as its cause.
    const second = writerOf(store.beginWrite(d));
    const f3 = drain(followerOf(store.beginWrite(d)));
    second.writer.destroy(new Error('socket hang up'));
    await assert.rejects(second.done, code('INTERNAL'));
    const got3 = await f3.result;
    assert.ok('error' in got3 && code('INTERNAL')(got3.error));
    assert.equal(await store.has(d), false);
    assert.deepEqual(await readdir(join(dir, 'tmp')), []);
    await store.close();
  });

  test('a stalled writer is aborted after the idle timeout', async () => {
    const { store, dir } = await open({ writeIdleTimeoutMs: 150 });
    const d = sha256(Buffer.from('never finished'));
    const { writer, done } = writerOf(store.beginWrite(d));
    const f = drain(followerOf(store.beginWrite(d)));
    await write(writer, Buffer.from('never'));
    const t0 = Date.now();
    await assert.rejects(done, code('INTERNAL'));
    assert.ok(Date.now() - t0 >= 100);
    assert.ok('error' in (await f.result));
    assert.deepEqual(await readdir(join(dir, 'tmp')), []);
    await store.close();
  });

  test('a follower that stops early does not disturb the writer', async () => {
    const { store } = await open();
    const bytes = randomBytes(200_000);
    const d = sha256(bytes);
    const { writer, done } = writerOf(store.beginWrite(d));
    const quitter = followerOf(store.beginWrite(d));
    await write(writer, bytes.subarray(0, 100_000));
    quitter.destroy();
    writer.end(bytes.subarray(100_000));
    await done;
    assert.deepEqual(await store.readAll(d, bytes.length), bytes);
    await store.close();
  });

  test('close() aborts writes in progress and removes their temps', async () => {
    const { store, dir } = await open();
    const d = sha256(Buffer.from('interrupted'));
    const { writer, done } = writerOf(store.beginWrite(d));
    await write(writer, Buffer.from('inter'));
    await store.close();
    await assert.rejects(done, code('INTERNAL'));
    assert.deepEqual(await readdir(join(dir, 'tmp')), []);
    assert.throws(() => store.beginWrite(d), code('INTERNAL'));
  });
});
