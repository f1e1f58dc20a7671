/**
 * Turns a validated `ConfigSpec` into the deep-frozen `Config`: reads every
 * file the config names (TLS PEMs, htpasswd, CA bundles, public keys, trusted
 * roots) once, at load time, compiles globs to anchored RegExps and computes
 * policy fingerprints. Problems carry the YAML path of the value that named
 * the file, plus the OS error or the file:line at fault.
 */
import { createHash, createPrivateKey, createPublicKey, X509Certificate, type KeyObject } from 'node:crypto';
import { join as joinPath, resolve } from 'node:path';
import type { AuthoritySpec, ConfigSpec, PolicySpec } from './schema.js';
import { DEFAULT_THRESHOLD, DEFAULT_TRUSTED_ROOT, join } from './schema.js';
import { compileGlob } from './glob.js';
import { readConfigFile } from './read-file.js';
import type { Authority, Config, ConfigProblem, Policy, ServerConfig, SharedConfig, TufConfig, UpstreamConfig } from './types.js';
import type { SharedSpec } from './shared-schema.js';

/** RSA keys below this size are breakable; cosign itself refuses to generate them. */
export const MIN_RSA_BITS = 2048;
/** The curves cosign signs with (node's names for NIST P-256 and P-384). */
const EC_CURVES: Readonly<Record<string, string>> = { prime256v1: 'P-256', secp384r1: 'P-384' };
/** bcrypt as `htpasswd -B` writes it: $2y$<cost>$<22 salt + 31 hash chars>. */
const BCRYPT_HASH = /^\$2[aby]\$\d{2}\$[./A-Za-z0-9]{53}$/;
const PEM_BEGIN = /-----BEGIN ([A-Z0-9 ]+)-----/g;

export interface CompileOptions {
  /** Where the config came from: a path or "built-in default". */
  readonly source: string;
  /** Relative file paths resolve against this directory (see load.ts). */
  readonly baseDir: string;
  /** Clock for certificate expiry warnings. */
  readonly now?: () => number;
}

class Problems {
  readonly list: ConfigProblem[] = [];
  error(path: string, message: string): undefined {
    this.list.push({ path, message, severity: 'error' });
    return undefined;
  }
  warn(path: string, message: string): void { this.list.push({ path, message, severity: 'warning' }); }
  async read(path: string, file: string): Promise<string | undefined> {
    try {
      return (await readConfigFile(file)).toString('utf8');
    } catch (e) {
      return this.error(path, `cannot read ${file}: ${(e as Error).message}`);
    }
  }
}

/** A URL whose setters throw: Object.freeze alone does not stop URL setters (they write internal slots). */
function frozenUrl(text: string): URL {
  const url = new URL(text);
  const props: PropertyDescriptorMap = {};
  for (const name of ['href', 'protocol', 'username', 'password', 'host', 'hostname', 'port', 'pathname', 'search', 'hash']) {
    const get = Object.getOwnPropertyDescriptor(URL.prototype, name)?.get;
    props[name] = { get: () => get?.call(url), set: () => { throw new TypeError(`config URL is frozen (set ${name})`); } };
  }
  props.searchParams = { get: () => new URLSearchParams(url.search) };
  return Object.freeze(Object.defineProperties(url, props));
}

/** A Map whose mutators throw, for the frozen config. */
class FrozenMap<K, V> extends Map<K, V> {
  constructor(entries: Iterable<readonly [K, V]>) {
    super();
    for (const [k, v] of entries) super.set(k, v);
    Object.freeze(this);
  }
  override set(_k: K, _v: V): this { throw new TypeError('config map is frozen'); }
  override delete(_k: K): boolean { throw new TypeError('config map is frozen'); }
  override clear(): void { throw new TypeError('config map is frozen'); }
}

/** Freezes plain objects, arrays and RegExps recursively (URLs and maps freeze themselves). */
export function deepFreeze<T>(value: T): T {
  if (value === null || typeof value !== 'object' || Object.isFrozen(value)) return value;
  Object.freeze(value);
  for (const v of Object.values(value)) deepFreeze(v);
  return value;
}

