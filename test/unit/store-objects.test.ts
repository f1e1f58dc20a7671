import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readdir, stat, symlink, utimes, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { isSigilError } from '../../src/errors.js';
import type { SigilErrorCode } from '../../src/errors.js';
import type { Digest } from '../../src/oci/digest.js';
import { ContentStore, LAST_USED_PERSIST_MS } from '../../src/store/index.js';
import { tempDir } from '../helpers/temp.js';
import { sha256, sha512 } from '../helpers/digest.js';
import { fakeClock } from '../helpers/clock.js';
import { collect } from '../helpers/stream.js';

const MINUTE = 60_000;

const freshDir = (): Promise<string> => tempDir('sigil-store');

function isCode(code: SigilErrorCode) {
  return (err: unknown): boolean => isSigilError(err) && err.code === code;
}

async function filesUnder(dir: string): Promise<string[]> {
  return (await readdir(dir, { recursive: true, withFileTypes: true })).filter((e) => e.isFile()).map((e) => join(e.parentPath, e.name));
}

describe('objects', () => {
  test('put, has, stat, read whole, read a range; sha256 and sha512 paths', async () => {
    const dir = await freshDir();
    const store = await ContentStore.open({ dir, maxBytes: 10 * 1024 * 1024 });
    const bytes = randomBytes(200_000);
    const d = sha256(bytes);
    assert.equal(await store.has(d), false);
    assert.equal(await store.openRead(d), null);
    assert.equal(await store.readAll(d, 1 << 20), null);
    await store.putBytes(d, bytes);
    assert.equal(await store.has(d), true);
    assert.equal((await store.stat(d))?.size, bytes.length);
    assert.deepEqual(await collect((await store.openRead(d)) as Readable), bytes);
    assert.deepEqual(await collect((await store.openRead(d, { start: 1000, end: 1999 })) as Readable), bytes.subarray(1000, 2000));
    assert.deepEqual(await collect((await store.openRead(d, { start: bytes.length - 1, end: bytes.length - 1 })) as Readable), bytes.subarray(-1));
    assert.deepEqual(await store.readAll(d, bytes.length), bytes);
    await assert.rejects(store.readAll(d, bytes.length - 1), isCode('INTERNAL'));
    await assert.rejects(store.openRead(d, { start: 10, end: bytes.length }), isCode('RANGE_INVALID'));
    await assert.rejects(store.openRead(d, { start: 10, end: 9 }), isCode('RANGE_INVALID'));

    const small = Buffer.from('{"schemaVersion":2}');
    const d512 = sha512(small);
    await store.putBytes(d512, small);
    assert.deepEqual(await store.readAll(d512, 1024), small);
    const hex = d.slice('sha256:'.length);
    assert.equal((await stat(join(dir, 'blobs', 'sha256', hex))).size, bytes.length);
    assert.equal((await stat(join(dir, 'blobs', 'sha512', d512.slice('sha512:'.length)))).size, small.length);
    assert.deepEqual(store.usage(), { bytes: bytes.length + small.length, objects: 2 });
    await store.putBytes(d, bytes); // idempotent
    assert.deepEqual(store.usage(), { bytes: bytes.length + small.length, objects: 2 });
    assert.deepEqual(await readdir(join(dir, 'tmp')), []);
    // Private upstreams' images stay private: only our user reads the store.
    assert.equal((await stat(join(dir, 'blobs', 'sha256', hex))).mode & 0o777, 0o600);
    assert.equal((await stat(join(dir, 'blobs', 'sha256'))).mode & 0o077, 0);
    await store.close();
  });

  test('a digest mismatch stores nothing and leaves no temp file', async () => {
    const dir = await freshDir();
    const store = await ContentStore.open({ dir, maxBytes: 1 << 20 });
    const d = sha256(Buffer.from('what was asked for'));
    await assert.rejects(store.putBytes(d, Buffer.from('what came instead')), (err: unknown) => {
      assert.ok(isSigilError(err) && err.code === 'DIGEST_MISMATCH');
      assert.deepEqual(err.detail, { expected: d, got: sha256(Buffer.from('what came instead')) });
      return true;
    });
    assert.equal(await store.has(d), false);
    assert.deepEqual(await filesUnder(dir), []);
    await store.close();
  });

  test('paths come only from valid digests: anything else is refused before touching the disk', async () => {
    const dir = await freshDir();
    const store = await ContentStore.open({ dir, maxBytes: 1 << 20 });
    for (const bad of ['sha256:../../etc/passwd', `sha256:${'A'.repeat(64)}`, 'md5:abc', `sha256:${'a'.repeat(63)}`, '../x']) {
      await assert.rejects(store.has(bad as Digest), isCode('INTERNAL'), bad);
      await assert.rejects(store.openRead(bad as Digest), isCode('INTERNAL'), bad);
      await assert.rejects(store.putBytes(bad as Digest, Buffer.from('x')), isCode('INTERNAL'), bad);
      assert.throws(() => store.beginWrite(bad as Digest), isCode('INTERNAL'), bad);
    }
    await store.close();
  });

  test('a symlink or a stray name planted under blobs/ is never served nor counted', async () => {
    const dir = await freshDir();
    const secret = join(dir, 'secret.txt');
    await writeFile(secret, 'not an object');
    const d = sha256(Buffer.from('not an object'));
    await ContentStore.open({ dir, maxBytes: 1 << 20 }).then((s) => s.close());
    await symlink(secret, join(dir, 'blobs', 'sha256', d.slice(7)));
    await writeFile(join(dir, 'blobs', 'sha256', 'README'), 'stray');
    const store = await ContentStore.open({ dir, maxBytes: 1 << 20 });
    assert.deepEqual(store.usage(), { bytes: 0, objects: 0 });
    assert.equal(await store.has(d), false);
    assert.equal(await store.openRead(d), null);
    await store.close();
  });

  test('a reader that has the object open finishes it even when the object is evicted meanwhile', async () => {
    const dir = await freshDir();
    const store = await ContentStore.open({ dir, maxBytes: 4 << 20 });
    const bytes = randomBytes(2 << 20);
    const d = sha256(bytes);
    await store.putBytes(d, bytes);
    const stream = (await store.openRead(d)) as Readable;
    assert.equal(await store.remove(d), true);
    assert.equal(await store.has(d), false);
    assert.deepEqual(await collect(stream), bytes);
    await store.close();
  });

  test('a damaged object is detected by readAll, removed and reported absent', async () => {
    const dir = await freshDir();
    const store = await ContentStore.open({ dir, maxBytes: 1 << 20 });
    const bytes = Buffer.from('{"mediaType":"application/vnd.oci.image.manifest.v1+json"}');
    const d = sha256(bytes);
    await store.putBytes(d, bytes);
    await writeFile(join(dir, 'blobs', 'sha256', d.slice(7)), Buffer.from('{"mediaType":"tampered"}'));
    assert.equal(await store.readAll(d, 1024), null);
    assert.equal(await store.has(d), false);
    await store.close();
  });

  test('an object written by another instance on the same dir is found; one it removed is dropped', async () => {
    const dir = await freshDir();
    const a = await ContentStore.open({ dir, maxBytes: 1 << 20 });
    const b = await ContentStore.open({ dir, maxBytes: 1 << 20 });
    const bytes = Buffer.from('shared');
    const d = sha256(bytes);
    await a.putBytes(d, bytes);
    assert.deepEqual(await b.readAll(d, 100), bytes);
    assert.equal(b.usage().objects, 1);
    assert.equal(await a.remove(d), true);
    assert.equal(await b.openRead(d), null);
    assert.equal(b.usage().objects, 0);
    // b still believes in an object a removes: putBytes checks the disk, not its memory.
    await b.putBytes(d, bytes);
    assert.equal(await a.has(d), true);
    await a.remove(d);
    await b.putBytes(d, bytes);
    assert.deepEqual(await a.readAll(d, 100), bytes);
    await a.close();
    await b.close();
  });
});

