/**
 * Validation of the parsed (and ${ENV}-expanded) YAML tree against the schema
 * of sigil.example.yaml. Hand-written, like fastify's build-validation with
 * `additionalProperties: false`: unknown keys are refused at every level, and
 * every problem is collected with its YAML path (not just the first).
 *
 * The output `ConfigSpec` holds normalized values with defaults applied; parts
 * that failed validation are left out or hold placeholders, so it is only
 * meaningful when no problem has severity 'error'. `compile.ts` then reads the
 * files it names.
 */
import { isIP } from 'node:net';
import type { ConfigProblem, ListenAddress, Mode, TlogMode } from './types.js';
import { exactRegExp, globLiteralHost, globProblem, isFullyAnchored } from './glob.js';
import { checkAttestations } from './attestations.js';
import type { AttestationRequirement } from './types.js';
import { checkShared, type SharedSpec } from './shared-schema.js';
import { checkTuf, type TufSpec } from './tuf-schema.js';

export const PINO_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;
const MODES: readonly Mode[] = ['enforce', 'warn', 'off'];
const TLOG_MODES: readonly TlogMode[] = ['require', 'ignore'];
export const DEFAULT_LISTEN: ListenAddress = { host: '0.0.0.0', port: 5000 };
export const DEFAULT_PREDICATE_TYPES: readonly string[] = ['https://sigstore.dev/cosign/sign/v1'];
export const DEFAULT_TRUSTED_ROOT = 'public-good';
/** Enough verdicts for a busy cluster's working set of digests; each entry is small. */
export const DEFAULT_VERIFICATION_MAX_ENTRIES = 10_000;
/** Re-check verified results every 10 minutes so a revoked key stops passing soon. */
export const DEFAULT_VERIFICATION_TTL_MS = 10 * 60_000;
/** Without `threshold`, any one authority that verifies is enough. */
export const DEFAULT_THRESHOLD = 1;
/** Policies with no `mode` fail closed. */
export const DEFAULT_MODE: Mode = 'enforce';
/** How long a tag → digest answer is reused before the upstream is asked again (a HEAD). */
export const DEFAULT_TAG_TTL_MS = 30_000;
/** Manifests kept in memory by digest, in bytes. */
export const DEFAULT_MANIFEST_CACHE_BYTES = 64 * 1024 * 1024;

const DURATION_UNIT_MS: Readonly<Record<string, number>> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };
/** A registry host as an upstream's name (and an alias) is written: lowercase, an optional port. */
export const REGISTRY_HOST = /^[a-z0-9](?:[a-z0-9.-]*[a-z0-9])?(?::\d{1,5})?$/;
const HOSTNAME = /^[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?$/;
const MAX_PORT = 65_535;

export type AuthoritySpec =
  | { kind: 'key'; at: string; key: string; tlog: TlogMode }
  | { kind: 'keyless'; at: string; issuer: RegExp; subject: RegExp; issuerText: string; subjectText: string };
export interface PolicySpec {
  at: string; name: string; match: string[]; mode: Mode; signatureRepository?: string;
  authorities: AuthoritySpec[]; annotations: Record<string, string>; predicateTypes: string[]; threshold: number;
  attestations: AttestationRequirement[];
}
export interface UpstreamSpec {
  at: string; name: string; aliases: string[]; url: string; credentials?: { username: string; password: string };
  tls?: { ca?: string; insecureSkipVerify: boolean }; staleIfError: boolean; verifyBlobDigests: boolean;
}
export interface ConfigSpec {
  server: { listen: ListenAddress; tls?: { cert: string; key: string }; auth?: { htpasswd: string }; logLevel: string };
  upstreams: UpstreamSpec[];
  defaultUpstream?: string;
  /** Entries as written, with the YAML path of each (for file problems). */
  trustedRoot: { at: string; value: string }[];
  tuf?: TufSpec;
  policies: PolicySpec[];
  cache: {
    verifications: { maxEntries: number; ttlMs: number };
    store?: { dir: string; maxBytes: number };
    tags: { ttlMs: number };
    manifests: { maxBytes: number };
    shared?: SharedSpec;
  };
}

export const join = (path: string, key: string | number): string =>
  typeof key === 'number' ? `${path}[${key}]` : path === '' ? key : /^[A-Za-z_][\w-]*(?:\.[A-Za-z_][\w-]*)*$/.test(key) ? `${path}.${key}` : `${path}[${JSON.stringify(key)}]`;

function describe(v: unknown): string {
  if (v === null || v === undefined) return 'nothing';
  if (Array.isArray(v)) return 'a list';
  if (typeof v === 'object') return 'a mapping';
  return typeof v === 'string' ? `the string ${JSON.stringify(v)}` : `the ${typeof v} ${String(v)}`;
}

/** Optimal-string-alignment distance (a transposition costs 1: "mdoe" → "mode"). */
function distance(a: string, b: string): number {
  const d = Array.from({ length: a.length + 1 }, (_, i) => Array.from({ length: b.length + 1 }, (_, j) => (i === 0 ? j : j === 0 ? i : 0)));
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      d[i][j] = Math.min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) d[i][j] = Math.min(d[i][j], d[i - 2][j - 2] + 1);
    }
  }
  return d[a.length][b.length];
}

