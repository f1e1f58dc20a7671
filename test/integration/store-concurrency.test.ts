import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readdir, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Readable, Writable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { isSigilError } from '../../src/errors.js';
import type { Digest } from '../../src/oci/digest.js';
import { ContentStore, TMP_STALE_MS } from '../../src/store/index.js';
import type { BeginWrite } from '../../src/store/index.js';
import { tempDir } from '../helpers/temp.js';
import { sha256 } from '../helpers/digest.js';

const NODE = fileURLToPath(new URL('../../../scripts/node', import.meta.url));
const STORE_MODULE = pathToFileURL(fileURLToPath(new URL('../../src/store/index.js', import.meta.url))).href;

const MiB = 1024 * 1024;
const CHUNK = 64 * 1024;

const freshDir = (): Promise<string> => tempDir('sigil-store-conc');

/**
 * Deterministic pseudo-random content: chunk i of a seed is an xorshift32 sequence,
 * filled into a buffer the caller may reuse, so that making the content (twice: once
 * for the digest, once to feed it) leaves no garbage to blur the memory measurement.
 * The child script below has the same function.
 */
function fillChunk(seed: number, i: number, buf: Buffer = Buffer.alloc(CHUNK)): Buffer {
  const words = new Uint32Array(buf.buffer, buf.byteOffset, buf.length >>> 2);
  let x = (Math.imul(seed + 1, 0x85ebca6b) ^ Math.imul(i + 1, 0x9e3779b1)) || 1;
  for (let k = 0; k < words.length; k++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    words[k] = x;
  }
  return buf;
}

function digestOfStream(seed: number, chunks: number): Digest {
  const h = createHash('sha256');
  const buf = Buffer.alloc(CHUNK);
  for (let i = 0; i < chunks; i++) h.update(fillChunk(seed, i, buf));
  return `sha256:${h.digest('hex')}`;
}

/** The GC, to measure what is held rather than what is not yet collected (--expose-gc at run time). */
function exposeGc(): () => void {
  setFlagsFromString('--expose-gc');
  return runInNewContext('gc') as () => void;
}

/** Hashes a stream without keeping it; resolves with digest and length, or the error. */
function hashStream(s: Readable, onBytes?: (n: number) => void): Promise<{ digest: string; length: number } | { error: unknown }> {
  const h = createHash('sha256');
  let length = 0;
  return new Promise((resolve) => {
    s.on('data', (c: Buffer) => {
      h.update(c);
      length += c.length;
      onBytes?.(c.length);
    });
    s.on('end', () => resolve({ digest: `sha256:${h.digest('hex')}`, length }));
    s.on('error', (error) => resolve({ error }));
  });
}

const write = (w: Writable, chunk: Buffer): Promise<void> =>
  new Promise((resolve, reject) => w.write(chunk, (err) => (err ? reject(err) : resolve())));

function expectWriter(b: BeginWrite): { writer: Writable; done: Promise<void> } {
  assert.equal(b.kind, 'writer');
  return b;
}

const CHILD_SCRIPT = `
import { createHash } from 'node:crypto';
const { ContentStore } = await import(process.argv[2]);
const [dir, mode, seedText, chunks] = process.argv.slice(3);
const seed = Number(seedText);
const CHUNK = ${CHUNK};
function chunkAt(i) {
  const buf = Buffer.alloc(CHUNK);
  const words = new Uint32Array(buf.buffer, buf.byteOffset, buf.length >>> 2);
  let x = (Math.imul(seed + 1, 0x85ebca6b) ^ Math.imul(i + 1, 0x9e3779b1)) || 1;
  for (let k = 0; k < words.length; k++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    words[k] = x;
  }
  return buf;
}
const h = createHash('sha256');
for (let i = 0; i < Number(chunks); i++) h.update(chunkAt(i));
const digest = 'sha256:' + h.digest('hex');
const store = await ContentStore.open({ dir, maxBytes: 1 << 30 });
const begun = store.beginWrite(digest);
if (begun.kind !== 'writer') throw new Error('expected to be the writer');
const write = (c) => new Promise((res, rej) => begun.writer.write(c, (e) => (e ? rej(e) : res())));
if (mode === 'complete') {
  // A barrier: every process is a writer before any of them writes.
  process.stdout.write('BEGUN\\n');
  await new Promise((r) => process.stdin.once('data', r));
}
for (let i = 0; ; i++) {
  if (mode === 'complete' && i === Number(chunks)) break;
  await write(chunkAt(i % Number(chunks)));
  if (i === 16) process.stdout.write('WRITING\\n'); // 1 MiB in the temp file
  if (mode === 'forever') await new Promise((r) => setTimeout(r, 5));
  else if (i % 8 === 0) await new Promise((r) => setImmediate(r));
}
begun.writer.end();
await begun.done;
await store.close();
process.stdout.write('DONE ' + digest + '\\n');
`;

