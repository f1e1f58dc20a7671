/**
 * Validation of `cache.shared` (several sigil processes acting as one cache: an S3-compatible
 * bucket as the second level of the store, Redis/Valkey for coordination, a peer listener for
 * in-flight downloads). The checks it needs are passed in by schema.ts (its Checker), so this
 * file imports nothing of it.
 */
import type { ListenAddress } from './types.js';

/** A peer token shorter than this is guessable: it is all that stands between a peer port and the store's bytes in flight. */
export const MIN_PEER_TOKEN_CHARS = 16;

export interface SharedSpec {
  s3?: {
    endpoint?: string;
    region: string;
    bucket: string;
    prefix: string;
    forcePathStyle: boolean;
    credentials?: { accessKeyId: string; secretAccessKey: string; sessionToken?: string };
    maxBytes?: number;
    redirect: boolean;
  };
  redis?: { url: string };
  peer?: { listen: ListenAddress; advertise: string; token: string; ca?: string };
}

/** What of schema.ts's Checker this needs. */
export interface SharedChecks {
  error(path: string, message: string): void;
  map(v: unknown, path: string, keys: readonly string[], required?: boolean): Record<string, unknown> | undefined;
  str(v: unknown, path: string, required?: boolean): string | undefined;
  bool(v: unknown, path: string, dflt: boolean): boolean;
  positiveInt(v: unknown, path: string, dflt: number | undefined): number;
}

/** `hasStore`: `cache.store` is set (each process's first level); `parseListen` is schema.ts's. */
export function checkShared(c: SharedChecks, raw: unknown, hasStore: boolean, parseListen: (text: string) => ListenAddress | string): SharedSpec | undefined {
  const sh = c.map(raw, 'cache.shared', ['s3', 'redis', 'peer']);
  if (sh === undefined) return undefined;
  if (!hasStore) c.error('cache.shared', 'needs cache.store: each process keeps its own disk store as the first level, the shared one is the second');
  if (sh.s3 == null && sh.redis == null) c.error('cache.shared', 'names neither s3 nor redis: set s3 (a shared bucket), redis (shared coordination), or both');
  const s3 = checkS3(c, sh.s3);
  const r = c.map(sh.redis, 'cache.shared.redis', ['url']);
  const redisUrl = r && c.str(r.url, 'cache.shared.redis.url', true);
  const parsedRedis = redisUrl === undefined ? undefined : checkUrl(c, redisUrl, 'cache.shared.redis.url', ['redis:', 'rediss:']);
  // Without a host the client would pick its own default (localhost): a host nobody configured.
  if (parsedRedis !== undefined && parsedRedis.hostname === '') c.error('cache.shared.redis.url', 'names no host: redis://[:password@]host:port[/db]');
  const redis = redisUrl !== undefined ? { url: redisUrl } : undefined;
  const peer = checkPeer(c, sh.peer, parseListen);
  if (sh.peer != null && sh.redis == null) c.error('cache.shared.peer', 'needs cache.shared.redis: peers find the process fetching a blob through its lease there');
  if (s3?.maxBytes !== undefined && sh.redis == null) c.error('cache.shared.s3.maxBytes', 'needs cache.shared.redis: one process at a time evicts the bucket, chosen by a lease there');
  return { ...(s3 ? { s3 } : {}), ...(redis ? { redis } : {}), ...(peer ? { peer } : {}) };
}

