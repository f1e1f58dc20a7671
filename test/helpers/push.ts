import { createHash, randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import { Readable } from 'node:stream';
import { gunzipSync, gzipSync } from 'node:zlib';
import { request } from 'undici';
import type { Dispatcher } from 'undici';
import { sha256 } from './digest.js';

// The harness has its own media types and digest code on purpose: it must not share bugs with src/.
export const MEDIA = Object.freeze({
  OCI_MANIFEST: 'application/vnd.oci.image.manifest.v1+json',
  OCI_INDEX: 'application/vnd.oci.image.index.v1+json',
  OCI_CONFIG: 'application/vnd.oci.image.config.v1+json',
  OCI_LAYER_TGZ: 'application/vnd.oci.image.layer.v1.tar+gzip',
  OCI_LAYER_TAR: 'application/vnd.oci.image.layer.v1.tar',
  DOCKER_MANIFEST: 'application/vnd.docker.distribution.manifest.v2+json',
  DOCKER_LIST: 'application/vnd.docker.distribution.manifest.list.v2+json',
  DOCKER_CONFIG: 'application/vnd.docker.container.image.v1+json',
  DOCKER_LAYER_TGZ: 'application/vnd.docker.image.rootfs.diff.tar.gzip',
  DOCKER_LAYER_TAR: 'application/vnd.docker.image.rootfs.diff.tar',
});
export const ALL_MANIFEST_TYPES = [MEDIA.OCI_INDEX, MEDIA.OCI_MANIFEST, MEDIA.DOCKER_LIST, MEDIA.DOCKER_MANIFEST].join(', ');
export const DEFAULT_CHUNK_BYTES = 64 * 1024 * 1024; // pushBlobFile: 16 PATCHes for a 1 GiB blob
const TAR_BLOCK = 512; // POSIX ustar block size
const DEFAULT_LAYER_BYTES = 1024;
const DEFAULT_PLATFORM: Readonly<Platform> = Object.freeze({ os: 'linux', architecture: 'amd64' });
const FIXED_CREATED = '2024-01-01T00:00:00Z'; // fixed so configs built from exact bytes are reproducible

export interface PushTarget {
  url: string;
  username?: string;
  password?: string;
  /** Optional undici dispatcher (e.g. an Agent with custom TLS); default: undici's global one. */
  dispatcher?: Dispatcher;
}
export interface Platform {
  os: string;
  architecture: string;
  variant?: string;
}
export interface PushedImage {
  digest: string;
  manifest: Buffer;
  mediaType: string;
  config: { digest: string; size: number };
  layers: Array<{ digest: string; size: number; mediaType: string }>;
}
export interface PushedIndex {
  digest: string;
  manifest: Buffer;
  mediaType: string;
  children: Array<PushedImage & { platform: Platform }>;
}
export interface ImageOptions {
  /** Count of random layers (default 1), or each layer blob's exact bytes (gzip → tar+gzip, else plain tar). */
  layers?: number | Buffer[];
  layerSize?: number;
  platform?: Platform;
  format?: 'oci' | 'docker';
  annotations?: Record<string, string>;
}
export interface RegistryResponse {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: Buffer;
}

// --- layers: real gzipped ustar archives -------------------------------------------------

function tarHeader(name: string, size: number, type: '0' | '5', mode: number): Buffer {
  const h = Buffer.alloc(TAR_BLOCK);
  const put = (s: string, off: number, len: number): void => void h.write(s, off, len, 'utf8');
  const octal = (n: number, len: number): string => n.toString(8).padStart(len - 1, '0');
  if (Buffer.byteLength(name) > 100) throw new Error(`tar name too long: ${name}`);
  put(name, 0, 100);
  put(octal(mode, 8), 100, 8);
  put(octal(0, 8), 108, 8); // uid
  put(octal(0, 8), 116, 8); // gid
  put(octal(size, 12), 124, 12);
  put(octal(0, 12), 136, 12); // mtime: fixed, reproducible
  put('        ', 148, 8); // checksum field counts as spaces while summing
  put(type, 156, 1);
  put('ustar\u000000', 257, 8); // magic "ustar\0" + version "00"
  put('root', 265, 32);
  put('root', 297, 32);
  let sum = 0;
  for (const byte of h) sum += byte;
  put(`${sum.toString(8).padStart(6, '0')}\u0000 `, 148, 8);
  return h;
}

/** A ustar archive holding `path`'s parent directories and one regular file with `content`. */
export function tarFile(path: string, content: Buffer): Buffer {
  const parts: Buffer[] = [];
  const segments = path.replace(/^\/+/, '').split('/');
  for (let i = 1; i < segments.length; i++) parts.push(tarHeader(`${segments.slice(0, i).join('/')}/`, 0, '5', 0o755));
  parts.push(tarHeader(segments.join('/'), content.length, '0', 0o644), content);
  const pad = (TAR_BLOCK - (content.length % TAR_BLOCK)) % TAR_BLOCK;
  parts.push(Buffer.alloc(pad), Buffer.alloc(2 * TAR_BLOCK)); // two zero blocks end the archive
  return Buffer.concat(parts);
}

export interface BuiltLayer {
  blob: Buffer;
  digest: string;
  diffId: string;
  mediaType: 'tar+gzip' | 'tar';
}

/** A real layer: gzip(tar(one file at `path` with `content`)); deterministic for the same input. */
export function makeLayer(content: Buffer, path = 'sigil-test/layer-0'): BuiltLayer {
  const tar = tarFile(path, content);
  const blob = gzipSync(tar);
  return { blob, digest: sha256(blob), diffId: sha256(tar), mediaType: 'tar+gzip' };
}

function layerFromBlob(blob: Buffer): BuiltLayer {
  const gz = blob.length >= 2 && blob[0] === 0x1f && blob[1] === 0x8b;
  return { blob, digest: sha256(blob), diffId: sha256(gz ? gunzipSync(blob) : blob), mediaType: gz ? 'tar+gzip' : 'tar' };
}

// --- HTTP with the Docker token flow ---------------------------------------------------

/** Parses `Bearer realm="…",service="…",scope="…"` into its scheme and parameters. */
export function parseChallenge(header: string): { scheme: string; params: Record<string, string> } {
  const m = /^\s*(\S+)\s*(.*)$/s.exec(header) ?? ['', '', ''];
  const params: Record<string, string> = {};
  for (const p of m[2].matchAll(/([A-Za-z_][\w-]*)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]*))/g)) {
    params[p[1].toLowerCase()] = p[2] !== undefined ? p[2].replace(/\\(.)/g, '$1') : p[3];
  }
  return { scheme: m[1].toLowerCase(), params };
}