async function childScript(): Promise<string> {
  const dir = await freshDir();
  const path = join(dir, 'store-child.mjs');
  await writeFile(path, CHILD_SCRIPT);
  return path;
}

function runChild(script: string, args: string[]) {
  const p = spawn(NODE, [script, STORE_MODULE, ...args], { stdio: ['pipe', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  p.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  p.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    p.on('close', (code, signal) => resolve({ code, signal })),
  );
  return { p, out: () => stdout, err: () => stderr, exited };
}

describe('content store under concurrency and crashes', () => {
  test('~100 MiB fed slowly: one writer, 3 followers joining at different times get exactly the bytes, memory stays flat', async () => {
    const dir = await freshDir();
    const store = await ContentStore.open({ dir, maxBytes: 1 << 30 });
    const seed = 50;
    const chunks = 1600; // 1600 × 64 KiB = 100 MiB: readers chunk 1-4 MiB, so RSS moves by tens of MiB whatever the size
    const size = chunks * CHUNK;
    const digest = digestOfStream(seed, chunks);

    // Sampled right after a GC: a follower that held the blob (or a third of it) would show;
    // 64 KiB reads not yet collected would only blur the number.
    const gc = exposeGc();
    gc();
    const base = process.memoryUsage();
    let peakRss = 0;
    let peakBuffers = 0;
    const sampler = setInterval(() => {
      gc();
      const m = process.memoryUsage();
      peakRss = Math.max(peakRss, m.rss - base.rss);
      peakBuffers = Math.max(peakBuffers, m.arrayBuffers - base.arrayBuffers);
    }, 20);
    const feed = Buffer.alloc(CHUNK); // reused: write() has consumed a chunk when its callback runs

    const begun = [store.beginWrite(digest, size)];
    const { writer, done } = expectWriter(begun[0]);
    const followers: Array<Promise<{ digest: string; length: number } | { error: unknown }>> = [];
    let firstFollowerBytes = 0;
    const join_ = (): void => {
      const b = store.beginWrite(digest, size);
      begun.push(b);
      assert.equal(b.kind, 'follower');
      const count = followers.length === 0 ? (n: number) => void (firstFollowerBytes += n) : undefined;
      if (b.kind === 'follower') followers.push(hashStream(b.stream, count));
    };
    join_(); // before the first byte
    for (let i = 0; i < chunks; i++) {
      if (i === Math.floor(chunks / 3) || i === Math.floor((2 * chunks) / 3)) join_();
      await write(writer, fillChunk(seed, i, feed));
      if (i % 4 === 0) await sleep(1); // slow upstream
    }
    // The first follower streamed while the write went on (it did not wait for the commit).
    assert.ok(firstFollowerBytes > size / 2, `first follower had ${firstFollowerBytes} bytes before the end`);
    writer.end();
    await done;
    join_(); // after the commit: reads the stored file
    const results = await Promise.all(followers);
    clearInterval(sampler);

    assert.equal(begun.filter((b) => b.kind === 'writer').length, 1, 'exactly one writer');
    assert.equal(results.length, 4);
    for (const r of results) assert.deepEqual(r, { digest, length: size });
    const mib = (n: number): string => (n / MiB).toFixed(1);
    process.stdout.write(`# ${mib(size)} MiB blob, 4 readers: rss +${mib(peakRss)} MiB, buffers +${mib(peakBuffers)} MiB\n`);
    // Measured: rss +20..30 MiB, buffers +6..10 MiB (1 MiB follower reads, 4 MiB reads of the
    // stored file, not yet swept); one reader holding the blob would add 100 MiB, all of them 300.
    assert.ok(peakRss < size / 2, `rss grew by ${mib(peakRss)} MiB`);
    assert.ok(peakBuffers < size / 2, `buffers grew by ${mib(peakBuffers)} MiB`);
    assert.equal((await stat(join(dir, 'blobs', 'sha256', digest.slice(7)))).size, size);
    assert.deepEqual(await readdir(join(dir, 'tmp')), []);
    await store.close();
  });

  test('a writer killed with SIGKILL mid-write leaves no object; its temp is cleaned once stale', async () => {
    const dir = await freshDir();
    const script = await childScript();
    const seed = 1;
    const chunks = 64;
    const digest = digestOfStream(seed, chunks);
    const child = runChild(script, [dir, 'forever', String(seed), String(chunks)]);
    const deadline = Date.now() + 20_000;
    while (!child.out().includes('WRITING')) {
      if (Date.now() > deadline) assert.fail(`child never started writing: ${child.err()}`);
      await sleep(10);
    }
    const temps = await readdir(join(dir, 'tmp'));
    assert.equal(temps.length, 1);
    assert.ok((await stat(join(dir, 'tmp', temps[0]))).size >= MiB);
    child.p.kill('SIGKILL');
    assert.deepEqual(await child.exited, { code: null, signal: 'SIGKILL' });

    // Right after the crash the temp is young: it could be a live writer of another process, so it stays.
    const soon = await ContentStore.open({ dir, maxBytes: 1 << 30 });
    assert.equal(await soon.has(digest), false);
    assert.deepEqual(soon.usage(), { bytes: 0, objects: 0 });
    assert.deepEqual(await readdir(join(dir, 'tmp')), temps);
    await soon.close();

    // Once older than TMP_STALE_MS it is debris: removed at open.
    const later = await ContentStore.open({ dir, maxBytes: 1 << 30, now: () => Date.now() + TMP_STALE_MS + 1000 });
    assert.deepEqual(await readdir(join(dir, 'tmp')), []);
    assert.deepEqual(await readdir(join(dir, 'blobs', 'sha256')), []);
    assert.equal(await later.has(digest), false);
    // And the digest can be stored properly afterwards.
    const { writer, done } = expectWriter(later.beginWrite(digest));
    for (let i = 0; i < chunks; i++) await write(writer, fillChunk(seed, i));
    writer.end();
    await done;
    assert.equal(await later.has(digest), true);
    await later.close();
  });

  test('two store instances on one dir writing the same digest at once: one valid object', async () => {
    const dir = await freshDir();
    const a = await ContentStore.open({ dir, maxBytes: 1 << 30 });
    const b = await ContentStore.open({ dir, maxBytes: 1 << 30 });
    const seed = 2;
    const chunks = 80; // 5 MiB
    const digest = digestOfStream(seed, chunks);
    const wa = expectWriter(a.beginWrite(digest));
    const wb = expectWriter(b.beginWrite(digest)); // b does not know of a's write: it writes too
    const fa = a.beginWrite(digest);
    const fb = b.beginWrite(digest);
    assert.ok(fa.kind === 'follower' && fb.kind === 'follower');
    const hashes = [hashStream(fa.stream), hashStream(fb.stream)];
    for (let i = 0; i < chunks; i++) {
      await Promise.all([write(wa.writer, fillChunk(seed, i)), write(wb.writer, fillChunk(seed, i))]);
    }
    wa.writer.end();
    wb.writer.end();
    await Promise.all([wa.done, wb.done]);
    for (const r of await Promise.all(hashes)) assert.deepEqual(r, { digest, length: chunks * CHUNK });
    assert.deepEqual(await readdir(join(dir, 'blobs', 'sha256')), [digest.slice(7)]);
    assert.deepEqual(await readdir(join(dir, 'tmp')), []);
    for (const s of [a, b]) {
      const whole = await s.openRead(digest);
      assert.ok(whole);
      assert.deepEqual(await hashStream(whole), { digest, length: chunks * CHUNK });
      assert.deepEqual(s.usage(), { bytes: chunks * CHUNK, objects: 1 });
    }
    // putBytes racing from both instances, many times over: still one intact object.
    const small = fillChunk(3, 0, Buffer.alloc(1000));
    const smallDigest: Digest = sha256(small);
    await Promise.all(Array.from({ length: 20 }, (_, i) => (i % 2 ? a : b).putBytes(smallDigest, small)));
    assert.deepEqual(await b.readAll(smallDigest, 1000), small);
    assert.deepEqual(await readdir(join(dir, 'tmp')), []);
    await a.close();
    await b.close();
  });

  test('two sigil processes writing the same digest at once: both succeed, one valid object', async () => {
    const dir = await freshDir();
    const script = await childScript();
    const seed = 4;
    const chunks = 160; // 10 MiB
    const digest = digestOfStream(seed, chunks);
    const kids = [0, 1].map(() => runChild(script, [dir, 'complete', String(seed), String(chunks)]));
    const deadline = Date.now() + 20_000;
    while (!kids.every((k) => k.out().includes('BEGUN'))) {
      if (Date.now() > deadline) assert.fail(`children did not begin: ${kids.map((k) => k.err()).join('\n')}`);
      await sleep(10);
    }
    for (const k of kids) k.p.stdin.end('GO\n');
    const exits = await Promise.all(kids.map((k) => k.exited));
    kids.forEach((k, i) => {
      assert.deepEqual(exits[i], { code: 0, signal: null }, k.err());
      assert.match(k.out(), new RegExp(`DONE ${digest}`));
    });
    assert.deepEqual(await readdir(join(dir, 'blobs', 'sha256')), [digest.slice(7)]);
    assert.deepEqual(await readdir(join(dir, 'tmp')), []);
    const store = await ContentStore.open({ dir, maxBytes: 1 << 30 });
    const whole = await store.openRead(digest);
    assert.ok(whole);
    assert.deepEqual(await hashStream(whole), { digest, length: chunks * CHUNK });
    // A write of a different digest fails cleanly in this process while the others are gone.
    const bad = expectWriter(store.beginWrite(digestOfStream(5, 1)));
    bad.writer.end(fillChunk(seed, 0));
    await assert.rejects(bad.done, (err) => isSigilError(err) && err.code === 'DIGEST_MISMATCH');
    await store.close();
  });
});
