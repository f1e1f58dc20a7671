import { createHash } from 'node:crypto';
import { constants } from 'node:fs';
import { link, lstat, mkdir, open, readdir, readFile, rename, rm } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { setImmediate as yieldToLoop } from 'node:timers/promises';
import type { Logger } from 'pino';
import { SigilError } from '../errors.js';
import type { Digest } from '../oci/digest.js';
import { DIR_MODE, READ_FLAGS, isErrno, writeFileAtomic } from './layout.js';
import type { Layout } from './layout.js';
import { META_MAX_BYTES, META_NAMESPACE_RE, META_SWEEP_BATCH_FILES } from './limits.js';
import { parseJson } from '../oci/json.js';

/** A sweep opens whatever it finds: never follow a symlink, never block on a FIFO planted there. */
const SWEEP_READ_FLAGS = READ_FLAGS | constants.O_NONBLOCK;

/** The name of every metadata file: the sha256 of its key. */
const META_FILE_RE = /^[a-f0-9]{64}\.json$/;

/** What a metadata file holds: the key itself (to tell a hash collision or a stray file apart), when, what. */
interface MetaFile {
  readonly key: string;
  readonly updated: number;
  readonly value: unknown;
}

/** What a metadata sweep did. */
export interface MetaSweepResult {
  /** Files looked at. */
  readonly scanned: number;
  /** Documents removed because the object they are about is no longer stored. */
  readonly removed: number;
}

/** What a sweep needs from the store around it. */
export interface MetaSweepHooks {
  readonly namespaces: readonly string[];
  /** The object a document is about; undefined when that cannot be told (the document stays). */
  subject(ns: string, key: string, value: unknown): Digest | undefined;
  /** Whether the object is on disk now. */
  stored(digest: Digest): Promise<boolean>;
  /** Runs one batch of the sweep in turn with the store's other maintenance (eviction). */
  serial(fn: () => Promise<void>): Promise<void>;
  /** True once the store is closing: the sweep stops before the next file. */
  stopped(): boolean;
}

/** One metadata file read for a sweep, with what identifies that very file (a replacement is a new inode). */
type SweepRead =
  | { readonly kind: 'doc'; readonly doc: MetaFile; readonly ino: number; readonly size: number; readonly mtimeMs: number }
  | { readonly kind: 'gone' }
  | { readonly kind: 'bad'; readonly why: string };

/**
 * Small JSON documents keyed by (namespace, key): one file per key under
 * <dir>/meta/<ns>/, named by the sha256 of the key, replaced by write + fsync + rename,
 * so a reader sees the old or the new document, never half of one.
 */
export class MetaStore {
  readonly #layout: Layout;
  readonly #now: () => number;
  readonly #logger: Logger | undefined;
  readonly #madeDirs = new Set<string>();

  constructor(layout: Layout, now: () => number, logger: Logger | undefined) {
    this.#layout = layout;
    this.#now = now;
    this.#logger = logger;
  }

