import { lstat } from 'node:fs/promises';
import type { FileHandle } from 'node:fs/promises';
import { Readable } from 'node:stream';
import type { Logger } from 'pino';
import type { Metrics } from '../audit/metrics.js';
import { SigilError } from '../errors.js';
import { startHash } from '../hash/hash-pool.js';
import type { HashPool } from '../hash/hash-pool.js';
import { digestAlgorithm, digestOf } from '../oci/digest.js';
import type { Digest } from '../oci/digest.js';
import { identityOf, sameIdentity, trustable } from './file-identity.js';
import type { FileIdentity } from './file-identity.js';
import { ioErrorCode } from './health.js';
import type { StoreHealth } from './health.js';
import type { LastUse } from './last-use.js';
import { isErrno } from './layout.js';
import type { Layout } from './layout.js';
import { VERIFY_AHEAD_MAX_BYTES } from './limits.js';
import { ObjectStream } from './object-stream.js';
import { openObject } from './object-index.js';
import type { Entry, ObjectIndex, OpenedObject } from './object-index.js';

export interface ObjectReaderOptions {
  readonly layout: Layout;
  readonly index: ObjectIndex;
  readonly health: StoreHealth;
  readonly lastUse: LastUse;
  /** Removes a damaged object (the store's remove). */
  readonly remove: (digest: Digest) => Promise<boolean>;
  /** TRUST_CTIME_MIN_AGE_MS, or a test's. */
  readonly trustAgeMs: number;
  /** The store's file system keeps ctimes that trusted reads can rely on (file-identity.ts ctimeTracksWrites). */
  readonly trustFileSystem: boolean;
  /** The real clock, to compare with file timestamps (never the store's injected one). */
  readonly wallClock: () => number;
  readonly hashes?: HashPool;
  readonly logger?: Logger;
  readonly metrics?: Metrics;
}

/**
 * Reads stored objects, and owns the rule that nothing but the digest's bytes is ever served
 * complete: an object is hashed as it is read, unless this process hashed that very file before
 * (a trusted read, below); an object that does not hash to its digest is removed, logged and
 * counted, and reported absent when that is found before anything was returned.
 *
 * A trusted read (security-relevant): an object whose bytes hashed to its digest in this process
 * is served without hashing while fstat on the open file gives the same device, inode, size,
 * mtime and ctime as then (file-identity.ts), checked again once every byte has been read and
 * before the last chunk goes out: a write during the read changes the ctime, and the read fails
 * instead of completing. Trust is recorded only when the file's ctime was TRUST_CTIME_MIN_AGE_MS
 * old as the hashing read began (coarse timestamps), and only if the file was unchanged at its end.
 * Such a read first writes the file's dirty pages back (fdatasync): a page someone holds dirty and
 * writable in a shared memory mapping takes writes without a fault, so without a new ctime; written
 * back, it is write-protected, and the next write through the mapping faults and changes the ctime.
 * Only on file systems where that holds (file-identity.ts ctimeTracksWrites); elsewhere every read hashes.
 */
export class ObjectReader {
  readonly #o: ObjectReaderOptions;

  constructor(opts: ObjectReaderOptions) {
    this.#o = opts;
  }

  /**
   * A stream of the object, or of bytes [start, end] inclusive (else RANGE_INVALID); null when
   * absent, unreadable, or found damaged before anything of it was returned. Marks it used. The
   * stream holds the file open, so eviction (even by another process) does not cut a hashed read
   * short; a trusted read it does (unlinking a file changes its ctime, as another process's
   * last-use write or a file renamed over it do): it fails before its last chunk, and the next
   * read hashes.
   *
   * A whole object (or a range that is every byte of it) is checked: up to VERIFY_AHEAD_MAX_BYTES
   * before it is returned, a larger one as it streams, its last chunk held back until the check
   * passed. A partial range is served as stored, unchecked: a part has nothing to be checked
   * against, and a client that puts a blob together from parts checks its digest itself
   * (containerd, CRI-O, skopeo do).
   */
  async openRead(digest: Digest, range?: { start: number; end: number }): Promise<Readable | null> {
    const opened = await this.#open(digest);
    if (!opened) return null;
    const { fh, entry } = opened;
    const size = entry.size;
    if (range) {
      const { start, end } = range;
      if (!Number.isSafeInteger(start) || !Number.isSafeInteger(end) || start < 0 || start > end || end >= size) {
        await fh.close();
        throw new SigilError({ code: 'RANGE_INVALID', message: `content store: bytes ${start}-${end} of a ${size}-byte object` });
      }
      if (start !== 0 || end !== size - 1) {
        this.#o.lastUse.touch(digest);
        return this.#stream(digest, fh, start, end, {});
      }
    }
    return size <= VERIFY_AHEAD_MAX_BYTES ? this.#readAhead(digest, opened) : this.#streamChecked(digest, opened);
  }