const first = (v: string | string[] | undefined): string | undefined => (Array.isArray(v) ? v[0] : v);

type Body = Buffer | string | AsyncIterable<Buffer> | undefined;

/** One logical operation against one repository; holds its token so a push asks for it once. */
class Session {
  readonly #t: PushTarget;
  readonly #base: string;
  readonly #scope: string;
  #auth: string | null = null;
  #authError = '';

  constructor(t: PushTarget, repo: string, actions: string) {
    this.#t = t;
    this.#base = t.url.replace(/\/+$/, '');
    this.#scope = `repository:${repo}:${actions}`;
  }

  url(path: string): string {
    return /^https?:\/\//.test(path) ? path : `${this.#base}${path.startsWith('/') ? '' : '/'}${path}`;
  }

  async send(method: string, path: string, headers: Record<string, string> = {}, body?: Body): Promise<RegistryResponse> {
    const url = this.url(path);
    let res = await this.#raw(method, url, headers, body);
    const challenge = first(res.headers['www-authenticate']);
    const replayable = body === undefined || typeof body === 'string' || Buffer.isBuffer(body);
    if (res.status === 401 && challenge && replayable && (await this.#authenticate(challenge))) {
      res = await this.#raw(method, url, headers, body);
    }
    return res;
  }

  /** Throws with method, URL, status and body unless the status is one of `ok`. */
  async expect(ok: number[], method: string, path: string, headers?: Record<string, string>, body?: Body): Promise<RegistryResponse> {
    const res = await this.send(method, path, headers, body);
    if (!ok.includes(res.status)) {
      const auth = this.#authError ? ` (auth: ${this.#authError})` : '';
      throw new Error(`${method} ${this.url(path)} → ${res.status}${auth}: ${res.body.toString('utf8').slice(0, 500)}`);
    }
    return res;
  }

  location(res: RegistryResponse): URL {
    const loc = first(res.headers.location);
    if (!loc) throw new Error(`no Location in ${res.status} answer`);
    return new URL(loc, this.#base + '/');
  }

  async #raw(method: string, url: string, headers: Record<string, string>, body: Body): Promise<RegistryResponse> {
    const h: Record<string, string> = { ...headers };
    if (this.#auth) h.authorization = this.#auth;
    const payload = body === undefined || typeof body === 'string' || Buffer.isBuffer(body) ? body : Readable.from(body);
    const res = await request(url, { method: method as Dispatcher.HttpMethod, headers: h, body: payload, dispatcher: this.#t.dispatcher });
    const bytes = Buffer.from(await res.body.arrayBuffer());
    return { status: res.statusCode, headers: res.headers, body: bytes };
  }

  async #authenticate(header: string): Promise<boolean> {
    const { scheme, params } = parseChallenge(header);
    const basic = this.#t.username !== undefined
      ? `Basic ${Buffer.from(`${this.#t.username}:${this.#t.password ?? ''}`).toString('base64')}`
      : null;
    if (scheme === 'basic') {
      if (!basic || this.#auth === basic) return false;
      this.#auth = basic;
      return true;
    }
    if (scheme !== 'bearer' || !params.realm) return false;
    const realm = new URL(params.realm);
    if (params.service) realm.searchParams.set('service', params.service);
    for (const s of new Set([this.#scope, ...(params.scope ? params.scope.split(' ') : [])])) realm.searchParams.append('scope', s);
    const res = await request(realm, { headers: basic ? { authorization: basic } : {}, dispatcher: this.#t.dispatcher });
    const text = await res.body.text();
    if (res.statusCode !== 200) {
      this.#authError = `token request ${res.statusCode}: ${text.slice(0, 200)}`;
      return false;
    }
    const json = JSON.parse(text) as { token?: string; access_token?: string };
    const token = json.token ?? json.access_token;
    if (!token || this.#auth === `Bearer ${token}`) return false;
    this.#auth = `Bearer ${token}`;
    return true;
  }
}

// --- blobs and manifests ----------------------------------------------------------------

async function uploadBlob(s: Session, repo: string, bytes: Buffer): Promise<string> {
  const digest = sha256(bytes);
  const started = await s.expect([202], 'POST', `/v2/${repo}/blobs/uploads/`);
  const put = s.location(started);
  put.searchParams.set('digest', digest);
  const done = await s.expect([201], 'PUT', put.href, { 'content-type': 'application/octet-stream' }, bytes);
  const echoed = first(done.headers['docker-content-digest']);
  if (echoed && echoed !== digest) throw new Error(`blob pushed as ${digest}, registry says ${echoed}`);
  return digest;
}

async function putManifest(s: Session, repo: string, reference: string, bytes: Buffer, mediaType: string): Promise<string> {
  const digest = sha256(bytes);
  const res = await s.expect([201], 'PUT', `/v2/${repo}/manifests/${reference}`, { 'content-type': mediaType }, bytes);
  const echoed = first(res.headers['docker-content-digest']);
  if (echoed && echoed !== digest) throw new Error(`manifest pushed as ${digest}, registry says ${echoed}`);
  return digest;
}

/** Monolithic upload (POST, then PUT ?digest= with the bytes); returns the digest. */
export async function pushBlob(t: PushTarget, repo: string, bytes: Buffer): Promise<string> {
  return uploadBlob(new Session(t, repo, 'pull,push'), repo, bytes);
}

/**
 * Streams a file as a blob without buffering it: POST, PATCHes of `chunkSize` bytes with
 * Content-Range (hashing while reading), then PUT ?digest=. Returns the digest.
 */
export async function pushBlobFile(t: PushTarget, repo: string, path: string, opts: { chunkSize?: number } = {}): Promise<string> {
  const chunkSize = opts.chunkSize ?? DEFAULT_CHUNK_BYTES;
  const { size } = await stat(path);
  const s = new Session(t, repo, 'pull,push');
  const hash = createHash('sha256');
  let location = s.location(await s.expect([202], 'POST', `/v2/${repo}/blobs/uploads/`));
  for (let start = 0; start < size; start += chunkSize) {
    const end = Math.min(start + chunkSize, size) - 1;
    const chunk = async function* (): AsyncGenerator<Buffer> {
      for await (const b of createReadStream(path, { start, end })) {
        hash.update(b as Buffer);
        yield b as Buffer;
      }
    };
    const res = await s.expect([202], 'PATCH', location.href, {
      'content-type': 'application/octet-stream',
      'content-length': String(end - start + 1),
      'content-range': `${start}-${end}`,
    }, chunk());
    location = s.location(res);
  }
  const digest = `sha256:${hash.digest('hex')}`;
  location.searchParams.set('digest', digest);
  const done = await s.expect([201], 'PUT', location.href, { 'content-length': '0' });
  const echoed = first(done.headers['docker-content-digest']);
  if (echoed && echoed !== digest) throw new Error(`file blob hashed as ${digest}, registry says ${echoed}`);
  return digest;
}

/** PUT a manifest by tag or digest; returns sha256 of the bytes (checked against Docker-Content-Digest). */
export async function pushManifest(t: PushTarget, repo: string, reference: string, bytes: Buffer, mediaType: string): Promise<string> {
  return putManifest(new Session(t, repo, 'pull,push'), repo, reference, bytes, mediaType);
}

/** Points `tag` at an existing manifest (re-PUTs its exact bytes). */
export async function pushTagOnly(t: PushTarget, repo: string, tag: string, manifest: Buffer, mediaType: string): Promise<string> {
  return pushManifest(t, repo, tag, manifest, mediaType);
}

/** Pushes blobs and the manifest; `reference` undefined means by the manifest's own digest. */
async function buildAndPushImage(s: Session, repo: string, reference: string | undefined, opts: ImageOptions): Promise<PushedImage> {
  const docker = opts.format === 'docker';
  if (docker && opts.annotations) throw new Error('Docker schema 2 manifests have no annotations; use format oci');
  const platform = opts.platform ?? DEFAULT_PLATFORM;
  const spec = opts.layers ?? 1;
  const built = typeof spec === 'number'
    ? Array.from({ length: spec }, (_, i) => makeLayer(randomBytes(opts.layerSize ?? DEFAULT_LAYER_BYTES), `sigil-test/layer-${i}`))
    : spec.map(layerFromBlob);
  const layers = [];
  for (const l of built) {
    await uploadBlob(s, repo, l.blob);
    const mediaType = l.mediaType === 'tar+gzip'
      ? (docker ? MEDIA.DOCKER_LAYER_TGZ : MEDIA.OCI_LAYER_TGZ)
      : (docker ? MEDIA.DOCKER_LAYER_TAR : MEDIA.OCI_LAYER_TAR);
    layers.push({ mediaType, digest: l.digest, size: l.blob.length });
  }
  const configBytes = Buffer.from(JSON.stringify({
    created: FIXED_CREATED,
    architecture: platform.architecture,
    os: platform.os,
    ...(platform.variant ? { variant: platform.variant } : {}),
    config: { Env: ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'] },
    rootfs: { type: 'layers', diff_ids: built.map((l) => l.diffId) },
    history: built.map((_, i) => ({ created: FIXED_CREATED, created_by: `sigil-test layer ${i}` })),
  }));
  const config = { digest: await uploadBlob(s, repo, configBytes), size: configBytes.length };
  const mediaType = docker ? MEDIA.DOCKER_MANIFEST : MEDIA.OCI_MANIFEST;
  const manifest = Buffer.from(JSON.stringify({
    schemaVersion: 2,
    mediaType,
    config: { mediaType: docker ? MEDIA.DOCKER_CONFIG : MEDIA.OCI_CONFIG, ...config },
    layers,
    ...(opts.annotations ? { annotations: opts.annotations } : {}),
  }));
  const digest = await putManifest(s, repo, reference ?? sha256(manifest), manifest, mediaType);
  return { digest, manifest, mediaType, config, layers };
}

/** Pushes a runnable single-platform image (real gzipped tar layers, valid config) under `tag`. */
export async function pushImage(t: PushTarget, repo: string, tag: string, opts: ImageOptions = {}): Promise<PushedImage> {
  return buildAndPushImage(new Session(t, repo, 'pull,push'), repo, tag, opts);
}

/** Pushes one image per platform (by digest), then an index (OCI) or manifest list (docker) under `tag`. */
export async function pushIndex(
  t: PushTarget, repo: string, tag: string, platforms: Platform[],
  opts: { format?: 'oci' | 'docker'; layers?: number; layerSize?: number; annotations?: Record<string, string> } = {},
): Promise<PushedIndex> {
  const docker = opts.format === 'docker';
  if (docker && opts.annotations) throw new Error('Docker manifest lists have no annotations; use format oci');
  const s = new Session(t, repo, 'pull,push');
  const children: PushedIndex['children'] = [];
  for (const platform of platforms) {
    const image = await buildAndPushImage(s, repo, undefined, { ...opts, annotations: undefined, platform });
    children.push({ ...image, platform });
  }
  const mediaType = docker ? MEDIA.DOCKER_LIST : MEDIA.OCI_INDEX;
  const manifest = Buffer.from(JSON.stringify({
    schemaVersion: 2,
    mediaType,
    manifests: children.map((c) => ({ mediaType: c.mediaType, digest: c.digest, size: c.manifest.length, platform: c.platform })),
    ...(opts.annotations ? { annotations: opts.annotations } : {}),
  }));
  const digest = await putManifest(s, repo, tag, manifest, mediaType);
  return { digest, manifest, mediaType, children };
}

// --- reading back, for assertions ---------------------------------------------------------

/** Any request under /v2/ with the auth flow (pull scope unless `actions` says otherwise); never throws on status. */
export async function registryFetch(
  t: PushTarget, repo: string, method: string, path: string,
  init: { headers?: Record<string, string>; body?: Buffer; actions?: string } = {},
): Promise<RegistryResponse> {
  return new Session(t, repo, init.actions ?? 'pull').send(method, path, init.headers, init.body);
}

export interface FetchedManifest extends RegistryResponse {
  digest: string | null; // Docker-Content-Digest as sent by the registry
  mediaType: string | null; // Content-Type
}

/** GET (or HEAD) /v2/<repo>/manifests/<ref>; accepts all four manifest types unless told. */
export async function getManifest(
  t: PushTarget, repo: string, ref: string, accept: string = ALL_MANIFEST_TYPES, method: 'GET' | 'HEAD' = 'GET',
): Promise<FetchedManifest> {
  const res = await registryFetch(t, repo, method, `/v2/${repo}/manifests/${ref}`, { headers: { accept } });
  return { ...res, digest: first(res.headers['docker-content-digest']) ?? null, mediaType: first(res.headers['content-type']) ?? null };
}

/** GET /v2/<repo>/blobs/<digest> (buffered: for small blobs in assertions). */
export async function getBlob(t: PushTarget, repo: string, digest: string): Promise<RegistryResponse> {
  return registryFetch(t, repo, 'GET', `/v2/${repo}/blobs/${digest}`);
}
