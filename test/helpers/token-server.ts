import { createServer } from 'node:http';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { generateKeyPairSync, randomBytes, randomUUID, sign, timingSafeEqual } from 'node:crypto';
import type { KeyObject } from 'node:crypto';
import { rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { tempDir } from './temp.js';

const DEFAULT_EXPIRES_IN_S = 300; // Docker token spec: clients assume 60 s minimum; 5 min is the usual default
const CERT_BACKDATE_MS = 60 * 60 * 1000; // tolerate clock skew between us and the registry
const CERT_LIFETIME_MS = 7 * 24 * 60 * 60 * 1000; // outlives any test run
const MAX_FORM_BYTES = 64 * 1024; // a token request body is a few hundred bytes
export const TOKEN_SERVICE = 'sigil-test-registry';
export const TOKEN_ISSUER = 'sigil-test-token-issuer';

export interface TokenRequestRecord {
  scope: string[];
  user: string | null;
  authorization: string | null;
}

/** One entry of the `access` claim (Docker token spec). */
export interface AccessEntry {
  type: string;
  name: string;
  actions: string[];
}

export interface TokenServerHandle {
  readonly realm: string;
  readonly service: string;
  readonly issuer: string;
  readonly rootCertPath: string;
  readonly requests: Array<TokenRequestRecord>;
  /** Mints a token directly (e.g. an expired one: `expiresIn: -3600`). */
  mintToken(opts: { user?: string | null; access: AccessEntry[]; expiresIn?: number }): string;
  stop(): Promise<void>;
}

export interface TokenServerOptions {
  users: Record<string, string>;
  anonymousPull?: boolean;
  expiresIn?: number;
}

// --- minimal DER writer: just enough for one self-signed ECDSA P-256 certificate ---

function derLength(n: number): Buffer {
  if (n < 0x80) return Buffer.from([n]);
  const bytes: number[] = [];
  for (let v = n; v > 0; v = Math.floor(v / 256)) bytes.unshift(v & 0xff);
  return Buffer.from([0x80 | bytes.length, ...bytes]);
}
const tlv = (tag: number, content: Buffer): Buffer => Buffer.concat([Buffer.from([tag]), derLength(content.length), content]);
const seq = (...parts: Buffer[]): Buffer => tlv(0x30, Buffer.concat(parts));
const set = (...parts: Buffer[]): Buffer => tlv(0x31, Buffer.concat(parts));
const explicit = (n: number, inner: Buffer): Buffer => tlv(0xa0 | n, inner);
const utf8 = (s: string): Buffer => tlv(0x0c, Buffer.from(s, 'utf8'));
const octets = (b: Buffer): Buffer => tlv(0x04, b);
const bits = (b: Buffer, unused = 0): Buffer => tlv(0x03, Buffer.concat([Buffer.from([unused]), b]));
const bool = (v: boolean): Buffer => tlv(0x01, Buffer.from([v ? 0xff : 0]));
function uint(b: Buffer): Buffer {
  let i = 0;
  while (i < b.length - 1 && b[i] === 0) i++;
  const v = b.subarray(i);
  return tlv(0x02, v[0] & 0x80 ? Buffer.concat([Buffer.from([0]), v]) : v);
}
function oid(dotted: string): Buffer {
  const [a, b, ...rest] = dotted.split('.').map(Number);
  const out = [40 * a + b];
  for (const n of rest) {
    const chunk = [n & 0x7f];
    for (let v = Math.floor(n / 128); v > 0; v = Math.floor(v / 128)) chunk.unshift(0x80 | (v & 0x7f));
    out.push(...chunk);
  }
  return tlv(0x06, Buffer.from(out));
}
function time(d: Date): Buffer {
  // RFC 5280 4.1.2.5: UTCTime through 2049, GeneralizedTime from 2050
  const iso = d.toISOString().replace(/[-:T]/g, '').slice(0, 14) + 'Z';
  return d.getUTCFullYear() < 2050 ? tlv(0x17, Buffer.from(iso.slice(2))) : tlv(0x18, Buffer.from(iso));
}

const OID_ECDSA_SHA256 = '1.2.840.10045.4.3.2';
const OID_CN = '2.5.4.3';
const OID_BASIC_CONSTRAINTS = '2.5.29.19';
const OID_KEY_USAGE = '2.5.29.15';

/** A self-signed v3 certificate (DER) for `key`, CA:true, keyUsage digitalSignature+keyCertSign. */
export function selfSignedCertDer(privateKey: KeyObject, publicKey: KeyObject, commonName: string, now = new Date()): Buffer {
  const alg = seq(oid(OID_ECDSA_SHA256));
  const name = seq(set(seq(oid(OID_CN), utf8(commonName))));
  const extensions = seq(
    seq(oid(OID_BASIC_CONSTRAINTS), bool(true), octets(seq(bool(true)))),
    // bits 0 (digitalSignature) and 5 (keyCertSign): 0b1000_0100, 2 unused trailing bits
    seq(oid(OID_KEY_USAGE), bool(true), octets(bits(Buffer.from([0x84]), 2))),
  );
  const tbs = seq(
    explicit(0, uint(Buffer.from([2]))), // v3
    uint(Buffer.concat([Buffer.from([0x01]), randomBytes(15)])),
    alg,
    name,
    seq(time(new Date(now.getTime() - CERT_BACKDATE_MS)), time(new Date(now.getTime() + CERT_LIFETIME_MS))),
    name,
    publicKey.export({ type: 'spki', format: 'der' }),
    explicit(3, extensions),
  );
  const signature = sign('sha256', tbs, privateKey); // DER ECDSA-Sig-Value, as X.509 wants
  return seq(tbs, alg, bits(signature));
}

function pem(der: Buffer): string {
  const lines = der.toString('base64').match(/.{1,64}/g) ?? [];
  return `-----BEGIN CERTIFICATE-----\n${lines.join('\n')}\n-----END CERTIFICATE-----\n`;
}

const b64url = (b: Buffer | string): string => Buffer.from(b).toString('base64url');

/** Parses `repository:name:pull,push` (names may contain ':' for a registry port). */
export function parseScope(scope: string): AccessEntry | null {
  const first = scope.indexOf(':');
  const last = scope.lastIndexOf(':');
  if (first < 0 || last === first) return null;
  return {
    type: scope.slice(0, first),
    name: scope.slice(first + 1, last),
    actions: scope.slice(last + 1).split(',').filter((a) => a !== ''),
  };
}

function safeEqual(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}

async function readForm(req: IncomingMessage): Promise<URLSearchParams> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > MAX_FORM_BYTES) throw new Error('token request body too large');
    chunks.push(chunk as Buffer);
  }
  return new URLSearchParams(Buffer.concat(chunks).toString('utf8'));
}

