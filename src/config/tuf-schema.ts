/**
 * Validation of `trust.tuf` (a TUF repository that keeps a trusted root fresh). The checks it
 * needs are passed in by schema.ts (its Checker), so this file imports nothing of it.
 */

/** Sigstore's public-good TUF repository (whose root @sigstore/tuf ships in its seeds). */
export const PUBLIC_GOOD_TUF_URL = 'https://tuf-repo-cdn.sigstore.dev';
/**
 * Once a day: Sigstore rotates keys rarely and announces it weeks ahead, and its timestamp
 * metadata lives for days, so a daily look sees every change in time at one small request.
 */
export const DEFAULT_TUF_REFRESH_MS = 24 * 3_600_000;
/** A repository is not asked more often than this (every refresh is 1-5 requests). */
export const MIN_TUF_REFRESH_MS = 60_000;

export interface TufSpec {
  url: string;
  /** As written; compile.ts resolves it. */
  root?: string;
  cacheDir?: string;
  refreshMs: number;
}

/** What of schema.ts's Checker this needs. */
export interface TufChecks {
  error(path: string, message: string): void;
  map(v: unknown, path: string, keys: readonly string[]): Record<string, unknown> | undefined;
  str(v: unknown, path: string): string | undefined;
  duration(v: unknown, path: string, dflt: number): number;
}

/** `hasStore`: `cache.store` is set, so the cache may default to `<cache.store.dir>/tuf`. */
export function checkTuf(c: TufChecks, raw: unknown, hasStore: boolean): TufSpec | undefined {
  const t = c.map(raw, 'trust.tuf', ['url', 'root', 'cacheDir', 'refresh']);
  if (t === undefined) return undefined;
  const text = c.str(t.url, 'trust.tuf.url') ?? PUBLIC_GOOD_TUF_URL;
  let url: URL | undefined;
  try {
    url = new URL(text);
  } catch {
    c.error('trust.tuf.url', `not a URL: ${JSON.stringify(text)}`);
  }
  if (url !== undefined && url.protocol !== 'https:' && url.protocol !== 'http:') c.error('trust.tuf.url', `must be http:// or https://, got ${url.protocol}`);
  else if (url !== undefined && (/[?#]/.test(text) || url.username !== '' || url.password !== '')) c.error('trust.tuf.url', 'must have no query, fragment or credentials');
  const root = c.str(t.root, 'trust.tuf.root');
  const cacheDir = c.str(t.cacheDir, 'trust.tuf.cacheDir');
  if (cacheDir === undefined && !hasStore) c.error('trust.tuf.cacheDir', 'is required without cache.store (with a store, the TUF cache defaults to <cache.store.dir>/tuf)');
  const refreshMs = c.duration(t.refresh, 'trust.tuf.refresh', DEFAULT_TUF_REFRESH_MS);
  if (refreshMs > 0 && refreshMs < MIN_TUF_REFRESH_MS) c.error('trust.tuf.refresh', `must be at least ${MIN_TUF_REFRESH_MS / 1000}s (every refresh asks the repository again)`);
  if (url === undefined) return undefined;
  return { url: url.href.replace(/\/+$/, ''), root, cacheDir, refreshMs };
}
