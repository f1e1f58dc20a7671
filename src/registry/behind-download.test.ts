import assert from 'node:assert/strict';
import { Readable } from 'node:stream';
import { afterEach, test } from 'node:test';
import { isSigilError } from '../errors.js';
import { startHash } from '../hash/hash-pool.js';
import type { HashPool } from '../hash/hash-pool.js';
import type { HashAlgorithm } from '../hash/ring.js';
import { FakeRegistry, collect, sha256, silentLogger } from '../../test/helpers/fake-registry.js';
import { tempStore } from '../../test/helpers/temp-store.js';
import { behindDownload } from './behind-download.js';

const BYTES = Buffer.from('0123456789abcdefghij');
const DIGEST = sha256(BYTES);

/** The store's stream of the file being written: `first`, then `fault`. */
function follower(first: Buffer, fault: Error | null): Readable {
  return Readable.from(
    (async function* () {
      yield first;
      if (fault) throw fault;
    })(),
  );
}

const diskFault = (): Error => Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC', syscall: 'write' });

function rig() {
  const up = new FakeRegistry();
  up.blobs.set(DIGEST, BYTES);
  return up;
}

test('a request reads the download through the store, the bytes checked', async () => {
  const up = rig();
  assert.deepEqual(await collect(behindDownload(up, { repository: 'app', digest: DIGEST, size: BYTES.length }, follower(BYTES, null), { logger: silentLogger() })), BYTES);
  assert.deepEqual(up.calls, []);
});

test('a disk fault under the download: the rest comes from the upstream, from the first byte not had yet', async () => {
  const up = rig();
  const body = behindDownload(up, { repository: 'app', digest: DIGEST, size: BYTES.length }, follower(BYTES.subarray(0, 7), diskFault()), { logger: silentLogger() });
  assert.deepEqual(await collect(body), BYTES);
  assert.deepEqual(up.calls, [`openBlob GET bytes=7- app@${DIGEST}`]);
});

test('a fault that is not the disk\'s is the request\'s error; wrong bytes never complete', async () => {
  const up = rig();
  const other = behindDownload(up, { repository: 'app', digest: DIGEST, size: BYTES.length }, follower(BYTES.subarray(0, 7), new Error('upstream reset')), { logger: silentLogger() });
  await assert.rejects(collect(other), /upstream reset/);
  assert.deepEqual(up.calls, []);
  const wrong = Buffer.from(BYTES).fill(0x41, 3, 4);
  const bad = behindDownload(up, { repository: 'app', digest: DIGEST, size: BYTES.length }, follower(wrong, null), { logger: silentLogger() });
  await assert.rejects(collect(bad), (e) => isSigilError(e) && e.code === 'DIGEST_MISMATCH');
});

// Behind the store's live write (a real store): the writer hashes once, the reader does not.

const stores: Array<Awaited<ReturnType<typeof tempStore>>> = [];
afterEach(async () => {
  for (const s of stores.splice(0)) await s.close();
});

/** A hash pool that counts the hashes started (each hashed inline). */
function countingHashes(): { hashes: HashPool; started: () => number } {
  let n = 0;
  const hashes = {
    start: (alg: HashAlgorithm, size?: number) => {
      n++;
      return startHash(undefined, alg, size);
    },
  } as unknown as HashPool;
  return { hashes, started: () => n };
}

/** A live write of `digest` fed by the test, and a reader behind it through behindDownload. */
async function liveRig(up: FakeRegistry) {
  const store = await tempStore();
  stores.push(store);
  const w = store.content.beginWrite(DIGEST, BYTES.length, { chunksHandedOver: true });
  assert.equal(w.kind, 'writer');
  if (w.kind !== 'writer') throw new Error('unreachable');
  w.done.catch(() => {});
  await w.opened;
  const f = store.content.beginWrite(DIGEST, BYTES.length);
  assert.equal(f.kind, 'follower');
  if (f.kind !== 'follower') throw new Error('unreachable');
  const { hashes, started } = countingHashes();
  const body = behindDownload(up, { repository: 'app', digest: DIGEST, size: BYTES.length }, f.stream, { logger: silentLogger(), hashes });
  const chunks: Buffer[] = [];
  const got = (async () => {
    for await (const c of body) chunks.push(c as Buffer);
    return Buffer.concat(chunks);
  })();
  got.catch(() => {});
  /** Resolves once the reader has had `n` bytes. */
  const had = async (n: number): Promise<void> => {
    for (let i = 0; i < 1000 && Buffer.concat(chunks).length < n; i++) await new Promise((r) => setImmediate(r));
    assert.equal(Buffer.concat(chunks).length, n);
  };
  const write = (b: Buffer): Promise<void> => new Promise((resolve, reject) => w.writer.write(b, (err) => (err ? reject(err) : resolve())));
  return { writer: w.writer, write, got, had, chunks, started };
}