describe('eviction', () => {
  test('LRU order with an injected clock, kept across a reopen (mtime)', async () => {
    const dir = await freshDir();
    const clock = fakeClock();
    const obj = (i: number) => Buffer.alloc(1000, i);
    const dg = (i: number) => sha256(obj(i));
    let store = await ContentStore.open({ dir, maxBytes: 3000, now: clock.now });
    for (const i of [1, 2, 3]) {
      clock.advance(10 * MINUTE);
      await store.putBytes(dg(i), obj(i));
    }
    clock.advance(10 * MINUTE);
    await collect((await store.openRead(dg(1))) as Readable); // 1 is now the most recent
    assert.deepEqual(
      (await store.list()).map((e) => e.digest),
      [dg(2), dg(3), dg(1)],
    );
    clock.advance(10 * MINUTE);
    await store.putBytes(dg(4), obj(4));
    assert.deepEqual(await store.evict(), { removed: 0, freedBytes: 0 }); // the write already evicted
    assert.equal(await store.has(dg(2)), false, 'least recently used goes first');
    for (const i of [1, 3, 4]) assert.equal(await store.has(dg(i)), true, `object ${i} stays`);
    assert.deepEqual(store.usage(), { bytes: 3000, objects: 3 });
    await store.close();

    // Reopen: last use comes back from the files' mtimes; 3 is now the oldest.
    store = await ContentStore.open({ dir, maxBytes: 3000, now: clock.now });
    assert.deepEqual(
      (await store.list()).map((e) => [e.digest, e.lastUsed]),
      [
        [dg(3), Date.UTC(2030, 0, 1) + 30 * MINUTE],
        [dg(1), Date.UTC(2030, 0, 1) + 40 * MINUTE],
        [dg(4), Date.UTC(2030, 0, 1) + 50 * MINUTE],
      ],
    );
    clock.advance(10 * MINUTE);
    await store.putBytes(dg(5), obj(5));
    await store.evict();
    assert.equal(await store.has(dg(3)), false);
    assert.deepEqual(store.usage(), { bytes: 3000, objects: 3 });
    await store.close();
  });

  test('reads persist last use at most every LAST_USED_PERSIST_MS; memory is exact', async () => {
    const dir = await freshDir();
    const clock = fakeClock();
    const store = await ContentStore.open({ dir, maxBytes: 1 << 20, now: clock.now });
    const bytes = Buffer.from('x');
    const d = sha256(bytes);
    const t0 = clock.now();
    await store.putBytes(d, bytes);
    const file = join(dir, 'blobs', 'sha256', d.slice(7));
    clock.advance(1000);
    await store.readAll(d, 10);
    assert.equal((await store.stat(d))?.lastUsed, t0 + 1000);
    await store.close(); // waits for background utimes
    assert.equal(Math.round((await stat(file)).mtimeMs), t0, 'not persisted: too soon');
    const again = await ContentStore.open({ dir, maxBytes: 1 << 20, now: clock.now });
    clock.advance(LAST_USED_PERSIST_MS);
    await again.readAll(d, 10);
    await again.close();
    assert.equal(Math.round((await stat(file)).mtimeMs), t0 + 1000 + LAST_USED_PERSIST_MS);
  });

  test('readAll with touch: false leaves last use (memory, mtime, LRU order) as it was', async () => {
    const dir = await freshDir();
    const clock = fakeClock();
    const store = await ContentStore.open({ dir, maxBytes: 2000, now: clock.now });
    const a = Buffer.alloc(1000, 1);
    const b = Buffer.alloc(1000, 2);
    const t0 = clock.now();
    await store.putBytes(sha256(a), a);
    clock.advance(MINUTE);
    await store.putBytes(sha256(b), b);
    // Long enough that a touching read would persist the use as the mtime.
    clock.advance(LAST_USED_PERSIST_MS + MINUTE);
    assert.deepEqual(await store.readAll(sha256(a), 1000, { touch: false }), a);
    assert.equal((await store.stat(sha256(a)))?.lastUsed, t0);
    assert.deepEqual((await store.list()).map((e) => e.digest), [sha256(a), sha256(b)], 'a is still the least recently used');
    // ...so eviction still takes it first.
    const c = Buffer.alloc(1000, 3);
    await store.putBytes(sha256(c), c);
    await store.evict();
    assert.equal(await store.has(sha256(a)), false);
    assert.equal(await store.has(sha256(b)), true);
    // The default still touches: b becomes the most recently used, in memory and on disk.
    const tRead = clock.now();
    assert.deepEqual(await store.readAll(sha256(b), 1000), b);
    assert.equal((await store.stat(sha256(b)))?.lastUsed, tRead);
    await store.close();
    assert.equal(Math.round((await stat(join(dir, 'blobs', 'sha256', sha256(b).slice(7)))).mtimeMs), tRead);
    // A touch-free read leaves the mtime a restart reads back.
    const again = await ContentStore.open({ dir, maxBytes: 2000, now: clock.now });
    clock.advance(LAST_USED_PERSIST_MS + MINUTE);
    await again.readAll(sha256(c), 1000, { touch: false });
    await again.close();
    assert.equal(Math.round((await stat(join(dir, 'blobs', 'sha256', sha256(c).slice(7)))).mtimeMs), tRead, 'c was written at tRead and not touched since');
  });

  test('eviction spares an object that another process used since (its mtime is newer)', async () => {
    const dir = await freshDir();
    const clock = fakeClock();
    const store = await ContentStore.open({ dir, maxBytes: 2000, now: clock.now });
    const a = Buffer.alloc(1000, 1);
    const b = Buffer.alloc(1000, 2);
    await store.putBytes(sha256(a), a);
    clock.advance(MINUTE);
    await store.putBytes(sha256(b), b);
    // Another process read `a` just now: it persisted the use as the mtime.
    clock.advance(MINUTE);
    const t = clock.now() / 1000;
    await utimes(join(dir, 'blobs', 'sha256', sha256(a).slice(7)), t, t);
    clock.advance(MINUTE);
    const c = Buffer.alloc(1000, 3);
    await store.putBytes(sha256(c), c);
    await store.evict();
    assert.equal(await store.has(sha256(a)), true);
    assert.equal(await store.has(sha256(b)), false);
    await store.close();
  });

  test('prune by age, then by size', async () => {
    const dir = await freshDir();
    const clock = fakeClock();
    const store = await ContentStore.open({ dir, maxBytes: 1 << 20, now: clock.now });
    const objs = [1, 2, 3, 4, 5].map((i) => Buffer.alloc(100 * i, i));
    for (const o of objs) {
      await store.putBytes(sha256(o), o);
      clock.advance(24 * 60 * MINUTE); // a day apart
    }
    // now = day 5; objects were last used on days 0..4
    assert.deepEqual(await store.prune({ olderThanMs: 3 * 24 * 60 * MINUTE + 1 }), { removed: 2, freedBytes: 300 });
    assert.deepEqual(
      (await store.list()).map((e) => e.size),
      [300, 400, 500],
    );
    assert.deepEqual(await store.prune({ maxBytes: 900 }), { removed: 1, freedBytes: 300 });
    assert.deepEqual(store.usage(), { bytes: 900, objects: 2 });
    assert.deepEqual(await store.prune({}), { removed: 0, freedBytes: 0 });
    await store.close();
  });

  test('open evicts a directory that is over a new, smaller maxBytes', async () => {
    const dir = await freshDir();
    const clock = fakeClock();
    const big = await ContentStore.open({ dir, maxBytes: 1 << 20, now: clock.now });
    for (let i = 0; i < 5; i++) {
      clock.advance(MINUTE);
      await big.putBytes(sha256(Buffer.alloc(1000, i)), Buffer.alloc(1000, i));
    }
    await big.close();
    const small = await ContentStore.open({ dir, maxBytes: 2500, now: clock.now });
    assert.deepEqual(small.usage(), { bytes: 2000, objects: 2 });
    assert.equal(await small.has(sha256(Buffer.alloc(1000, 4))), true);
    assert.equal(await small.has(sha256(Buffer.alloc(1000, 0))), false);
    await small.close();
  });
});

