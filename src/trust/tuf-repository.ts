/**
 * One look at a TUF repository through @sigstore/tuf (tuf-js underneath): every newer root
 * (each signed by the previous root's keys and its own), then timestamp, snapshot and targets,
 * each checked against the keys, thresholds, versions and expiry TUF requires, then the
 * `trusted_root.json` target, checked against its length and hashes in the targets metadata.
 * Anything that fails throws, and nothing of it is used. Verified metadata and targets are
 * cached under `cacheDir`, so the next look downloads only what changed.
 */
import { existsSync } from 'node:fs';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import type { TufConfig } from '../config/types.js';

/** The target Sigstore's TUF repositories publish the trusted root as. */
export const TRUSTED_ROOT_TARGET = 'trusted_root.json';
/**
 * Each request to the repository gets this long (@sigstore/tuf's own default). A refresh is at
 * most a few small requests, and a failed one is retried by the refresher's schedule, not here.
 */
export const TUF_FETCH_TIMEOUT_MS = 5_000;
/** The public-good repository whose root @sigstore/tuf ships (seeds.json is keyed by it). */
const SEEDED_REPOSITORY = 'https://tuf-repo-cdn.sigstore.dev';
/** The initial root written for a repository configured without `root`. */
const SEED_ROOT_FILE = 'public-good-root.json';

export interface TufFetched {
  /** The `trusted_root.json` target, as served (its hashes matched the signed targets metadata). */
  readonly trustedRoot: string;
  /** The version of the TUF root.json the metadata was verified under. */
  readonly rootVersion: number;
}

/** One fetch of a repository's trusted root (the refresher's default; tests may inject another). */
export type FetchTrustedRoot = (config: TufConfig) => Promise<TufFetched>;

/** Where @sigstore/tuf keeps one repository's metadata inside `cacheDir` (its client.ts: host + path, URI-encoded). */
function metadataDir(config: TufConfig): string {
  const url = new URL(config.url);
  return join(config.cacheDir, encodeURIComponent(url.host + url.pathname.replace(/\/$/, '')));
}

/** Public-good's TUF root.json as @sigstore/tuf ships it, written once into the cache dir. */
async function seedRoot(cacheDir: string): Promise<string> {
  const path = join(cacheDir, SEED_ROOT_FILE);
  if (existsSync(path)) return path;
  const seedsPath = createRequire(import.meta.url).resolve('@sigstore/tuf/seeds.json');
  const seeds = JSON.parse(await readFile(seedsPath, 'utf8')) as Record<string, { 'root.json'?: string } | undefined>;
  const b64 = seeds[SEEDED_REPOSITORY]?.['root.json'];
  if (typeof b64 !== 'string') throw new Error(`${seedsPath} holds no root.json for ${SEEDED_REPOSITORY}`);
  await writeFile(path, Buffer.from(b64, 'base64'), { mode: 0o600 });
  return path;
}

/** Fetches and verifies `trusted_root.json` from the repository (see the file comment). */
export const fetchTrustedRoot: FetchTrustedRoot = async (config) => {
  await mkdir(config.cacheDir, { recursive: true, mode: 0o700 });
  const rootPath = config.rootPath ?? (await seedRoot(config.cacheDir));
  // loaded on first use: a process without trust.tuf never pays for the library (~12 MiB of RSS)
  const { initTUF } = await import('@sigstore/tuf');
  const tuf = await initTUF({
    mirrorURL: config.url,
    rootPath,
    cachePath: config.cacheDir,
    timeout: TUF_FETCH_TIMEOUT_MS,
    retry: false,
    forceCache: false,
  });
  const trustedRoot = await tuf.getTarget(TRUSTED_ROOT_TARGET);
  // The newest root tuf-js verified and kept (it writes each accepted root over root.json).
  const root = JSON.parse(await readFile(join(metadataDir(config), 'root.json'), 'utf8')) as { signed?: { version?: unknown } };
  const rootVersion = root.signed?.version;
  if (typeof rootVersion !== 'number') throw new Error(`the cached TUF root.json of ${config.url} has no version`);
  return { trustedRoot, rootVersion };
};
