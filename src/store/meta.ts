import { createHash } from 'node:crypto';
import { mkdir, open, readdir, readFile, rm } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import type { Logger } from 'pino';
import { SigilError } from '../errors.js';
import { DIR_MODE, READ_FLAGS, isErrno, writeFileAtomic } from './layout.js';
import type { Layout } from './layout.js';
import { META_MAX_BYTES, META_NAMESPACE_RE } from './limits.js';

/** What a metadata file holds: the key itself (to tell a hash collision or a stray file apart), when, what. */
interface MetaFile {
  readonly key: string;
  readonly updated: number;
  readonly value: unknown;
}

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

  async get<T>(ns: string, key: string): Promise<{ value: T; updated: number } | null> {
    const path = this.#path(ns, key);
    let text: string;
    try {
      const fh = await open(path, READ_FLAGS);
      try {
        const { size } = await fh.stat();
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
      doc = JSON.parse(text) as MetaFile;
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
        const doc = JSON.parse(await readFile(join(dir, name), 'utf8')) as MetaFile;
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

  #path(ns: string, key: string): string {
    if (typeof ns !== 'string' || !META_NAMESPACE_RE.test(ns)) {
      throw new SigilError({ code: 'INTERNAL', message: `content store: bad meta namespace ${JSON.stringify(String(ns)).slice(0, 80)}` });
    }
    if (typeof key !== 'string') throw new SigilError({ code: 'INTERNAL', message: 'content store: a meta key is a string' });
    return join(this.#layout.metaDir, ns, `${createHash('sha256').update(key, 'utf8').digest('hex')}.json`);
  }
}
