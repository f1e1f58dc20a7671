import { createHash, generateKeyPairSync, sign, type KeyObject } from 'node:crypto';
import { mkdir, writeFile } from 'node:fs/promises';
import { readFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join, normalize } from 'node:path';
import { tempDir } from './temp.js';

// A TUF repository the tests sign themselves, laid out as Sigstore's are (consistent snapshots:
// N.root.json, timestamp.json, N.snapshot.json, N.targets.json, targets/<sha256>.<name>), and a
// static HTTP server for it on 127.0.0.1 that counts what it is asked. Keys are Ed25519 (TUF
// `ed25519` scheme, hex public key); signatures are over the OLPC canonical JSON of `signed`,
// as tuf-js (@tufjs/models) verifies them.

export const ROLES = ['root', 'timestamp', 'snapshot', 'targets'] as const;
export type Role = (typeof ROLES)[number];
/** Far enough ahead that nothing the tests sign expires while they run. */
export const FAR_FUTURE = '2100-01-01T00:00:00Z';
/** Long gone: metadata that expires here is expired whatever the clock says. */
export const LONG_AGO = '2001-01-01T00:00:00Z';

/** TUF's canonical JSON: keys sorted, no whitespace, only `"` and `\` escaped in strings, integers only. */
export function tufCanonical(v: unknown): string {
  if (typeof v === 'string') return `"${v.replace(/\\/g, '\\\\').replace(/"/g, '\\"')}"`;
  if (typeof v === 'number') {
    if (!Number.isInteger(v)) throw new Error(`canonical JSON has no floats: ${v}`);
    return String(v);
  }
  if (typeof v === 'boolean' || v === null) return JSON.stringify(v);
  if (Array.isArray(v)) return `[${v.map(tufCanonical).join(',')}]`;
  const o = v as Record<string, unknown>;
  return `{${Object.keys(o).sort().map((k) => `${tufCanonical(k)}:${tufCanonical(o[k])}`).join(',')}}`;
}

export interface TufKey {
  readonly id: string;
  readonly privateKey: KeyObject;
  /** The key as root.json lists it. */
  readonly json: { keytype: 'ed25519'; scheme: 'ed25519'; keyval: { public: string } };
}

/** A fresh Ed25519 key; its id is the sha256 of its canonical JSON, as TUF derives key ids. */
export function tufKey(): TufKey {
  const { privateKey, publicKey } = generateKeyPairSync('ed25519');
  const raw = publicKey.export({ format: 'der', type: 'spki' }).subarray(-32);
  const json = { keytype: 'ed25519' as const, scheme: 'ed25519' as const, keyval: { public: raw.toString('hex') } };
  return { id: createHash('sha256').update(tufCanonical(json)).digest('hex'), privateKey, json };
}

/** `{signatures, signed}` with one signature per key. */
export function signMetadata(signed: Record<string, unknown>, keys: readonly TufKey[]): string {
  const bytes = Buffer.from(tufCanonical(signed));
  const signatures = keys.map((k) => ({ keyid: k.id, sig: sign(null, bytes, k.privateKey).toString('hex') }));
  return `${JSON.stringify({ signatures, signed }, null, 2)}\n`;
}

const sha256 = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

/**
 * The repository: every role's keys (threshold 1), versions and expiry dates; `publish*` writes
 * the files. A change to a target bumps targets, snapshot and timestamp, as a real repository's
 * tooling does.
 */
export class TufRepo {
  readonly dir: string;
  keys: Record<Role, TufKey[]> = { root: [tufKey()], timestamp: [tufKey()], snapshot: [tufKey()], targets: [tufKey()] };
  version: Record<Role, number> = { root: 1, timestamp: 0, snapshot: 0, targets: 0 };
  expires: Record<Role, string> = { root: FAR_FUTURE, timestamp: FAR_FUTURE, snapshot: FAR_FUTURE, targets: FAR_FUTURE };
  readonly targets = new Map<string, Buffer>();

  private constructor(dir: string) {
    this.dir = dir;
  }

  /** A repository with root v1 written and `targets` published. */
  static async create(targets: Record<string, Buffer | string> = {}): Promise<TufRepo> {
    const repo = new TufRepo(await tempDir('sigil-tuf-repo'));
    await mkdir(join(repo.dir, 'targets'), { recursive: true });
    await repo.#writeRoot(repo.keys.root);
    for (const [name, bytes] of Object.entries(targets)) repo.targets.set(name, Buffer.from(bytes));
    await repo.publish();
    return repo;
  }

  /** Where root v1 is: the initial root a client is configured with. */
  get initialRootPath(): string {
    return join(this.dir, '1.root.json');
  }

