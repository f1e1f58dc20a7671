import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { open, rename, stat, writeFile } from 'node:fs/promises';
import type { FileHandle } from 'node:fs/promises';
import { createServer, get } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Readable } from 'node:stream';
import { after, test } from 'node:test';
import { ContentStore, LAST_USED_PERSIST_MS, READ_CHUNK_BYTES, VERIFY_AHEAD_MAX_BYTES } from '../../src/store/index.js';
import {
  hashesFor,
  neverServedComplete,
  overwrite,
  readThrough,
  removeStores,
  settled,
  storeWith,
  TRUST_AGE_MS,
  trustedStore,
  UNTRUSTED_TMPDIR,
  SMALL,
  BIG,
  trust,
} from '../helpers/trusted-store.js';

// Trusted reads (store/object-reader.ts) check fstat once every byte has been read, before the
// last chunk goes out. What must hold at each moment of a read: bytes changed on disk are never
// served complete; bytes read before a change are served only when they are the digest's (they
// are what was read); a read that fails midway is never complete and lets go of what it held. A
// change of the file's inode during a trusted read (another process's last-use write, eviction,
// another file renamed over it) cuts that read off: the client asks again, and that read hashes.


after(removeStores);

type Proto = Record<'read' | 'stat', (...args: unknown[]) => Promise<unknown>>;

/**
 * Runs `then` right after the `nth` call of FileHandle's `method` from now on (1: the next one),
 * or the first call whose arguments `nth` accepts, resolves, before its caller has the answer;
 * `fail` makes that call reject instead. Returns the undo (also done once it fired).
 */
async function onCall(method: 'read' | 'stat', nth: number | ((args: unknown[]) => boolean), then: () => Promise<void>, opts: { fail?: Error } = {}): Promise<() => void> {
  const probe: FileHandle = await open(process.execPath, 'r');
  const proto = Object.getPrototypeOf(probe) as Proto;
  await probe.close();
  const orig = proto[method];
  let calls = 0;
  const undo = (): void => {
    proto[method] = orig;
  };
  proto[method] = async function (this: FileHandle, ...args: unknown[]) {
    calls++;
    if (typeof nth === 'number' ? calls !== nth : !nth(args)) return orig.apply(this, args);
    undo();
    if (opts.fail) throw opts.fail;
    const r = await orig.apply(this, args);
    await then();
    return r;
  };
  return undo;
}

function ioError(): Error {
  return Object.assign(new Error('EIO: i/o error, read'), { code: 'EIO', syscall: 'read' });
}

for (const [what, size] of [
  ['a small object', SMALL],
  ['a big object', BIG],
] as const) {
  test(`${what} changed right after the trusted read's last fstat is served as read (the digest's bytes), and found by the next read`, trust, async () => {
    const bytes = randomBytes(size);
    const { store, digest, path } = await trustedStore(bytes);
    try {
      // the fstat at open, then the one after the last byte was read: the write comes right after it
      const undo = await onCall('stat', 2, () => overwrite(path, size - 10, randomBytes(10)));
      let r;
      try {
        r = await readThrough(await store.openRead(digest));
      } finally {
        undo();
      }
      assert.ok(r.complete && r.bytes.equals(bytes), 'the bytes it read, every one read before the change');
      await neverServedComplete(store, digest, size);
    } finally {
      await store.close();
    }
  });

  test(`${what} changed right after its last bytes were read, before the trusted read's last fstat, is never served complete with them`, trust, async () => {
    const bytes = randomBytes(size);
    const { store, digest, path } = await trustedStore(bytes);
    try {
      // a small object is one read; a big one is read in chunks, the last of them at `reads`
      const reads = size <= VERIFY_AHEAD_MAX_BYTES ? 1 : Math.ceil(size / READ_CHUNK_BYTES);
      const undo = await onCall('read', reads, () => overwrite(path, 0, randomBytes(10)));
      let r;
      try {
        r = await readThrough(await store.openRead(digest));
      } finally {
        undo();
      }
      // small: the change is seen, the bytes in memory are hashed instead, and they are right
      assert.ok(!r.complete || r.bytes.equals(bytes), `complete only with the digest's bytes (complete: ${r.complete})`);
      if (size > VERIFY_AHEAD_MAX_BYTES) assert.ok(!r.complete, 'a trusted stream is cut off before its last chunk');
      await neverServedComplete(store, digest, size);
    } finally {
      await store.close();
    }
  });
}