function suggestion(key: string, known: readonly string[]): string {
  const best = known.map((k) => ({ k, d: distance(key.toLowerCase(), k.toLowerCase()) })).sort((x, y) => x.d - y.d)[0];
  return best !== undefined && best.d <= Math.max(1, Math.min(2, Math.floor(key.length / 3))) ? ` (did you mean '${best.k}'?)` : '';
}

/** Collects problems; one per validation run (no module-level state). */
class Checker {
  readonly problems: ConfigProblem[] = [];
  error(path: string, message: string): void { this.problems.push({ path, message, severity: 'error' }); }
  warn(path: string, message: string): void { this.problems.push({ path, message, severity: 'warning' }); }

  /** A mapping holding only `keys`; null/absent gives undefined without a problem unless required. */
  map(v: unknown, path: string, keys: readonly string[] | 'any', required = false): Record<string, unknown> | undefined {
    if (v === undefined || v === null) {
      if (required) this.error(path, v === null ? 'is empty' : 'is required');
      return undefined;
    }
    if (typeof v !== 'object' || Array.isArray(v)) return void this.error(path, `must be a mapping, got ${describe(v)}`);
    const m = v as Record<string, unknown>;
    if (keys !== 'any') for (const k of Object.keys(m)) if (!keys.includes(k)) this.error(join(path, k), `unknown key${suggestion(k, keys)}`);
    return m;
  }
  list(v: unknown, path: string): unknown[] | undefined {
    if (v === undefined || v === null) return undefined;
    return Array.isArray(v) ? v : void this.error(path, `must be a list, got ${describe(v)}`);
  }
  str(v: unknown, path: string, required = false): string | undefined {
    if (v === undefined || v === null) return required ? void this.error(path, v === null ? 'is empty' : 'is required') : undefined;
    if (typeof v !== 'string') return void this.error(path, `must be a string, got ${describe(v)}${typeof v === 'number' ? ' (quote it)' : ''}`);
    return v === '' ? void this.error(path, 'must not be empty') : v;
  }
  bool(v: unknown, path: string, dflt: boolean): boolean {
    if (v === undefined || v === null) return dflt;
    return typeof v === 'boolean' ? v : (this.error(path, `must be true or false, got ${describe(v)}`), dflt);
  }
  oneOf<T extends string>(v: unknown, path: string, allowed: readonly T[], dflt: T): T {
    const s = this.str(v, path);
    if (s === undefined) return dflt;
    if ((allowed as readonly string[]).includes(s)) return s as T;
    this.error(path, `must be one of ${allowed.join(', ')}, got ${JSON.stringify(s)}${suggestion(s, allowed)}`);
    return dflt;
  }
  positiveInt(v: unknown, path: string, dflt: number | undefined): number {
    if (v === undefined || v === null) return dflt ?? (this.error(path, 'is required'), 0);
    if (typeof v === 'number' && Number.isSafeInteger(v) && v > 0) return v;
    this.error(path, `must be a positive integer, got ${describe(v)}`);
    return 0;
  }
  /** A duration (parseDuration) in ms; `dflt` when absent, 0 after a problem. */
  duration(v: unknown, path: string, dflt: number): number {
    if (v === undefined || v === null) return dflt;
    const ms = parseDuration(v);
    return typeof ms === 'string' ? (this.error(path, ms), 0) : ms;
  }
  regExp(text: string, path: string): RegExp {
    try {
      const re = new RegExp(text);
      if (!isFullyAnchored(text)) {
        this.warn(path, `pattern ${JSON.stringify(text)} is not anchored as ^...$: an unanchored pattern also matches values that merely contain a match, e.g. https://github.com/acme-evil/… for "https://github.com/acme"`);
      }
      return re;
    } catch (e) {
      this.error(path, `invalid regular expression: ${(e as Error).message}`);
      return /(?!)/;
    }
  }
}