function canonicalJson(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(canonicalJson).join(',')}]`;
  if (v !== null && typeof v === 'object') {
    const o = v as Record<string, unknown>;
    return `{${Object.keys(o).sort().map((k) => `${JSON.stringify(k)}:${canonicalJson(o[k])}`).join(',')}}`;
  }
  return JSON.stringify(v ?? null);
}

/** sha256 over the policy's semantic content (its name is left out: renaming changes no verdict). */
export function policyFingerprint(p: Omit<Policy, 'fingerprint' | 'name' | 'matchers'>): string {
  const authorities = p.authorities.map((a) =>
    a.kind === 'key' ? { kind: a.kind, pem: a.pem, tlog: a.tlog } : { kind: a.kind, issuer: a.issuer.source, subject: a.subject.source });
  const content = {
    match: p.match, mode: p.mode, signatureRepository: p.signatureRepository ?? null, authorities, annotations: p.annotations, predicateTypes: p.predicateTypes,
    // Left out at its default, so that the fingerprints (and stored verdicts) of policies without one stay as they were.
    ...(p.threshold !== undefined && p.threshold !== DEFAULT_THRESHOLD ? { threshold: p.threshold } : {}),
    ...attestationsPart(p),
  };
  return createHash('sha256').update(canonicalJson(content)).digest('hex');
}

/** What makes two authorities the same one: the same key, or the same identity patterns. */
function authorityIdentity(a: Authority): string {
  return a.kind === 'key' ? `key\n${a.pem}` : `keyless\n${a.issuer.source}\n${a.subject.source}`;
}

/** A threshold counts distinct authorities: listing one twice cannot make up the number. */
function thresholdProblem(s: PolicySpec, authorities: readonly Authority[]): string | undefined {
  // Past the number listed is the schema's error; a key that did not compile has its own.
  if (s.threshold <= 1 || s.threshold > authorities.length || authorities.length !== s.authorities.length) return undefined;
  const first = new Map<string, number>();
  const same: string[] = [];
  authorities.forEach((a, i) => {
    const id = authorityIdentity(a);
    const j = first.get(id);
    if (j === undefined) first.set(id, i);
    else same.push(`authorities[${j}] and [${i}]`);
  });
  if (first.size >= s.threshold) return undefined;
  return `${s.threshold} distinct authorities must verify, but ${same.join(', ')} are the same (${first.size} distinct)`;
}

/**
 * The attestation requirements as they decide: name, predicate types, condition text. Left out
 * when there are none, so that the fingerprints (and stored verdicts) of other policies stay as
 * they were.
 */
function attestationsPart(p: Pick<Policy, 'attestations'>): { attestations?: unknown } {
  const list = p.attestations ?? [];
  if (list.length === 0) return {};
  return { attestations: list.map((a) => ({ name: a.name, predicateTypes: a.predicateTypes, condition: a.condition.text })) };
}

function keyTypeProblem(key: KeyObject): string | undefined {
  const type = key.asymmetricKeyType;
  const details = key.asymmetricKeyDetails ?? {};
  if (type === 'ed25519') return undefined;
  if (type === 'ec') return EC_CURVES[details.namedCurve ?? ''] !== undefined ? undefined : `unsupported EC curve ${details.namedCurve ?? '?'} (sigil verifies P-256 and P-384)`;
  if (type === 'rsa' || type === 'rsa-pss') {
    if ((details.modulusLength ?? 0) < MIN_RSA_BITS) return `RSA key of ${details.modulusLength ?? '?'} bits is too small (minimum ${MIN_RSA_BITS})`;
    const e = details.publicExponent ?? 0n;
    // Under e = 1 anyone can sign (a message's PKCS#1 encoding is its own signature).
    return e >= 3n && e % 2n === 1n ? undefined : `RSA public exponent ${e} is not an odd number of at least 3 (RFC 8017 3.1)`;
  }
  return `unsupported key type ${type ?? '?'} (sigil verifies ECDSA P-256/P-384, RSA and Ed25519)`;
}

async function compileKey(p: Problems, a: Extract<AuthoritySpec, { kind: 'key' }>, baseDir: string): Promise<Authority | undefined> {
  const at = join(a.at, 'key');
  const inline = a.key.trimStart().startsWith('-----BEGIN');
  const source = inline ? 'inline' : resolve(baseDir, a.key);
  const text = inline ? a.key : await p.read(at, source);
  if (text === undefined) return undefined;
  const labels = [...text.matchAll(PEM_BEGIN)].map((m) => m[1]);
  const where = inline ? 'the inline key' : source;
  if (labels.length !== 1) return p.error(at, labels.length === 0 ? `no PEM block in ${where}` : `${where} holds ${labels.length} PEM blocks; give one public key per authority`);
  const label = labels[0];
  if (label.includes('PRIVATE')) return p.error(at, `${where} is a private key ("${label}"); configure the public key (e.g. cosign.pub)`);
  if (label !== 'PUBLIC KEY' && label !== 'RSA PUBLIC KEY') return p.error(at, `${where} is a PEM "${label}", expected "PUBLIC KEY"`);
  let key: KeyObject;
  try {
    key = createPublicKey(text);
  } catch (e) {
    return p.error(at, `${where} is not a valid public key: ${(e as Error).message}`);
  }
  const why = keyTypeProblem(key);
  if (why !== undefined) return p.error(at, `${where}: ${why}`);
  // Normalized to SPKI PEM, an EC point uncompressed (OpenSSL keeps a compressed one as given):
  // the verifier, Sigil-Signer (sha256 of the SPKI DER) and the threshold's check of distinct
  // authorities see one form of one key.
  const spki = key.asymmetricKeyType === 'ec' ? createPublicKey({ key: key.export({ format: 'jwk' }), format: 'jwk' }) : key;
  return { kind: 'key', pem: spki.export({ type: 'spki', format: 'pem' }).toString(), source, tlog: a.tlog };
}

async function compilePolicy(p: Problems, s: PolicySpec, baseDir: string): Promise<Policy> {
  const authorities: Authority[] = [];
  for (const a of s.authorities) {
    const compiled = a.kind === 'key' ? await compileKey(p, a, baseDir) : { kind: a.kind, issuer: a.issuer, subject: a.subject, issuerText: a.issuerText, subjectText: a.subjectText };
    if (compiled !== undefined) authorities.push(compiled);
  }
  const why = thresholdProblem(s, authorities);
  if (why !== undefined) p.error(join(s.at, 'threshold'), why);
  const body = { match: s.match, mode: s.mode, signatureRepository: s.signatureRepository, authorities, annotations: s.annotations, predicateTypes: s.predicateTypes, threshold: s.threshold, attestations: s.attestations };
  return { name: s.name, ...body, matchers: s.match.map(compileGlob), fingerprint: policyFingerprint(body) };
}

function parseHtpasswd(p: Problems, text: string, file: string): Map<string, string> {
  const users = new Map<string, string>();
  text.split(/\r?\n/).forEach((raw, i) => {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) return;
    const at = `${file}:${i + 1}`;
    const colon = line.indexOf(':');
    if (colon <= 0) return p.error('server.auth.htpasswd', `${at}: expected user:hash`);
    const [user, hash] = [line.slice(0, colon), line.slice(colon + 1)];
    if (!BCRYPT_HASH.test(hash)) {
      const kind = hash.startsWith('$apr1$') ? 'Apache MD5 ($apr1$)' : hash.startsWith('{SHA}') ? 'SHA-1 ({SHA})' : /^\$[156]\$/.test(hash) ? 'crypt(3) MD5/SHA' : 'an unsupported hash (crypt or plain text)';
      return p.error('server.auth.htpasswd', `${at}: user "${user}" uses ${kind}; only bcrypt entries ($2y$, as \`htpasswd -B\` writes them) are accepted`);
    }
    if (users.has(user)) return p.error('server.auth.htpasswd', `${at}: user "${user}" is listed twice`);
    users.set(user, hash);
    return undefined;
  });
  if (users.size === 0 && !p.list.some((x) => x.path === 'server.auth.htpasswd')) p.error('server.auth.htpasswd', `${file}: no users`);
  return users;
}