test('a trusted read that fails midway lets go of its hold on the last-use write', trust, async () => {
  let t = Date.UTC(2030, 0, 1);
  const bytes = randomBytes(BIG);
  const { store, hashes, digest, path } = await storeWith(bytes, { now: () => t });
  try {
    await settled(path);
    await hashesFor(store, hashes, digest, bytes);
    const undo = await onCall('read', 2, async () => {}, { fail: ioError() });
    try {
      t += LAST_USED_PERSIST_MS + 1; // this read's use is due to be persisted once no trusted read holds the object
      const s = await store.openRead(digest);
      assert.equal(hashes.started, 1, 'a trusted read');
      const r = await readThrough(s);
      assert.ok(!r.complete && r.bytes.length < BIG, `received ${r.bytes.length} of ${BIG}`);
    } finally {
      undo();
    }
    await store.idle();
    assert.equal((await stat(path)).mtimeMs, t, 'the last use was persisted: the failed read let go');
  } finally {
    await store.close();
  }
});

test('a small trusted object whose read fails is absent, not served', trust, async () => {
  const bytes = randomBytes(SMALL);
  const { store, hashes, digest } = await trustedStore(bytes);
  try {
    const undo = await onCall('read', 1, async () => {}, { fail: ioError() });
    try {
      assert.equal(await store.openRead(digest), null);
    } finally {
      undo();
    }
    assert.equal(await hashesFor(store, hashes, digest, bytes), 0, 'still trusted: the file did not change');
  } finally {
    await store.close();
  }
});

test('a trusted read whose file is replaced (renamed over) meanwhile is cut off, and the next read hashes the new file', trust, async () => {
  const bytes = randomBytes(BIG);
  const { store, hashes, digest, path } = await trustedStore(bytes);
  try {
    const s = await store.openRead(digest);
    assert.ok(s);
    const parts: Buffer[] = [];
    let complete = true;
    let replaced = false;
    try {
      for await (const c of s) {
        parts.push(c as Buffer);
        if (!replaced) {
          replaced = true;
          await writeFile(`${path}.new`, bytes); // the right bytes: another process writing the same digest
          await rename(`${path}.new`, path); // the open file loses its name: its ctime changes
        }
      }
    } catch {
      complete = false;
    }
    const got = Buffer.concat(parts);
    assert.ok(!complete && got.length < BIG, 'cut off (what it served was the old file, unchanged, but a trusted read cannot tell)');
    await settled(path);
    assert.equal(await hashesFor(store, hashes, digest, bytes), 1, 'the new file: hashed');
  } finally {
    await store.close();
  }
});

test('a trusted read cut off by another process sharing the directory (its last-use write, its eviction) is never served complete; the next read hashes', trust, async () => {
  const bytes = randomBytes(BIG);
  const a = await trustedStore(bytes);
  let t = Date.UTC(2030, 0, 1);
  const b = await ContentStore.open({ dir: a.dir, maxBytes: 1 << 30, trustCtimeAgeMs: TRUST_AGE_MS, now: () => t });
  try {
    // B's last-use write (utimes) while A serves the object
    const first = await a.store.openRead(a.digest);
    t += LAST_USED_PERSIST_MS + 1;
    assert.ok(await readThrough(await b.openRead(a.digest)).then((r) => r.complete));
    await b.idle();
    const cut = await readThrough(first);
    assert.ok(!cut.complete && cut.bytes.length < BIG, 'A is cut off: the ctime changed under it');
    assert.equal(await hashesFor(a.store, a.hashes, a.digest, bytes), 1, 'the next read hashes');
    // B evicts it while A serves it: A's open file keeps its bytes, but unlinking it changed its ctime
    await settled(a.path);
    await hashesFor(a.store, a.hashes, a.digest, bytes);
    const started = a.hashes.started;
    const second = await a.store.openRead(a.digest);
    assert.equal(a.hashes.started, started, 'trusted again');
    assert.equal(await b.remove(a.digest), true);
    const evicted = await readThrough(second);
    assert.ok(!evicted.complete && evicted.bytes.length < BIG, 'cut off by the eviction');
  } finally {
    await b.close();
    await a.store.close();
  }
});