export function parseListen(text: string): ListenAddress | string {
  const m = /^(?:\[([^\]]*)\]|([^:[\]]+)):(\d{1,5})$/.exec(text);
  if (m === null) return 'expected host:port, e.g. 0.0.0.0:5000 or [::]:5000';
  const host = m[1] ?? m[2];
  if (m[1] !== undefined && isIP(m[1]) !== 6) return `${JSON.stringify(m[1])} is not an IPv6 address`;
  if (m[2] !== undefined && isIP(m[2]) !== 4 && !HOSTNAME.test(m[2])) return `${JSON.stringify(m[2])} is not a host name or IPv4 address`;
  const port = Number(m[3]);
  return port > MAX_PORT ? `port ${port} is out of range (0-${MAX_PORT})` : { host, port };
}

/**
 * `10m`, `30s`, `1h30m`, `500ms`, or a number of seconds; whole milliseconds, or a message. Never
 * 0: a TTL of 0 would mean none at all (kept for ever), a refresh of 0 one after the other.
 */
export function parseDuration(v: unknown): number | string {
  if (typeof v === 'number' && !(Number.isFinite(v) && v > 0)) return 'must be a positive number of seconds';
  if (typeof v !== 'number' && (typeof v !== 'string' || !/^(?:\d+(?:\.\d+)?(?:ms|s|m|h))+$/.test(v))) return `must be a duration like 30s, 10m, 1h or 500ms, got ${describe(v)}`;
  let ms = 0;
  if (typeof v === 'number') ms = v * 1000;
  else for (const [, n, unit] of v.matchAll(/(\d+(?:\.\d+)?)(ms|s|m|h)/g)) ms += Number(n) * DURATION_UNIT_MS[unit];
  if (ms <= 0) return 'must be longer than zero';
  return Math.round(ms) >= 1 ? Math.round(ms) : `must be at least 1ms, got ${describe(v)}`;
}