async function compileServer(p: Problems, s: ConfigSpec['server'], o: CompileOptions): Promise<ServerConfig> {
  let tls: ServerConfig['tls'];
  if (s.tls !== undefined) {
    const [certPath, keyPath] = [resolve(o.baseDir, s.tls.cert), resolve(o.baseDir, s.tls.key)];
    const [cert, key] = [await p.read('server.tls.cert', certPath), await p.read('server.tls.key', keyPath)];
    let x509: X509Certificate | undefined;
    try { if (cert !== undefined) x509 = new X509Certificate(cert); } catch (e) { p.error('server.tls.cert', `${certPath} is not a PEM certificate: ${(e as Error).message}`); }
    try {
      const priv = key === undefined ? undefined : createPrivateKey(key);
      if (priv !== undefined && x509 !== undefined && !x509.checkPrivateKey(priv)) p.error('server.tls.key', `${keyPath} does not match the certificate ${certPath}`);
    } catch (e) { p.error('server.tls.key', `${keyPath} is not a PEM private key: ${(e as Error).message}`); }
    if (x509 !== undefined && Date.parse(x509.validTo) < (o.now ?? Date.now)()) p.warn('server.tls.cert', `${certPath} expired on ${x509.validTo}`);
    if (cert !== undefined && key !== undefined) tls = { cert, key, certPath, keyPath };
  }
  let auth: ServerConfig['auth'];
  if (s.auth !== undefined) {
    const htpasswdPath = resolve(o.baseDir, s.auth.htpasswd);
    const text = await p.read('server.auth.htpasswd', htpasswdPath);
    if (text !== undefined) auth = { htpasswdPath, users: new FrozenMap(parseHtpasswd(p, text, htpasswdPath)) };
  }
  return { listen: { ...s.listen }, tls, auth, logLevel: s.logLevel };
}