test("a trusted read of an object this process removes meanwhile is cut off (unlinking changed the open file's ctime)", trust, async () => {
  const bytes = randomBytes(BIG);
  const { store, hashes, digest } = await trustedStore(bytes);
  try {
    const s = await store.openRead(digest);
    assert.equal(hashes.started, 1, 'trusted');
    assert.equal(await store.remove(digest), true);
    const r = await readThrough(s);
    assert.ok(!r.complete && r.bytes.length < BIG, `received ${r.bytes.length} of ${BIG}, complete: ${r.complete}`);
  } finally {
    await store.close();
  }
});

/** A FileHandle.read(buffer, offset, length, position) that reaches byte `size` (the last read of a file that long, whatever the chunk size). */
const readingTo =
  (size: number) =>
  (args: unknown[]): boolean =>
    typeof args[2] === 'number' && typeof args[3] === 'number' && args[3] + args[2] >= size;

/**
 * What a client receives of `s` piped into a node:http response, as sigil serves a stored blob
 * (fastify pipes the body into the response, and cuts the answer off when the body fails once
 * its headers went out): the bytes, and whether the answer was complete.
 */
async function servedOverHttp(s: Readable | null, size: number): Promise<{ bytes: Buffer; complete: boolean }> {
  assert.ok(s, 'the object is there');
  const server = createServer((_req, res) => {
    res.setHeader('content-length', size);
    s.once('error', () => res.destroy());
    s.pipe(res);
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  try {
    return await new Promise((resolve, reject) => {
      get({ host: '127.0.0.1', port: (server.address() as AddressInfo).port, path: '/' }, (res) => {
        const parts: Buffer[] = [];
        res.on('data', (c: Buffer) => parts.push(c));
        res.on('error', () => {});
        res.once('close', () => resolve({ bytes: Buffer.concat(parts), complete: res.complete }));
      }).on('error', reject);
    });
  } finally {
    server.closeAllConnections();
    server.close();
  }
}

test('a trusted read piped into an HTTP response, its file changed right after its last bytes were read, is never answered complete', trust, async () => {
  const bytes = randomBytes(BIG);
  const { store, digest, path } = await trustedStore(bytes);
  try {
    // (piped, a read's chunk is a pooled slab whose size follows the streams reading: read-slabs.ts)
    const undo = await onCall('read', readingTo(BIG), () => overwrite(path, 0, randomBytes(10)));
    let r;
    try {
      r = await servedOverHttp(await store.openRead(digest), BIG);
    } finally {
      undo();
    }
    assert.ok(!r.complete && r.bytes.length < BIG, `received ${r.bytes.length} of ${BIG}, complete: ${r.complete}`);
    await neverServedComplete(store, digest, BIG);
  } finally {
    await store.close();
  }
});

test('a hashed read piped into an HTTP response, its last bytes changed once its first were read, is never answered complete', async () => {
  const bytes = randomBytes(BIG);
  const { store, hashes, digest, path } = await storeWith(bytes);
  try {
    const undo = await onCall('read', 1, () => overwrite(path, BIG - 10, randomBytes(10)));
    let r;
    try {
      r = await servedOverHttp(await store.openRead(digest), BIG);
    } finally {
      undo();
    }
    assert.equal(hashes.started, 1, 'a hashed read');
    assert.ok(!r.complete && r.bytes.length < BIG, `received ${r.bytes.length} of ${BIG}, complete: ${r.complete}`);
    assert.equal(await store.has(digest), false, 'the changed object is removed');
  } finally {
    await store.close();
  }
});