  /**
   * The whole object, hashed again on the way (a damaged file is removed and reported
   * absent); null when absent. An object over `maxBytes` is a caller error (INTERNAL).
   * Marks it used unless `touch: false` (`sigil cache ls`/`prune` read manifests to list
   * and size images: looking must not change the LRU order they report and act on).
   */
  async readAll(digest: Digest, maxBytes: number, opts: { readonly touch?: boolean } = {}): Promise<Buffer | null> {
    const opened = await this.#open(digest);
    if (!opened) return null;
    const { fh, entry, identity } = opened;
    let bytes: Buffer;
    try {
      if (entry.size > maxBytes) {
        throw new SigilError({ code: 'INTERNAL', message: `content store: ${digest} has ${entry.size} bytes, over ${maxBytes}`, detail: { size: entry.size, maxBytes } });
      }
      bytes = await readExactly(fh, entry.size);
    } catch (err) {
      if (ioErrorCode(err) === undefined) throw err;
      this.#readFailed(digest, err);
      return null;
    } finally {
      await fh.close();
    }
    const got = digestOf(bytes, digest);
    if (got !== digest) {
      await this.#damaged(digest, identity, `bytes that hash to ${got}`);
      return null;
    }
    if (opts.touch !== false) this.#o.lastUse.touch(digest);
    return bytes;
  }

  /** A small object, read whole and checked before anything is returned. */
  async #readAhead(digest: Digest, { fh, entry, identity }: OpenedObject): Promise<Readable | null> {
    const trusted = this.#trusted(entry, identity);
    const mayTrust = !trusted && (await this.#mayTrust(fh, identity));
    let bytes: Buffer;
    let after: FileIdentity;
    try {
      bytes = await readExactly(fh, entry.size);
      after = identityOf(await fh.stat({ bigint: true }));
    } catch (err) {
      this.#readFailed(digest, err);
      return null;
    } finally {
      await fh.close();
    }
    if (!(trusted && sameIdentity(identity, after))) {
      let got: Digest;
      try {
        got = await this.#hashOf(digest, bytes);
      } catch (err) {
        // the hash workers failed (stalled, gone): unchecked bytes are not served; the caller fetches them again
        this.#o.logger?.warn({ digest, err: String(err) }, 'content store: could not hash a stored object; treated as absent');
        return null;
      }
      if (got !== digest) {
        await this.#damaged(digest, identity, `bytes that hash to ${got}`);
        return null;
      }
      if (mayTrust) this.#verified(entry, identity, after);
    }
    this.#o.lastUse.touch(digest);
    return bufferStream(bytes);
  }