async function compileUpstream(p: Problems, u: ConfigSpec['upstreams'][number], baseDir: string): Promise<UpstreamConfig> {
  let tls: UpstreamConfig['tls'];
  if (u.tls !== undefined) {
    const caPath = u.tls.ca === undefined ? undefined : resolve(baseDir, u.tls.ca);
    const ca = caPath === undefined ? undefined : await p.read(join(u.at, 'tls.ca'), caPath);
    if (ca !== undefined) {
      const certs = [...ca.matchAll(/-----BEGIN CERTIFICATE-----[^-]+-----END CERTIFICATE-----/g)];
      if (certs.length === 0) p.error(join(u.at, 'tls.ca'), `no PEM certificate in ${caPath}`);
      for (const [pem] of certs) {
        try { new X509Certificate(pem); } catch (e) { p.error(join(u.at, 'tls.ca'), `${caPath}: bad certificate: ${(e as Error).message}`); }
      }
    }
    tls = { ca, caPath, insecureSkipVerify: u.tls.insecureSkipVerify };
  }
  return { name: u.name, aliases: u.aliases, url: frozenUrl(u.url), credentials: u.credentials, tls, staleIfError: u.staleIfError, verifyBlobDigests: u.verifyBlobDigests };
}

async function compileTrustedRoot(p: Problems, entry: { at: string; value: string }, baseDir: string): Promise<string> {
  if (entry.value === DEFAULT_TRUSTED_ROOT) return entry.value;
  const file = resolve(baseDir, entry.value);
  const text = await p.read(entry.at, file);
  if (text !== undefined) {
    try {
      const json: unknown = JSON.parse(text);
      if (json === null || typeof json !== 'object' || Array.isArray(json)) p.error(entry.at, `${file} is not a trusted_root.json object`);
    } catch (e) {
      p.error(entry.at, `${file} is not JSON: ${(e as Error).message}`);
    }
  }
  return file;
}