function checkS3(c: SharedChecks, raw: unknown): SharedSpec['s3'] {
  const at = 'cache.shared.s3';
  const s = c.map(raw, at, ['endpoint', 'region', 'bucket', 'prefix', 'forcePathStyle', 'credentials', 'maxBytes', 'redirect']);
  if (s === undefined) return undefined;
  const endpoint = c.str(s.endpoint, `${at}.endpoint`);
  if (endpoint !== undefined) checkUrl(c, endpoint, `${at}.endpoint`, ['https:', 'http:']);
  const region = c.str(s.region, `${at}.region`) ?? 'us-east-1';
  const bucket = c.str(s.bucket, `${at}.bucket`, true);
  if (bucket !== undefined && !isBucketName(bucket)) c.error(`${at}.bucket`, `is not a valid bucket name: ${JSON.stringify(bucket)} (3-63 lower-case letters, digits, "." and "-", no "..", not an IP address)`);
  const prefix = c.str(s.prefix, `${at}.prefix`) ?? '';
  if (prefix.startsWith('/') || prefix.includes('//') || prefix.split('/').some((p) => p === '.' || p === '..') || /[\\\0-\x1f]/.test(prefix)) {
    c.error(`${at}.prefix`, `must be a relative key prefix like "prod/", got ${JSON.stringify(prefix)}`);
  }
  const forcePathStyle = c.bool(s.forcePathStyle, `${at}.forcePathStyle`, false);
  const cr = c.map(s.credentials, `${at}.credentials`, ['accessKeyId', 'secretAccessKey', 'sessionToken']);
  const accessKeyId = cr && c.str(cr.accessKeyId, `${at}.credentials.accessKeyId`, true);
  const secretAccessKey = cr && c.str(cr.secretAccessKey, `${at}.credentials.secretAccessKey`, true);
  const sessionToken = cr && c.str(cr.sessionToken, `${at}.credentials.sessionToken`);
  const credentials = accessKeyId !== undefined && secretAccessKey !== undefined ? { accessKeyId, secretAccessKey, ...(sessionToken !== undefined ? { sessionToken } : {}) } : undefined;
  const maxBytes = s.maxBytes == null ? undefined : c.positiveInt(s.maxBytes, `${at}.maxBytes`, undefined);
  const redirect = c.bool(s.redirect, `${at}.redirect`, false);
  if (bucket === undefined) return undefined;
  return { ...(endpoint !== undefined ? { endpoint } : {}), region, bucket, prefix: prefix === '' || prefix.endsWith('/') ? prefix : `${prefix}/`, forcePathStyle, ...(credentials ? { credentials } : {}), ...(maxBytes !== undefined ? { maxBytes } : {}), redirect };
}

function checkPeer(c: SharedChecks, raw: unknown, parseListen: (text: string) => ListenAddress | string): SharedSpec['peer'] {
  const at = 'cache.shared.peer';
  const p = c.map(raw, at, ['listen', 'advertise', 'token', 'ca']);
  if (p === undefined) return undefined;
  const listenText = c.str(p.listen, `${at}.listen`, true);
  const listen = listenText === undefined ? undefined : parseListen(listenText);
  if (typeof listen === 'string') c.error(`${at}.listen`, listen);
  const advertise = c.str(p.advertise, `${at}.advertise`, true);
  if (advertise !== undefined) {
    const u = checkUrl(c, advertise, `${at}.advertise`, ['https:', 'http:']);
    if (u !== undefined && (u.pathname !== '/' || u.search !== '' || u.hash !== '' || u.username !== '' || u.password !== '')) c.error(`${at}.advertise`, 'must be scheme://host:port only (no path, query or credentials)');
  }
  const token = c.str(p.token, `${at}.token`, true);
  if (token !== undefined && token.length < MIN_PEER_TOKEN_CHARS) c.error(`${at}.token`, `must be at least ${MIN_PEER_TOKEN_CHARS} characters (a shared secret, e.g. openssl rand -hex 32)`);
  const ca = c.str(p.ca, `${at}.ca`);
  if (listen === undefined || typeof listen === 'string' || advertise === undefined || token === undefined) return undefined;
  return { listen, advertise: advertise.replace(/\/+$/, ''), token, ...(ca !== undefined ? { ca } : {}) };
}

function checkUrl(c: SharedChecks, text: string, at: string, schemes: readonly string[]): URL | undefined {
  let u: URL;
  try {
    u = new URL(text);
  } catch {
    // Up to the last "@": a password may hold "/" (base64), and it must not reach the message.
    c.error(at, `not a URL: ${JSON.stringify(text.replace(/\/\/.*@/s, '//…@'))}`);
    return undefined;
  }
  if (!schemes.includes(u.protocol)) {
    c.error(at, `must be ${schemes.map((s) => `${s}//`).join(' or ')}, got ${u.protocol}`);
    return undefined;
  }
  return u;
}

/** S3's bucket naming rules: 3-63 lower-case letters, digits, dots and hyphens, starting and ending with a letter or digit, no two dots in a row, not shaped like an IPv4 address. */
function isBucketName(name: string): boolean {
  return /^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/.test(name) && !name.includes('..') && !/^\d+\.\d+\.\d+\.\d+$/.test(name);
}