describe('metadata', () => {
  test('round trip, overwrite, delete, and persistence across reopen', async () => {
    const dir = await freshDir();
    const clock = fakeClock();
    let store = await ContentStore.open({ dir, maxBytes: 1 << 20, now: clock.now });
    const digest = sha256(Buffer.from('m'));
    const key = 'docker.io/library/nginx:latest';
    assert.equal(await store.getMeta('tags', key), null);
    await store.putMeta('tags', key, { digest, mediaType: 'application/vnd.oci.image.index.v1+json' });
    assert.deepEqual(await store.getMeta('tags', key), {
      value: { digest, mediaType: 'application/vnd.oci.image.index.v1+json' },
      updated: clock.now(),
    });
    clock.advance(MINUTE);
    await store.putMeta('tags', key, { digest: sha256(Buffer.from('n')) });
    await store.putMeta('signatures', digest, [sha256(Buffer.from('sig'))]);
    // A key that looks like a path is just a key (hashed into the file name).
    await store.putMeta('tags', '../../../etc/passwd', 'harmless');
    await store.close();

    store = await ContentStore.open({ dir, maxBytes: 1 << 20, now: clock.now });
    assert.deepEqual(await store.getMeta('tags', key), { value: { digest: sha256(Buffer.from('n')) }, updated: clock.now() });
    assert.deepEqual((await store.getMeta('signatures', digest))?.value, [sha256(Buffer.from('sig'))]);
    assert.equal((await store.getMeta('tags', '../../../etc/passwd'))?.value, 'harmless');
    assert.equal(await store.getMeta('signatures', key), null, 'namespaces are separate');
    const files = await filesUnder(join(dir, 'meta'));
    assert.equal(files.length, 3);
    for (const f of files) assert.match(f, /\/meta\/(tags|signatures)\/[0-9a-f]{64}\.json$/);
    assert.equal(await store.deleteMeta('tags', key), true);
    assert.equal(await store.getMeta('tags', key), null);
    assert.equal(await store.deleteMeta('tags', key), false);
    assert.deepEqual(await readdir(join(dir, 'tmp')), []);
    await store.close();
  });

  test('namespaces are checked; values must be JSON', async () => {
    const dir = await freshDir();
    const store = await ContentStore.open({ dir, maxBytes: 1 << 20 });
    for (const ns of ['', '../x', 'Tags', 'a/b', 'x'.repeat(65)]) {
      await assert.rejects(store.putMeta(ns, 'k', 1), isCode('INTERNAL'), ns);
      await assert.rejects(store.getMeta(ns, 'k'), isCode('INTERNAL'), ns);
    }
    await assert.rejects(store.putMeta('tags', 'k', undefined), isCode('INTERNAL'));
    await assert.rejects(store.putMeta('tags', 'k', { n: 1n }), isCode('INTERNAL'));
    await store.close();
  });
});
