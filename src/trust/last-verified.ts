/**
 * The last trusted root sigil verified from a TUF repository, kept in the TUF cache dir so that
 * a restart (or `sigil serve --offline`) starts from it instead of from the configured roots
 * alone. It was verified when written, and is not verified again when read: only sigil's own
 * user may have written it (the cache dir is created mode 0700, as SECURITY.md asks). A record
 * owned by another user, or that other users could have changed, is not used — else any of them
 * could make sigil trust a root of their own.
 */
import { randomBytes } from 'node:crypto';
import { mkdir, rename, rm, writeFile } from 'node:fs/promises';
import type { Stats } from 'node:fs';
import { join } from 'node:path';
import { readConfigFile } from '../config/read-file.js';

/** The record's file name inside `trust.tuf.cacheDir`. */
export const LAST_VERIFIED_FILE = 'sigil-last-verified.json';
/** Sigstore's trusted roots are tens of KiB; a record bigger than this is not one of ours. */
export const MAX_LAST_VERIFIED_BYTES = 4 * 1024 * 1024;

/**
 * Throws (code EUNTRUSTED) unless the record is sigil's own: owned by its user, writable by no
 * other user, nor by a group other than sigil's own (Kubernetes' fsGroup makes a volume's files
 * group-writable, for the pod's group).
 */
function ownRecord(st: Stats): void {
  const [uid, gid] = [process.geteuid?.(), process.getegid?.()];
  const mode = (st.mode & 0o777).toString(8);
  const why =
    uid !== undefined && st.uid !== uid ? `owned by uid ${st.uid}, not by sigil's user (uid ${uid})`
    : (st.mode & 0o002) !== 0 ? `writable by other users (mode ${mode})`
    : (st.mode & 0o020) !== 0 && gid !== undefined && st.gid !== gid ? `writable by group ${st.gid}, not sigil's (gid ${gid}) (mode ${mode})`
    : null;
  if (why !== null) throw Object.assign(new Error(`not used: ${why}`), { code: 'EUNTRUSTED' });
}

export interface LastVerified {
  /** The repository it came from: a record of another repository is not used. */
  readonly url: string;
  readonly rootVersion: number;
  /** When it was verified, ms since the epoch. */
  readonly verifiedAt: number;
  /** The `trusted_root.json` target, as served. */
  readonly trustedRoot: string;
}

/** The record for `url` in `cacheDir`; null when there is none (else throws saying what is wrong with it). */
export async function readLastVerified(cacheDir: string, url: string): Promise<LastVerified | null> {
  const path = join(cacheDir, LAST_VERIFIED_FILE);
  let text: string;
  try {
    // A regular file of at most this size, never waited on (a FIFO put there cannot stall the start).
    text = (await readConfigFile(path, MAX_LAST_VERIFIED_BYTES, ownRecord)).toString('utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
    if ((e as NodeJS.ErrnoException).code === 'EUNTRUSTED') throw new Error(`${path}: ${(e as Error).message}`, { cause: e });
    throw new Error(`${path}: cannot read: ${(e as Error).message}`, { cause: e });
  }
  let r: Partial<LastVerified>;
  try {
    r = JSON.parse(text) as Partial<LastVerified>;
  } catch (e) {
    throw new Error(`${path}: not JSON: ${(e as Error).message}`, { cause: e });
  }
  if (r === null || typeof r !== 'object' || typeof r.url !== 'string' || !Number.isSafeInteger(r.rootVersion) || !Number.isFinite(r.verifiedAt) || typeof r.trustedRoot !== 'string') {
    throw new Error(`${path}: not a record of a verified trusted root`);
  }
  return r.url === url ? (r as LastVerified) : null;
}

/** Replaces the record atomically (a temp file renamed over it): a crash leaves the old one or the new one. */
export async function writeLastVerified(cacheDir: string, record: LastVerified): Promise<void> {
  await mkdir(cacheDir, { recursive: true, mode: 0o700 });
  const path = join(cacheDir, LAST_VERIFIED_FILE);
  const tmp = `${path}.${randomBytes(6).toString('hex')}.tmp`;
  try {
    await writeFile(tmp, JSON.stringify(record), { mode: 0o600 });
    await rename(tmp, path);
  } catch (e) {
    await rm(tmp, { force: true });
    throw e;
  }
}