/** cache.shared with the peer CA read; an https peer address needs server.tls (the peer listener serves with it). */
async function compileShared(p: Problems, sh: SharedSpec, server: ServerConfig, baseDir: string): Promise<SharedConfig> {
  let peer: SharedConfig['peer'];
  if (sh.peer) {
    if (sh.peer.advertise.startsWith('https:') && server.tls === undefined) p.error('cache.shared.peer.advertise', 'is https, which needs server.tls: the peer listener serves with the same certificate');
    const caPath = sh.peer.ca === undefined ? undefined : resolve(baseDir, sh.peer.ca);
    const ca = caPath === undefined ? undefined : await p.read('cache.shared.peer.ca', caPath);
    if (ca !== undefined && !ca.includes('-----BEGIN CERTIFICATE-----')) p.error('cache.shared.peer.ca', `${caPath} holds no PEM certificate`);
    peer = { listen: sh.peer.listen, advertise: sh.peer.advertise, token: sh.peer.token, ...(ca !== undefined && caPath !== undefined ? { ca, caPath } : {}) };
  }
  return { ...(sh.s3 ? { s3: { ...sh.s3 } } : {}), ...(sh.redis ? { redis: { ...sh.redis } } : {}), ...(peer ? { peer } : {}) };
}

/** trust.tuf with its paths resolved; the initial root must be a TUF root.json (its signatures are checked when used). */
async function compileTuf(p: Problems, t: NonNullable<ConfigSpec['tuf']>, storeDir: string | undefined, baseDir: string): Promise<TufConfig> {
  const rootPath = t.root === undefined ? undefined : resolve(baseDir, t.root);
  const text = rootPath === undefined ? undefined : await p.read('trust.tuf.root', rootPath);
  if (text !== undefined) {
    let type: unknown;
    try {
      type = (JSON.parse(text) as { signed?: { _type?: unknown } } | null)?.signed?._type;
    } catch (e) {
      p.error('trust.tuf.root', `${rootPath} is not JSON: ${(e as Error).message}`);
    }
    if (type !== undefined && type !== 'root') p.error('trust.tuf.root', `${rootPath} is not a TUF root.json (signed._type is ${JSON.stringify(type)})`);
  }
  const cacheDir = t.cacheDir !== undefined ? resolve(baseDir, t.cacheDir) : joinPath(storeDir ?? baseDir, 'tuf');
  return { url: t.url, ...(rootPath !== undefined ? { rootPath } : {}), cacheDir, refreshMs: t.refreshMs };
}

/** Compiles a spec; `config` is set only when no problem is an error. */
export async function compileConfig(spec: ConfigSpec, o: CompileOptions): Promise<{ config?: Config; problems: ConfigProblem[] }> {
  const p = new Problems();
  const server = await compileServer(p, spec.server, o);
  // One at a time, so problems come out in file order.
  const upstreams: UpstreamConfig[] = [];
  for (const u of spec.upstreams) upstreams.push(await compileUpstream(p, u, o.baseDir));
  const trustedRoot: string[] = [];
  for (const e of spec.trustedRoot) trustedRoot.push(await compileTrustedRoot(p, e, o.baseDir));
  const storeDir = spec.cache.store && resolve(o.baseDir, spec.cache.store.dir);
  const tuf = spec.tuf && (await compileTuf(p, spec.tuf, storeDir, o.baseDir));
  const policies: Policy[] = [];
  for (const s of spec.policies) policies.push(await compilePolicy(p, s, o.baseDir));
  const store = spec.cache.store && storeDir !== undefined ? { dir: storeDir, maxBytes: spec.cache.store.maxBytes } : undefined;
  const shared = spec.cache.shared && (await compileShared(p, spec.cache.shared, server, o.baseDir));
  const config: Config = {
    server, upstreams, defaultUpstream: spec.defaultUpstream, trust: { trustedRoot, ...(tuf ? { tuf } : {}) }, policies,
    cache: { verifications: { ...spec.cache.verifications }, store, tags: { ...spec.cache.tags }, manifests: { ...spec.cache.manifests }, ...(shared ? { shared } : {}) }, source: o.source,
  };
  return { config: p.list.some((x) => x.severity === 'error') ? undefined : deepFreeze(config), problems: p.list };
}
