import { TOKEN_DEFAULT_EXPIRES_IN_S, TOKEN_EXPIRY_MARGIN_MS } from './limits.js';
import { tryParseJson } from '../oci/json.js';

/**
 * The pure half of registry authentication: WWW-Authenticate parsing (RFC 9110 challenges),
 * the pull scope of a repository, and token answers. No I/O here.
 */

/** One challenge of a WWW-Authenticate header. Scheme and parameter names are lower-cased. */
export interface Challenge {
  readonly scheme: string;
  /** Parameter values unquoted and unescaped; a repeated parameter keeps its first value. */
  readonly params: Readonly<Record<string, string>>;
  readonly token68?: string;
}

// RFC 9110 5.6.2 tchar
const TCHAR_RE = /[!#$%&'*+\-.^_`|~0-9A-Za-z]/;
// RFC 9110 11.2 token68
const TOKEN68_RE = /^[A-Za-z0-9\-._~+/]+=*/;

/**
 * Parses WWW-Authenticate (RFC 9110 11.6.1): several challenges per header or
 * several headers, quoted strings with commas and backslash escapes, spaces
 * around "=", unquoted values. Never throws; junk is skipped.
 */
export function parseWwwAuthenticate(header: string | readonly string[] | undefined): Challenge[] {
  if (header === undefined) return [];
  if (typeof header !== 'string') return header.flatMap((h) => parseOne(h));
  return parseOne(header);
}

function parseOne(s: string): Challenge[] {
  const out: Array<{ scheme: string; params: Record<string, string>; token68?: string }> = [];
  const n = s.length;
  let i = 0;
  const skipWs = (): void => {
    while (i < n && (s[i] === ' ' || s[i] === '\t')) i++;
  };
  const readToken = (): string => {
    const start = i;
    while (i < n && TCHAR_RE.test(s[i])) i++;
    return s.slice(start, i);
  };
  const readQuoted = (): string => {
    i++; // opening quote
    let v = '';
    while (i < n && s[i] !== '"') {
      if (s[i] === '\\' && i + 1 < n) i++;
      v += s[i];
      i++;
    }
    if (i < n) i++; // closing quote; an unterminated string takes the rest
    return v;
  };
  const readBare = (): string => {
    // lenient: a bare value runs to the next comma or space (realm=https://x/token)
    const start = i;
    while (i < n && s[i] !== ',' && s[i] !== ' ' && s[i] !== '\t') i++;
    return s.slice(start, i);
  };

  let current: (typeof out)[number] | undefined;
  while (i < n) {
    skipWs();
    if (i >= n) break;
    if (s[i] === ',') {
      i++;
      continue;
    }
    const tok = readToken();
    if (tok === '') {
      if (s[i] === '"') readQuoted();
      else i++;
      continue;
    }
    skipWs();
    if (s[i] === '=') {
      i++;
      skipWs();
      const value = s[i] === '"' ? readQuoted() : readBare();
      const key = tok.toLowerCase();
      if (current !== undefined && !Object.hasOwn(current.params, key)) current.params[key] = value;
      continue;
    }
    current = { scheme: tok.toLowerCase(), params: Object.create(null) as Record<string, string> };
    out.push(current);
    const m = TOKEN68_RE.exec(s.slice(i));
    if (m) {
      let j = i + m[0].length;
      while (j < n && (s[j] === ' ' || s[j] === '\t')) j++;
      if (j >= n || s[j] === ',') {
        current.token68 = m[0];
        i = j;
      }
    }
  }
  return out;
}

/** The scope of a pull from one repository (Docker token spec "Scope"). */
export function pullScope(repository: string): string {
  return `repository:${repository}:pull`;
}

/** A usable Bearer challenge: an http(s) realm without user info. */
export interface BearerChallenge {
  readonly realm: URL;
  readonly service?: string;
  readonly scope?: string;
}

export function bearerChallenge(challenges: readonly Challenge[]): BearerChallenge | undefined {
  for (const c of challenges) {
    if (c.scheme !== 'bearer') continue;
    const realmText = c.params.realm;
    if (realmText === undefined) continue;
    let realm: URL;
    try {
      realm = new URL(realmText);
    } catch {
      continue;
    }
    if ((realm.protocol !== 'https:' && realm.protocol !== 'http:') || realm.username !== '' || realm.password !== '') {
      continue;
    }
    const service = c.params.service;
    const scope = c.params.scope;
    return {
      realm,
      ...(service !== undefined && service !== '' ? { service } : {}),
      ...(scope !== undefined && scope !== '' ? { scope } : {}),
    };
  }
  return undefined;
}

/** A token answer: `token` or (OAuth2) `access_token`, `expires_in` seconds. */
export interface TokenAnswer {
  readonly token: string;
  readonly expiresInS: number;
}

// A token goes into an Authorization header: visible ASCII only.
const TOKEN_RE = /^[\x21-\x7e]+$/;

/** Parses a token server's JSON answer, or undefined when it holds no usable token. */
export function parseTokenAnswer(body: Buffer): TokenAnswer | undefined {
  const parsed = tryParseJson(body);
  if (typeof parsed !== 'object' || parsed === null) return undefined;
  const o = parsed as { token?: unknown; access_token?: unknown; expires_in?: unknown };
  const token = typeof o.token === 'string' && o.token !== '' ? o.token : o.access_token;
  if (typeof token !== 'string' || !TOKEN_RE.test(token)) return undefined;
  const e = o.expires_in;
  const expiresInS = typeof e === 'number' && Number.isFinite(e) && e > 0 ? e : TOKEN_DEFAULT_EXPIRES_IN_S;
  return { token, expiresInS };
}

/** How long a token is used: its lifetime minus a margin (at least half its lifetime). */
export function tokenTtlMs(expiresInS: number): number {
  const lifetime = expiresInS * 1000;
  return Math.max(lifetime - TOKEN_EXPIRY_MARGIN_MS, lifetime / 2);
}