  /** A large object, checked as it streams: by its identity when trusted, else by its hash. */
  async #streamChecked(digest: Digest, { fh, entry, identity }: OpenedObject): Promise<Readable> {
    const size = entry.size;
    const endIdentity = async (): Promise<FileIdentity> => identityOf(await fh.stat({ bigint: true }));
    if (this.#trusted(entry, identity)) {
      const release = this.#o.lastUse.hold(digest); // our own last-use write waits: it would change the ctime
      this.#o.lastUse.touch(digest);
      return this.#stream(digest, fh, 0, size - 1, {
        short: async () => this.#changed(digest, entry),
        beforeLast: async () => {
          if (!sameIdentity(identity, await endIdentity())) throw await this.#changed(digest, entry);
        },
        closed: release,
      });
    }
    const mayTrust = await this.#mayTrust(fh, identity);
    const hash = startHash(this.#o.hashes, digestAlgorithm(digest), size);
    this.#o.lastUse.touch(digest);
    return this.#stream(digest, fh, 0, size - 1, {
      onChunk: (chunk) => hash.update(chunk),
      short: async (pos) => {
        await this.#damaged(digest, identity, `${pos} of ${size} bytes`);
        return this.#damageError(digest);
      },
      beforeLast: async () => {
        const got = `${digestAlgorithm(digest)}:${await hash.digest()}` as Digest;
        if (got !== digest) {
          await this.#damaged(digest, identity, `bytes that hash to ${got}`);
          throw this.#damageError(digest);
        }
        if (mayTrust) this.#verified(entry, identity, await endIdentity());
      },
      closed: () => hash.abort(),
    });
  }

  #stream(
    digest: Digest,
    fh: FileHandle,
    start: number,
    end: number,
    check: Pick<ConstructorParameters<typeof ObjectStream>[0], 'onChunk' | 'beforeLast' | 'closed'> & { short?: (pos: number) => Promise<Error> },
  ): Readable {
    return new ObjectStream({
      fh,
      start,
      end,
      ...check,
      short: check.short ?? ((pos) => new SigilError({ code: 'INTERNAL', message: `content store: ${digest} ends at byte ${pos}, before byte ${end}` })),
      readFailed: (err) => this.#readFailed(digest, err),
    });
  }

  #trusted(entry: Entry, identity: FileIdentity): boolean {
    return entry.verified !== undefined && sameIdentity(entry.verified, identity);
  }

  /**
   * Whether the hashing read about to begin may make the file trusted: on a file system whose
   * ctime tracks writes, when the file's ctime is old enough now; its dirty pages are then written
   * back first (see the class), and when that fails it is not trusted.
   */
  async #mayTrust(fh: FileHandle, identity: FileIdentity): Promise<boolean> {
    if (!this.#o.trustFileSystem || !trustable(identity, this.#o.wallClock(), this.#o.trustAgeMs)) return false;
    try {
      await fh.datasync();
      return true;
    } catch {
      return false;
    }
  }

  /** The bytes read between `before` and `after` (a read #mayTrust allowed) hashed to the digest: trusted from now on if unchanged. */
  #verified(entry: Entry, before: FileIdentity, after: FileIdentity): void {
    if (sameIdentity(before, after)) entry.verified = before;
  }

  /** A trusted object's file changed while it was read: not trusted any more (its next read hashes it). */
  #changed(digest: Digest, entry: Entry): SigilError {
    entry.verified = undefined;
    this.#o.logger?.warn({ digest, path: this.#o.layout.objectPath(digest) }, 'content store: a stored object changed on disk while it was read; not served complete');
    return new SigilError({ code: 'INTERNAL', message: `content store: ${digest} changed on disk while it was read; cut off before its last bytes` });
  }

  /** The object opened for reading; null when absent, unreadable, or of another size than recorded (damaged). */
  async #open(digest: Digest): Promise<OpenedObject | null> {
    let opened: OpenedObject | null;
    try {
      opened = await openObject(this.#o.layout, this.#o.index, digest);
    } catch (err) {
      this.#readFailed(digest, err);
      return null;
    }
    if (opened?.recordedSize !== undefined) {
      await opened.fh.close();
      await this.#damaged(digest, opened.identity, `${opened.entry.size} bytes, stored as ${opened.recordedSize}`);
      return null;
    }
    return opened;
  }

  async #hashOf(digest: Digest, bytes: Buffer): Promise<Digest> {
    const hash = startHash(this.#o.hashes, digestAlgorithm(digest), bytes.length);
    const room = hash.update(bytes);
    if (room !== undefined) await room;
    return `${digestAlgorithm(digest)}:${await hash.digest()}` as Digest;
  }

  #readFailed(digest: Digest, err: unknown): void {
    this.#o.health.failed('read', err, { digest, path: this.#o.layout.objectPath(digest) });
  }

  /**
   * A stored object is not its digest's bytes (changed on disk): counted, logged, and removed
   * unless the file was replaced meanwhile (by a write of the right bytes).
   */
  async #damaged(digest: Digest, read: FileIdentity, found: string): Promise<void> {
    const path = this.#o.layout.objectPath(digest);
    this.#o.metrics?.storeDamaged.inc();
    this.#o.logger?.warn({ digest, path, found }, 'content store: a stored object does not match its digest; removed, not served');
    try {
      const st = await lstat(path, { bigint: true });
      if (st.ino !== read.ino || st.dev !== read.dev) return;
      await this.#o.remove(digest);
    } catch (err) {
      if (isErrno(err, 'ENOENT')) return;
      this.#o.index.delete(digest);
      this.#o.health.failed('write', err, { digest, path });
    }
  }

  #damageError(digest: Digest): SigilError {
    return new SigilError({ code: 'INTERNAL', message: `content store: ${digest} does not match its digest on disk; cut off before its last bytes` });
  }
}

/** `size` bytes from the start of the file: a file that grew is read only that far, a shorter one gives fewer (a mismatch then). */
async function readExactly(fh: FileHandle, size: number): Promise<Buffer> {
  const buf = Buffer.allocUnsafe(size);
  let off = 0;
  while (off < size) {
    const { bytesRead } = await fh.read(buf, off, size - off, off);
    if (bytesRead === 0) break;
    off += bytesRead;
  }
  return off === size ? buf : buf.subarray(0, off);
}

/** A stream of one buffer (a checked small object). */
function bufferStream(bytes: Buffer): Readable {
  const out = new Readable({ read() {} });
  if (bytes.length > 0) out.push(bytes);
  out.push(null);
  return out;
}