  async put(ns: string, key: string, value: unknown): Promise<void> {
    const path = this.#path(ns, key);
    const doc: MetaFile = { key, updated: this.#now(), value };
    let text: string | undefined;
    try {
      text = value === undefined ? undefined : JSON.stringify(doc);
    } catch (err) {
      throw new SigilError({ code: 'INTERNAL', message: `content store: meta ${ns}: the value is not JSON`, cause: err });
    }
    if (text === undefined) throw new SigilError({ code: 'INTERNAL', message: `content store: meta ${ns}: the value is not JSON` });
    const bytes = Buffer.from(text, 'utf8');
    if (bytes.length > META_MAX_BYTES) {
      throw new SigilError({ code: 'INTERNAL', message: `content store: meta ${ns}: ${bytes.length} bytes exceed ${META_MAX_BYTES}` });
    }
    const dir = join(this.#layout.metaDir, ns);
    if (!this.#madeDirs.has(dir)) {
      await mkdir(dir, { recursive: true, mode: DIR_MODE });
      this.#madeDirs.add(dir);
    }
    await writeFileAtomic(this.#layout, `meta-${ns}`, path, bytes);
  }

  /** The namespace directories may be gone (the store's directory was removed): create them again before the next write. */
  forgetDirs(): void {
    this.#madeDirs.clear();
  }

  async get<T>(ns: string, key: string): Promise<{ value: T; updated: number } | null> {
    const path = this.#path(ns, key);
    let text: string;
    try {
      const fh = await open(path, READ_FLAGS);
      try {
        const st = await fh.stat();
        const { size } = st;
        if (!st.isFile()) {
          this.#logger?.warn({ ns, path }, 'content store: metadata path is not a regular file; ignored');
          return null;
        }
        if (size > META_MAX_BYTES) {
          this.#logger?.warn({ ns, path, size }, 'content store: oversized metadata file ignored');
          return null;
        }
        text = await fh.readFile('utf8');
      } finally {
        await fh.close();
      }
    } catch (err) {
      if (isErrno(err, 'ENOENT') || isErrno(err, 'ELOOP')) return null;
      throw new SigilError({ code: 'INTERNAL', message: `content store: cannot read meta ${ns}`, cause: err });
    }
    let doc: MetaFile;
    try {
      doc = parseJson(text, path) as MetaFile;
    } catch {
      this.#logger?.warn({ ns, path }, 'content store: unreadable metadata file ignored');
      return null;
    }
    if (typeof doc !== 'object' || doc === null || doc.key !== key || typeof doc.updated !== 'number') return null;
    return { value: doc.value as T, updated: doc.updated };
  }

  /** Every document of a namespace (for listings: `sigil cache ls`, export); unreadable files are skipped. */
  async list<T>(ns: string): Promise<Array<{ key: string; value: T; updated: number }>> {
    const dir = dirname(this.#path(ns, ''));
    let names: string[];
    try {
      names = await readdir(dir);
    } catch (err) {
      if (isErrno(err, 'ENOENT')) return [];
      throw new SigilError({ code: 'INTERNAL', message: `content store: cannot list meta ${ns}`, cause: err });
    }
    const out: Array<{ key: string; value: T; updated: number }> = [];
    for (const name of names) {
      if (!/^[a-f0-9]{64}\.json$/.test(name)) continue;
      try {
        const doc = parseJson(await readFile(join(dir, name), 'utf8'), name) as MetaFile;
        if (typeof doc?.key === 'string' && typeof doc.updated === 'number' && this.#path(ns, doc.key).endsWith(name)) {
          out.push({ key: doc.key, value: doc.value as T, updated: doc.updated });
        }
      } catch {
        // a file being replaced or damaged: not listed
      }
    }
    return out;
  }

  /** Removes a key; false when it was not there. */
  async delete(ns: string, key: string): Promise<boolean> {
    const path = this.#path(ns, key);
    try {
      await rm(path);
      return true;
    } catch (err) {
      if (isErrno(err, 'ENOENT')) return false;
      throw err;
    }
  }

  /**
   * Removes every document of `hooks.namespaces` whose object is no longer stored, one file at a
   * time, META_SWEEP_BATCH_FILES per turn of the store's maintenance queue. Safe while the store
   * serves, here or in another process sharing the directory: a document updated at or after
   * `startedAt` stays, and a document is removed only after it was renamed away (atomically
   * claimed) and then found to be the very file read, its object still absent; else it is put
   * back, unless a newer one took its place meanwhile. Files that do not parse stay (debug log).
   */
  async sweep(hooks: MetaSweepHooks, startedAt: number): Promise<MetaSweepResult> {
    let scanned = 0;
    let removed = 0;
    let failed = 0;
    let firstError: unknown;
    for (const ns of hooks.namespaces) {
      const dir = dirname(this.#path(ns, ''));
      let names: string[];
      try {
        names = await readdir(dir);
      } catch (err) {
        if (isErrno(err, 'ENOENT')) continue;
        if (isErrno(err, 'ENOTDIR')) {
          this.#logger?.warn({ ns, path: dir }, 'content store: metadata sweep: not a directory, skipped');
          continue;
        }
        throw new SigilError({ code: 'INTERNAL', message: `content store: cannot list meta ${ns}`, cause: err });
      }
      for (let i = 0; i < names.length && !hooks.stopped(); i += META_SWEEP_BATCH_FILES) {
        const batch = names.slice(i, i + META_SWEEP_BATCH_FILES);
        await hooks.serial(async () => {
          for (const name of batch) {
            if (hooks.stopped()) return;
            scanned++;
            try {
              if (await this.#sweepOne(ns, dir, name, hooks, startedAt)) removed++;
            } catch (err) {
              failed++;
              firstError ??= err;
              this.#logger?.debug({ err, ns, path: join(dir, name) }, 'content store: metadata sweep could not check a file');
            }
          }
        });
        await yieldToLoop();
      }
    }
    if (failed > 0) this.#logger?.warn({ err: firstError, failed, scanned }, 'content store: metadata sweep could not check some files');
    return { scanned, removed };
  }

  /** true when the document was removed. */
  async #sweepOne(ns: string, dir: string, name: string, hooks: MetaSweepHooks, startedAt: number): Promise<boolean> {
    const path = join(dir, name);
    const leave = (why: string): false => {
      this.#logger?.debug({ ns, path, why }, 'content store: metadata sweep left a file alone');
      return false;
    };
    if (!META_FILE_RE.test(name)) return leave('not a metadata file name');
    const read = await this.#readForSweep(path, name);
    if (read.kind === 'gone') return false;
    if (read.kind === 'bad') return leave(read.why);
    const { doc } = read;
    if (doc.updated >= startedAt) return false; // written since the sweep began: its object may be on its way
    const subject = hooks.subject(ns, doc.key, doc.value);
    if (subject === undefined) return leave('no object digest in its key or value');
    if (await hooks.stored(subject)) return false;
    // Claim the file: from here a writer replacing the document creates a new file, which stays.
    const claimed = this.#layout.tmpPath(`meta-sweep-${ns}`);
    try {
      await rename(path, claimed);
    } catch (err) {
      if (isErrno(err, 'ENOENT')) return false; // removed meanwhile (another sweep, a delete)
      throw err;
    }
    let remove = false;
    try {
      const st = await lstat(claimed);
      // The file read above (not a replacement written between the read and the rename), and its object still absent.
      remove = st.ino === read.ino && st.size === read.size && st.mtimeMs === read.mtimeMs && !(await hooks.stored(subject));
    } finally {
      if (!remove) await putBack(claimed, path);
    }
    if (!remove) return false;
    await rm(claimed, { force: true });
    return true;
  }

  async #readForSweep(path: string, name: string): Promise<SweepRead> {
    let text: string;
    let ino: number;
    let size: number;
    let mtimeMs: number;
    try {
      const fh = await open(path, SWEEP_READ_FLAGS);
      try {
        const st = await fh.stat();
        if (!st.isFile()) return { kind: 'bad', why: 'not a regular file' };
        if (st.size > META_MAX_BYTES) return { kind: 'bad', why: `over ${META_MAX_BYTES} bytes` };
        ({ ino, size, mtimeMs } = st);
        text = await fh.readFile('utf8');
      } finally {
        await fh.close();
      }
    } catch (err) {
      if (isErrno(err, 'ENOENT')) return { kind: 'gone' };
      if (isErrno(err, 'ELOOP')) return { kind: 'bad', why: 'a symbolic link' };
      throw err;
    }
    let doc: unknown;
    try {
      doc = parseJson(text, name);
    } catch {
      return { kind: 'bad', why: 'not JSON' };
    }
    if (typeof doc !== 'object' || doc === null) return { kind: 'bad', why: 'not a metadata document' };
    const { key, updated } = doc as Partial<MetaFile>;
    if (typeof key !== 'string' || typeof updated !== 'number' || !Number.isFinite(updated)) return { kind: 'bad', why: 'not a metadata document' };
    if (fileName(key) !== name) return { kind: 'bad', why: 'its key does not hash to its name' };
    return { kind: 'doc', doc: doc as MetaFile, ino, size, mtimeMs };
  }

  #path(ns: string, key: string): string {
    if (typeof ns !== 'string' || !META_NAMESPACE_RE.test(ns)) {
      throw new SigilError({ code: 'INTERNAL', message: `content store: bad meta namespace ${JSON.stringify(String(ns)).slice(0, 80)}` });
    }
    if (typeof key !== 'string') throw new SigilError({ code: 'INTERNAL', message: 'content store: a meta key is a string' });
    return join(this.#layout.metaDir, ns, fileName(key));
  }
}

/** A document's file name: the sha256 of its key. */
function fileName(key: string): string {
  return `${createHash('sha256').update(key, 'utf8').digest('hex')}.json`;
}

/** Puts a claimed document back where it was, unless a newer one took its place meanwhile (that one stays). */
async function putBack(claimed: string, path: string): Promise<void> {
  try {
    await link(claimed, path);
  } catch (err) {
    if (!isErrno(err, 'EEXIST')) {
      // A file system without hard links (some network and FUSE ones): rename back, which would
      // replace a document written in the last few instants; an error leaves it in tmp/.
      await rename(claimed, path);
      return;
    }
  }
  await rm(claimed, { force: true });
}
