import { randomBytes } from 'node:crypto';
import { constants } from 'node:fs';
import { mkdir, open, readdir, rename, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { SigilError } from '../errors.js';
import { digestAlgorithm, isDigest } from '../oci/digest.js';
import type { Digest } from '../oci/digest.js';

/**
 * The directory layout of a store, and the few file operations everything else is
 * built from. Paths come only from validated digests and from hashes of keys, never
 * from a caller's string.
 *
 *   <dir>/blobs/<alg>/<hex>       objects, immutable once renamed into place
 *   <dir>/meta/<ns>/<sha256>.json  metadata, one file per key, replaced atomically
 *   <dir>/tmp/                     temp files of writes in progress (both kinds)
 */
export const ALGORITHMS = ['sha256', 'sha512'] as const;

/**
 * Modes of what the store creates: images from a private upstream are as private as
 * the registry they came from, so only sigil's own user may read the store.
 */
export const DIR_MODE = 0o700;
export const FILE_MODE = 0o600;

/**
 * Open flags for reading an object or a document: never follow a symlink planted in the cache dir,
 * never block on a FIFO planted there (O_NONBLOCK does nothing to regular files); readers then
 * refuse anything that is not a regular file.
 */
export const READ_FLAGS = constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK;

export class Layout {
  readonly dir: string;
  readonly tmpDir: string;
  readonly metaDir: string;

  constructor(dir: string) {
    this.dir = dir;
    this.tmpDir = join(dir, 'tmp');
    this.metaDir = join(dir, 'meta');
  }

  async create(): Promise<void> {
    for (const alg of ALGORITHMS) await mkdir(this.algDir(alg), { recursive: true, mode: DIR_MODE });
    await mkdir(this.tmpDir, { recursive: true, mode: DIR_MODE });
    await mkdir(this.metaDir, { recursive: true, mode: DIR_MODE });
  }

  algDir(alg: (typeof ALGORITHMS)[number]): string {
    return join(this.dir, 'blobs', alg);
  }

  /** The directory holding the object's file. */
  objectDir(digest: Digest): string {
    checkDigest(digest);
    return this.algDir(digestAlgorithm(digest));
  }

  /** The object's path; throws unless `digest` is a valid digest (a caller bug, hence INTERNAL). */
  objectPath(digest: Digest): string {
    checkDigest(digest);
    return join(this.algDir(digestAlgorithm(digest)), digest.slice(digest.indexOf(':') + 1));
  }

  /**
   * A fresh temp path: unique across processes sharing the directory (pid plus 96
   * random bits), labelled for humans. Created with O_EXCL by the caller.
   */
  tmpPath(label: string): string {
    return join(this.tmpDir, `${label}.${process.pid}.${randomBytes(12).toString('hex')}.tmp`);
  }
}

export function checkDigest(digest: string): asserts digest is Digest {
  if (typeof digest !== 'string' || !isDigest(digest)) {
    throw new SigilError({ code: 'INTERNAL', message: `content store: not a digest: ${JSON.stringify(String(digest)).slice(0, 160)}` });
  }
}

/** The temp label for an object: "<alg>-<hex>". */
export function objectLabel(digest: Digest): string {
  return digest.replace(':', '-');
}

export function isErrno(err: unknown, code: string): boolean {
  return typeof err === 'object' && err !== null && (err as NodeJS.ErrnoException).code === code;
}

/** fsync a directory so that a rename into it survives a power cut; some file systems refuse (ignored). */
export async function syncDir(dir: string): Promise<void> {
  let fh;
  try {
    fh = await open(dir, constants.O_RDONLY | constants.O_DIRECTORY);
    await fh.sync();
  } catch {
    // EINVAL/EISDIR on file systems without directory fsync: the rename is still atomic.
  } finally {
    await fh?.close();
  }
}

/** Writes `bytes` to a fresh temp file, fsyncs it and renames it to `dest`: readers see all or nothing. */
export async function writeFileAtomic(layout: Layout, label: string, dest: string, bytes: Uint8Array, mtimeMs?: number): Promise<void> {
  const tmp = layout.tmpPath(label);
  const fh = await open(tmp, 'wx', FILE_MODE);
  try {
    try {
      await fh.writeFile(bytes);
      if (mtimeMs !== undefined) await fh.utimes(mtimeMs / 1000, mtimeMs / 1000);
      await fh.sync();
    } finally {
      await fh.close();
    }
    await rename(tmp, dest);
  } catch (err) {
    await rm(tmp, { force: true });
    throw err;
  }
}

/** Removes temp files not modified for `staleMs`: debris of writers that crashed. */
export async function cleanStaleTemps(layout: Layout, now: number, staleMs: number): Promise<number> {
  let removed = 0;
  for (const name of await readdir(layout.tmpDir)) {
    const path = join(layout.tmpDir, name);
    try {
      const st = await stat(path);
      if (now - st.mtimeMs >= staleMs) {
        await rm(path, { force: true, recursive: true });
        removed++;
      }
    } catch (err) {
      if (!isErrno(err, 'ENOENT')) throw err; // another process cleaned it first
    }
  }
  return removed;
}