  rootSigned(): Record<string, unknown> {
    const keys: Record<string, unknown> = {};
    const roles: Record<string, unknown> = {};
    for (const role of ROLES) {
      for (const k of this.keys[role]) keys[k.id] = k.json;
      roles[role] = { keyids: this.keys[role].map((k) => k.id), threshold: 1 };
    }
    return { _type: 'root', spec_version: '1.0.31', version: this.version.root, expires: this.expires.root, keys, roles, consistent_snapshot: true };
  }

  /** Sets (or replaces) a target and publishes new targets, snapshot and timestamp metadata. */
  async setTarget(name: string, bytes: Buffer | string): Promise<void> {
    this.targets.set(name, Buffer.from(bytes));
    await this.publish();
  }

  /**
   * Root version + 1 with new root keys (and new keys for `alsoRotate`), signed by the new root
   * keys and, unless `signedByOld` is false, the previous root's: then everything is signed again.
   */
  async rotateRoot(opts: { signedByOld?: boolean; alsoRotate?: readonly Exclude<Role, 'root'>[] } = {}): Promise<void> {
    const old = this.keys.root;
    this.keys.root = [tufKey()];
    for (const role of opts.alsoRotate ?? []) this.keys[role] = [tufKey()];
    this.version.root += 1;
    await this.#writeRoot([...(opts.signedByOld === false ? [] : old), ...this.keys.root]);
    await this.publish();
  }

  /** New targets, snapshot and timestamp metadata (versions + 1), signed by their roles' keys. */
  async publish(): Promise<void> {
    this.version.targets += 1;
    const targets: Record<string, unknown> = {};
    for (const [name, bytes] of this.targets) {
      targets[name] = { length: bytes.length, hashes: { sha256: sha256(bytes) } };
      await writeFile(join(this.dir, 'targets', `${sha256(bytes)}.${name}`), bytes);
    }
    const targetsSigned = { _type: 'targets', spec_version: '1.0.31', version: this.version.targets, expires: this.expires.targets, targets };
    await writeFile(join(this.dir, `${this.version.targets}.targets.json`), signMetadata(targetsSigned, this.keys.targets));
    this.version.snapshot += 1;
    const snapshotSigned = { _type: 'snapshot', spec_version: '1.0.31', version: this.version.snapshot, expires: this.expires.snapshot, meta: { 'targets.json': { version: this.version.targets } } };
    await writeFile(join(this.dir, `${this.version.snapshot}.snapshot.json`), signMetadata(snapshotSigned, this.keys.snapshot));
    this.version.timestamp += 1;
    const timestampSigned = { _type: 'timestamp', spec_version: '1.0.31', version: this.version.timestamp, expires: this.expires.timestamp, meta: { 'snapshot.json': { version: this.version.snapshot } } };
    await writeFile(join(this.dir, 'timestamp.json'), signMetadata(timestampSigned, this.keys.timestamp));
  }

  /** Serves other bytes for a target than its metadata names (same path: the hash the metadata lists). */
  async tamperTarget(name: string, bytes: Buffer | string): Promise<void> {
    const listed = this.targets.get(name);
    if (listed === undefined) throw new Error(`no target ${name}`);
    await writeFile(join(this.dir, 'targets', `${sha256(listed)}.${name}`), bytes);
  }

  async #writeRoot(signers: readonly TufKey[]): Promise<void> {
    await writeFile(join(this.dir, `${this.version.root}.root.json`), signMetadata(this.rootSigned(), signers));
  }
}

export interface TufServer {
  readonly url: string;
  /** Every request path, in order. */
  readonly requests: string[];
  /** While set, every request answers this status. */
  failWith: number | null;
  close(): Promise<void>;
}

/** Serves `dir` on 127.0.0.1 (a free port): files as they are, 404 for anything else. */
export async function serveTufRepo(dir: string): Promise<TufServer> {
  const requests: string[] = [];
  const handle: { failWith: number | null } = { failWith: null };
  const server: Server = createServer((req, res) => {
    const path = decodeURIComponent(new URL(req.url ?? '/', 'http://x').pathname);
    requests.push(path);
    if (handle.failWith !== null) {
      res.writeHead(handle.failWith).end();
      return;
    }
    const file = normalize(join(dir, path));
    if (!file.startsWith(dir + '/')) {
      res.writeHead(404).end();
      return;
    }
    readFile(file).then(
      (body) => res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': body.length }).end(body),
      () => res.writeHead(404).end(),
    );
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    requests,
    get failWith() {
      return handle.failWith;
    },
    set failWith(v) {
      handle.failWith = v;
    },
    close: () => new Promise<void>((resolve) => {
      server.closeAllConnections();
      server.close(() => resolve());
    }),
  };
}