const ioFault = (): Error => Object.assign(new Error('EIO: i/o error, write'), { code: 'EIO', syscall: 'write' });

test('behind the live write, the reader gets the writer\'s own chunks (no read back, no second hash), the last byte once the writer\'s digest matched', async () => {
  const up = rig();
  const r = await liveRig(up);
  const first = Buffer.alloc(12); // its own memory (not the pool's, which file reads may share)
  BYTES.copy(first, 0, 0, 12);
  await r.write(first);
  await r.had(11); // one byte held back while writing
  r.writer.end(Buffer.from(BYTES.subarray(12)));
  assert.deepEqual(await r.got, BYTES);
  assert.equal(r.chunks[0]!.buffer, first.buffer, 'served from the written chunk itself');
  assert.equal(r.started(), 0, 'hashed once, by the writer');
  assert.deepEqual(up.calls, []);
});

test('behind the live write, bytes that fail the writer\'s digest are cut off before the last byte', async () => {
  const up = rig();
  const r = await liveRig(up);
  const wrong = Buffer.from(BYTES).fill(0x41, 15, 16);
  r.writer.end(wrong);
  await assert.rejects(r.got, (e) => isSigilError(e) && e.code === 'DIGEST_MISMATCH');
  assert.ok(Buffer.concat(r.chunks).length < BYTES.length);
  assert.deepEqual(up.calls, []);
});

test('a disk fault under the live write: the bytes delivered are read again from the store\'s file and checked with the rest from the upstream', async () => {
  const up = rig();
  const r = await liveRig(up);
  await r.write(Buffer.from(BYTES.subarray(0, 8)));
  await r.had(7);
  r.writer.destroy(ioFault());
  assert.deepEqual(await r.got, BYTES);
  assert.deepEqual(up.calls, [`openBlob GET bytes=7- app@${DIGEST}`]);
  assert.equal(r.started(), 1, 'the whole checked once more, after the fault');
});

test('a disk fault after wrong first bytes: the whole is checked, so a right rest from the upstream does not complete them', async () => {
  const up = rig();
  const r = await liveRig(up);
  await r.write(Buffer.from('XXXXXXXX')); // the first answer lied about the first bytes
  await r.had(7);
  r.writer.destroy(ioFault());
  await assert.rejects(r.got, (e) => isSigilError(e) && e.code === 'DIGEST_MISMATCH');
  assert.ok(Buffer.concat(r.chunks).length < BYTES.length, 'cut off before the end');
});

test('a disk fault under the live write: the reader that started it and one that joined later both complete, each from its own first byte not had', async () => {
  const up = rig();
  const r = await liveRig(up);
  await r.write(Buffer.from(BYTES.subarray(0, 8)));
  await r.had(7);
  const store = stores.at(-1)!;
  const joined = store.content.beginWrite(DIGEST, BYTES.length);
  assert.equal(joined.kind, 'follower');
  if (joined.kind !== 'follower') return;
  const late = behindDownload(up, { repository: 'app', digest: DIGEST, size: BYTES.length }, joined.stream, { logger: silentLogger() });
  r.writer.destroy(ioFault());
  assert.deepEqual(await r.got, BYTES);
  assert.deepEqual(await collect(late), BYTES, 'read only after the fault: all of it from the upstream');
  assert.deepEqual(up.calls.toSorted(), [`openBlob GET app@${DIGEST}`, `openBlob GET bytes=7- app@${DIGEST}`].toSorted());
});