/**
 * An in-process Docker token server (https://distribution.github.io/distribution/spec/auth/token/).
 * GET /token with optional Basic auth, and the OAuth2 POST /token password grant (containerd).
 * Users get every action they ask for; anonymous requests get `pull` only if `anonymousPull`,
 * otherwise a token with no access (the registry then answers 401, as Docker Hub does).
 */
export async function startTokenServer(opts: TokenServerOptions): Promise<TokenServerHandle> {
  const dir = await tempDir('sigil-token');
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const certDer = selfSignedCertDer(privateKey, publicKey, TOKEN_ISSUER);
  const rootCertPath = join(dir, 'rootcertbundle.pem');
  await writeFile(rootCertPath, pem(certDer));
  const requests: TokenRequestRecord[] = [];
  const defaultExpiresIn = opts.expiresIn ?? DEFAULT_EXPIRES_IN_S;

  const mintToken = (m: { user?: string | null; access: AccessEntry[]; expiresIn?: number }): string => {
    const now = Math.floor(Date.now() / 1000);
    // distribution 2.8 token.go: x5c chain verified against rootcertbundle; aud is a single string
    const header = { typ: 'JWT', alg: 'ES256', x5c: [certDer.toString('base64')] };
    const claims = {
      iss: TOKEN_ISSUER,
      sub: m.user ?? '',
      aud: TOKEN_SERVICE,
      exp: now + (m.expiresIn ?? defaultExpiresIn),
      nbf: now,
      iat: now,
      jti: randomUUID(),
      access: m.access,
    };
    const input = `${b64url(JSON.stringify(header))}.${b64url(JSON.stringify(claims))}`;
    // JWS ES256 wants the raw r||s signature, not DER
    const sig = sign('sha256', Buffer.from(input), { key: privateKey, dsaEncoding: 'ieee-p1363' });
    return `${input}.${b64url(sig)}`;
  };

  const grant = (user: string | null, scopes: string[]): AccessEntry[] => {
    const access: AccessEntry[] = [];
    for (const s of scopes) {
      const parsed = parseScope(s);
      if (!parsed) continue;
      if (user !== null) access.push(parsed);
      else if (opts.anonymousPull && parsed.type === 'repository' && parsed.actions.includes('pull')) {
        access.push({ ...parsed, actions: ['pull'] });
      }
    }
    return access;
  };

  const send = (res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void => {
    res.writeHead(status, { 'content-type': 'application/json', ...headers });
    res.end(JSON.stringify(body));
  };
  const unauthorized = (res: ServerResponse): void =>
    send(res, 401, { errors: [{ code: 'UNAUTHORIZED', message: 'bad credentials' }] }, { 'www-authenticate': 'Basic realm="sigil-test"' });

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const url = new URL(req.url ?? '/', 'http://localhost');
    if (url.pathname !== '/token') return send(res, 404, { errors: [{ code: 'NOT_FOUND' }] });
    const authorization = req.headers.authorization ?? null;
    let user: string | null = null;
    let password: string | null = null;
    let scopeParams: string[];
    if (req.method === 'POST') {
      const form = await readForm(req);
      if (form.get('grant_type') !== 'password') {
        return send(res, 400, { error: 'unsupported_grant_type' });
      }
      user = form.get('username');
      password = form.get('password') ?? '';
      scopeParams = form.getAll('scope');
    } else if (req.method === 'GET') {
      scopeParams = url.searchParams.getAll('scope');
      if (authorization !== null) {
        const m = /^Basic\s+(\S+)$/i.exec(authorization);
        const decoded = m ? Buffer.from(m[1], 'base64').toString('utf8') : '';
        const colon = decoded.indexOf(':');
        if (colon < 0) {
          requests.push({ scope: scopeParams.flatMap((s) => s.split(' ')).filter(Boolean), user: null, authorization });
          return unauthorized(res);
        }
        user = decoded.slice(0, colon);
        password = decoded.slice(colon + 1);
      }
    } else {
      return send(res, 405, { errors: [{ code: 'UNSUPPORTED' }] });
    }
    const scope = scopeParams.flatMap((s) => s.split(' ')).filter(Boolean);
    requests.push({ scope, user, authorization });
    if (user !== null) {
      const expected = Object.hasOwn(opts.users, user) ? opts.users[user] : undefined;
      if (expected === undefined || !safeEqual(expected, password ?? '')) return unauthorized(res);
    }
    const expiresIn = defaultExpiresIn;
    const token = mintToken({ user, access: grant(user, scope), expiresIn });
    send(res, 200, { token, access_token: token, expires_in: expiresIn, issued_at: new Date().toISOString() });
  };

  const sockets = new Set<Socket>();
  const server = createServer((req, res) => {
    handle(req, res).catch((err: unknown) => {
      if (!res.headersSent) send(res, 500, { errors: [{ code: 'UNKNOWN', message: String(err) }] });
      else res.destroy();
    });
  });
  server.on('connection', (s) => {
    sockets.add(s);
    s.once('close', () => sockets.delete(s));
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const { port } = server.address() as AddressInfo;

  let stopping: Promise<void> | undefined;
  return {
    realm: `http://127.0.0.1:${port}/token`,
    service: TOKEN_SERVICE,
    issuer: TOKEN_ISSUER,
    rootCertPath,
    requests,
    mintToken,
    stop(): Promise<void> {
      stopping ??= (async () => {
        const closed = new Promise<void>((resolve) => server.close(() => resolve()));
        for (const s of sockets) s.destroy();
        await closed;
        await rm(dir, { recursive: true, force: true });
      })();
      return stopping;
    },
  };
}