function checkUpstream(c: Checker, raw: unknown, at: string): UpstreamSpec | undefined {
  const u = c.map(raw, at, ['name', 'aliases', 'url', 'credentials', 'tls', 'staleIfError', 'verifyBlobDigests'], true);
  if (u === undefined) return undefined;
  const name = c.str(u.name, join(at, 'name'), true);
  if (name !== undefined && !REGISTRY_HOST.test(name)) c.error(join(at, 'name'), `must be a lowercase registry host like ghcr.io or registry.internal:5000, got ${JSON.stringify(name)}`);
  const aliases = (c.list(u.aliases, join(at, 'aliases')) ?? []).map((a, i) => {
    const alias = c.str(a, join(join(at, 'aliases'), i), true);
    if (alias !== undefined && !REGISTRY_HOST.test(alias)) c.error(join(join(at, 'aliases'), i), `must be a lowercase name like ghcr or registry.internal, got ${JSON.stringify(alias)}`);
    return alias ?? '';
  });
  const urlText = c.str(u.url, join(at, 'url'), true);
  let url: URL | undefined;
  if (urlText !== undefined) {
    try { url = new URL(urlText); } catch { c.error(join(at, 'url'), `not a URL: ${JSON.stringify(urlText)}`); }
    if (url !== undefined && url.protocol !== 'https:' && url.protocol !== 'http:') c.error(join(at, 'url'), `must be http:// or https://, got ${url.protocol}`);
    else if (url !== undefined && (url.pathname !== '/' || /[?#]/.test(urlText))) c.error(join(at, 'url'), 'must have no path, query or fragment (sigil adds /v2/ itself)');
    else if (url !== undefined && (url.username !== '' || url.password !== '')) c.error(join(at, 'url'), 'must not hold credentials; use credentials.username/password');
  }
  const cr = c.map(u.credentials, join(at, 'credentials'), ['username', 'password']);
  const username = cr && c.str(cr.username, join(at, 'credentials.username'), true);
  const password = cr && c.str(cr.password, join(at, 'credentials.password'), true);
  const t = c.map(u.tls, join(at, 'tls'), ['ca', 'insecureSkipVerify']);
  const tls = t && { ca: c.str(t.ca, join(at, 'tls.ca')), insecureSkipVerify: c.bool(t.insecureSkipVerify, join(at, 'tls.insecureSkipVerify'), false) };
  if (tls?.insecureSkipVerify === true) c.warn(join(at, 'tls.insecureSkipVerify'), 'TLS certificates of this upstream are not verified: anyone on the network path can impersonate it');
  const staleIfError = c.bool(u.staleIfError, join(at, 'staleIfError'), true);
  const verifyBlobDigests = c.bool(u.verifyBlobDigests, join(at, 'verifyBlobDigests'), true);
  if (name === undefined || url === undefined) return undefined;
  const credentials = username !== undefined && password !== undefined ? { username, password } : undefined;
  return { at, name, aliases, url: url.origin, credentials, tls, staleIfError, verifyBlobDigests };
}

function checkAuthority(c: Checker, raw: unknown, at: string): AuthoritySpec | undefined {
  const a = c.map(raw, at, ['key', 'tlog', 'keyless'], true);
  if (a === undefined) return undefined;
  const has = (k: string): boolean => a[k] !== undefined && a[k] !== null;
  if (has('key') === has('keyless')) return void c.error(at, 'needs exactly one of key or keyless');
  if (has('key')) {
    const key = c.str(a.key, join(at, 'key'), true);
    const tlog = c.oneOf(a.tlog, join(at, 'tlog'), TLOG_MODES, 'require');
    return key === undefined ? undefined : { kind: 'key', at, key, tlog };
  }
  if (has('tlog')) c.error(join(at, 'tlog'), 'applies only to key authorities (keyless certificates are short-lived and always need a transparency log entry)');
  const k = c.map(a.keyless, join(at, 'keyless'), ['issuer', 'issuerRegExp', 'subject', 'subjectRegExp']);
  if (k === undefined) return undefined;
  const identity = (exact: string, re: string): { re: RegExp; text: string } | undefined => {
    const given = (x: string): boolean => k[x] !== undefined && k[x] !== null;
    if (given(exact) === given(re)) return void c.error(join(at, 'keyless'), `needs exactly one of ${exact} or ${re}`);
    const [e, r] = [c.str(k[exact], join(at, `keyless.${exact}`)), c.str(k[re], join(at, `keyless.${re}`))];
    if (e === undefined && r === undefined) return undefined;
    return e !== undefined ? { re: exactRegExp(e), text: e } : { re: c.regExp(r as string, join(at, `keyless.${re}`)), text: r as string };
  };
  const [issuer, subject] = [identity('issuer', 'issuerRegExp'), identity('subject', 'subjectRegExp')];
  if (issuer === undefined || subject === undefined) return undefined;
  return { kind: 'keyless', at, issuer: issuer.re, subject: subject.re, issuerText: issuer.text, subjectText: subject.text };
}

/**
 * Every routing name — upstream names, then their aliases; as written, even of otherwise invalid
 * upstreams, so one mistake is not reported twice — mapped to the name of its upstream. A name
 * routes to one upstream only.
 */
function routingNames(c: Checker, upRaw: readonly unknown[]): Map<string, string> {
  const names = new Map<string, string>();
  const written = upRaw.map((u) => (u !== null && typeof u === 'object' ? (u as { name?: unknown; aliases?: unknown }) : {}));
  written.forEach((u, i) => {
    if (typeof u.name !== 'string') return;
    if (names.has(u.name)) c.error(join(join('upstreams', i), 'name'), `duplicate upstream name ${JSON.stringify(u.name)}`);
    else names.set(u.name, u.name);
  });
  written.forEach((u, i) => {
    if (typeof u.name !== 'string' || !Array.isArray(u.aliases)) return;
    u.aliases.forEach((alias: unknown, j) => {
      if (typeof alias !== 'string') return;
      const owner = names.get(alias);
      const at = join(join(join('upstreams', i), 'aliases'), j);
      if (owner === undefined) names.set(alias, u.name as string);
      else if (alias === u.name) c.error(at, `${JSON.stringify(alias)} is this upstream's own name`);
      else c.error(at, owner === u.name ? `${JSON.stringify(alias)} is listed twice` : `${JSON.stringify(alias)} is already a name of upstream ${JSON.stringify(owner)}`);
    });
  });
  return names;
}

/** `upstreamNames`: every routing name → its upstream's name (routingNames). */
function checkPolicy(c: Checker, raw: unknown, at: string, upstreamNames: ReadonlyMap<string, string>): PolicySpec | undefined {
  const p = c.map(raw, at, ['name', 'match', 'mode', 'signatureRepository', 'authorities', 'annotations', 'predicateTypes', 'threshold', 'attestations'], true);
  if (p === undefined) return undefined;
  const name = c.str(p.name, join(at, 'name'), true);
  const matchRaw = typeof p.match === 'string' ? [p.match] : c.list(p.match, join(at, 'match'));
  if (matchRaw === undefined || matchRaw.length === 0) c.error(join(at, 'match'), p.match === undefined ? 'is required' : 'must list at least one pattern');
  const match: string[] = [];
  (matchRaw ?? []).forEach((g, i) => {
    const gat = typeof p.match === 'string' ? join(at, 'match') : join(join(at, 'match'), i);
    const glob = c.str(g, gat, true);
    const why = glob === undefined ? undefined : globProblem(glob);
    if (why !== undefined) c.error(gat, why);
    else if (glob !== undefined) {
      match.push(glob);
      const host = globLiteralHost(glob);
      const owner = host === undefined ? undefined : upstreamNames.get(host);
      if (host !== undefined && owner === undefined) c.warn(gat, `no upstream is named ${JSON.stringify(host)}, so this pattern matches nothing (patterns match "<upstream name>/<repository>")`);
      else if (owner !== undefined && owner !== host) c.warn(gat, `${JSON.stringify(host)} is an alias of upstream ${JSON.stringify(owner)}: patterns match the upstream's name, so this one matches nothing (write ${JSON.stringify(owner)})`);
    }
  });
  const mode = c.oneOf(p.mode, join(at, 'mode'), MODES, DEFAULT_MODE);
  let signatureRepository = c.str(p.signatureRepository, join(at, 'signatureRepository'));
  if (signatureRepository !== undefined && !/^[^\s/@]+(?:\/[^\s/@:]+)*$/.test(signatureRepository)) c.error(join(at, 'signatureRepository'), 'must be a repository like ghcr.io/acme/signatures (no tag or digest)');
  // `<alias>/<repo>` is `<upstream name>/<repo>`: signatures are looked up under the upstream's name.
  const [srHost, ...srRest] = signatureRepository?.split('/') ?? [];
  const srOwner = srHost === undefined ? undefined : upstreamNames.get(srHost);
  if (srOwner !== undefined && srRest.length > 0) signatureRepository = [srOwner, ...srRest].join('/');
  const authRaw = c.list(p.authorities, join(at, 'authorities')) ?? [];
  if (authRaw.length === 0 && mode !== 'off') c.error(join(at, 'authorities'), `mode ${mode} needs at least one authority (or use mode: off)`);
  const authorities = authRaw.map((a, i) => checkAuthority(c, a, join(join(at, 'authorities'), i))).filter((a) => a !== undefined);
  const annotations: Record<string, string> = {};
  for (const [k, v] of Object.entries(c.map(p.annotations, join(at, 'annotations'), 'any') ?? {})) {
    const s = c.str(v, join(join(at, 'annotations'), k), true);
    if (s !== undefined) annotations[k] = s;
  }
  const ptRaw = c.list(p.predicateTypes, join(at, 'predicateTypes'));
  if (ptRaw !== undefined && ptRaw.length === 0) c.error(join(at, 'predicateTypes'), 'must list at least one predicate type (omit it for the default)');
  const predicateTypes = (ptRaw ?? [...DEFAULT_PREDICATE_TYPES]).map((t, i) => c.str(t, join(join(at, 'predicateTypes'), i), true) ?? '');
  const threshold = c.positiveInt(p.threshold, join(at, 'threshold'), DEFAULT_THRESHOLD);
  if (threshold > authRaw.length && (authRaw.length > 0 || p.threshold !== undefined)) {
    c.error(join(at, 'threshold'), `${threshold} distinct authorities must verify, but the policy lists ${authRaw.length}`);
  }
  const attestations = checkAttestations(c, p.attestations, join(at, 'attestations'));
  if (name === undefined) return undefined;
  return { at, name, match, mode, signatureRepository, authorities, annotations, predicateTypes, threshold, attestations };
}

/** Validates a parsed config tree; see the file comment. */
export function validateConfig(raw: unknown): { spec: ConfigSpec; problems: ConfigProblem[] } {
  const c = new Checker();
  const root = c.map(raw, '', ['server', 'upstreams', 'defaultUpstream', 'trust', 'policies', 'cache'], true);
  if (root === undefined) return { spec: validateConfig({}).spec, problems: [{ path: '', message: raw === null || raw === undefined ? 'the config is empty' : c.problems[0].message, severity: 'error' }] };

  const s = c.map(root.server, 'server', ['listen', 'tls', 'auth', 'logLevel']) ?? {};
  const listenText = c.str(s.listen, 'server.listen');
  const listen = listenText === undefined ? DEFAULT_LISTEN : parseListen(listenText);
  if (typeof listen === 'string') c.error('server.listen', listen);
  const t = c.map(s.tls, 'server.tls', ['cert', 'key']);
  const [cert, key] = t ? [c.str(t.cert, 'server.tls.cert', true), c.str(t.key, 'server.tls.key', true)] : [];
  const tls = cert !== undefined && key !== undefined ? { cert, key } : undefined;
  const a = c.map(s.auth, 'server.auth', ['htpasswd']);
  const htpasswd = a && c.str(a.htpasswd, 'server.auth.htpasswd', true);
  const auth = htpasswd !== undefined ? { htpasswd } : undefined;
  const logLevel = c.oneOf(s.logLevel, 'server.logLevel', PINO_LEVELS, 'info');

  const upRaw = c.list(root.upstreams, 'upstreams');
  if (upRaw === undefined || upRaw.length === 0) c.error('upstreams', 'must list at least one upstream registry');
  const upstreams = (upRaw ?? []).map((u, i) => checkUpstream(c, u, join('upstreams', i))).filter((u) => u !== undefined);
  const names = routingNames(c, upRaw ?? []);
  const defaultName = c.str(root.defaultUpstream, 'defaultUpstream');
  if (defaultName !== undefined && !names.has(defaultName)) c.error('defaultUpstream', `names no upstream: ${JSON.stringify(defaultName)}${suggestion(defaultName, [...names.keys()])}`);
  // An alias names its upstream: the rest of sigil sees the upstream's name only.
  const defaultUpstream = defaultName === undefined ? undefined : (names.get(defaultName) ?? defaultName);

  const tr = c.map(root.trust, 'trust', ['trustedRoot', 'tuf']) ?? {};
  const trRaw = typeof tr.trustedRoot === 'string' ? [tr.trustedRoot] : c.list(tr.trustedRoot, 'trust.trustedRoot') ?? [DEFAULT_TRUSTED_ROOT];
  if (trRaw.length === 0) c.error('trust.trustedRoot', `must list at least one trusted root (omit it for [${DEFAULT_TRUSTED_ROOT}])`);
  const trustedRoot = trRaw.map((v, i) => {
    const at = typeof tr.trustedRoot === 'string' ? 'trust.trustedRoot' : join('trust.trustedRoot', i);
    return { at, value: c.str(v, at, true) ?? '' };
  }).filter((e, i, all) => e.value !== '' && all.findIndex((x) => x.value === e.value) === i);

  const tuf = checkTuf(c, tr.tuf, (root.cache as { store?: unknown } | null | undefined)?.store != null);

  const polRaw = c.list(root.policies, 'policies') ?? [];
  const policies = polRaw.map((p, i) => checkPolicy(c, p, join('policies', i), names)).filter((p) => p !== undefined);
  const seen = new Set<string>();
  polRaw.forEach((p, i) => {
    const n = (p as { name?: unknown } | null)?.name;
    if (typeof n === 'string' && seen.has(n)) c.error(join(join('policies', i), 'name'), `duplicate policy name ${JSON.stringify(n)}`);
    if (typeof n === 'string') seen.add(n);
  });

  const ca = c.map(root.cache, 'cache', ['verifications', 'store', 'tags', 'manifests', 'shared']) ?? {};
  const v = c.map(ca.verifications, 'cache.verifications', ['maxEntries', 'ttl']) ?? {};
  const maxEntries = c.positiveInt(v.maxEntries, 'cache.verifications.maxEntries', DEFAULT_VERIFICATION_MAX_ENTRIES);
  const ttl = v.ttl === undefined || v.ttl === null ? DEFAULT_VERIFICATION_TTL_MS : parseDuration(v.ttl);
  if (typeof ttl === 'string') c.error('cache.verifications.ttl', ttl);
  const st = c.map(ca.store, 'cache.store', ['dir', 'maxBytes']);
  const [dir, maxBytes] = st ? [c.str(st.dir, 'cache.store.dir', true), c.positiveInt(st.maxBytes, 'cache.store.maxBytes', undefined)] : [];
  const store = dir !== undefined && maxBytes !== undefined ? { dir, maxBytes } : undefined;
  const tg = c.map(ca.tags, 'cache.tags', ['ttl']) ?? {};
  const tagTtl = tg.ttl === undefined || tg.ttl === null ? DEFAULT_TAG_TTL_MS : parseDuration(tg.ttl);
  if (typeof tagTtl === 'string') c.error('cache.tags.ttl', tagTtl);
  const mf = c.map(ca.manifests, 'cache.manifests', ['maxBytes']) ?? {};
  const manifestBytes = c.positiveInt(mf.maxBytes, 'cache.manifests.maxBytes', DEFAULT_MANIFEST_CACHE_BYTES) ?? DEFAULT_MANIFEST_CACHE_BYTES;
  const shared = checkShared(c, ca.shared, st !== undefined, parseListen);

  const spec: ConfigSpec = {
    server: { listen: typeof listen === 'string' ? DEFAULT_LISTEN : listen, tls, auth, logLevel },
    upstreams, defaultUpstream, trustedRoot, tuf, policies,
    cache: {
      verifications: { maxEntries, ttlMs: typeof ttl === 'string' ? 0 : ttl },
      store,
      tags: { ttlMs: typeof tagTtl === 'string' ? 0 : tagTtl },
      manifests: { maxBytes: manifestBytes },
      ...(shared ? { shared } : {}),
    },
  };
  return { spec, problems: c.problems };
}
