import { Readable, Writable } from 'node:stream';
import { pino, type Logger } from 'pino';
import { SigilError, type SigilErrorCode } from '../../src/errors.js';
import type { Digest } from '../../src/oci/digest.js';
import { sha256 } from './digest.js';
import type { BlobRequest, BlobResponse, FetchedManifest, ReferrersAnswer, Registry, ResolvedTag, TagList } from '../../src/oci/registry.js';

export const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json';

export { sha256 } from './digest.js';

/** An image manifest naming `layers` (bytes), as fetched: bytes, digest, media type. */
export function imageManifest(layers: readonly Buffer[] = [], config = Buffer.from('{}')): FetchedManifest {
  const descriptor = (b: Buffer, mediaType: string) => ({ mediaType, digest: sha256(b), size: b.length });
  const bytes = Buffer.from(
    JSON.stringify({ schemaVersion: 2, mediaType: OCI_MANIFEST, config: descriptor(config, 'application/vnd.oci.image.config.v1+json'), layers: layers.map((l) => descriptor(l, 'application/vnd.oci.image.layer.v1.tar')) }),
  );
  return { bytes, digest: sha256(bytes), mediaType: OCI_MANIFEST };
}

/** All of a stream, as one buffer. */
export async function collect(body: Readable | null): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of body ?? []) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

/** A logger that writes nothing. */
export const silentLogger = (): Logger => pino({ level: 'silent' });

/** A logger whose records are kept, parsed, in `records`. */
export function capturingLogger(): { logger: Logger; records: Array<{ level: number; msg?: string; [k: string]: unknown }> } {
  const records: Array<{ level: number; msg?: string }> = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      for (const line of chunk.toString('utf8').split('\n')) if (line.trim()) records.push(JSON.parse(line));
      cb();
    },
  });
  return { logger: pino({ level: 'debug' }, sink), records };
}

/** A timer that fires only when the test says so (no deadline is waited out). */
export function manualTimer(): { timer: (ms: number, fire: () => void) => () => void; readonly armed: number[]; fire(): void } {
  let pending: Array<{ ms: number; fire: () => void }> = [];
  return {
    timer(ms, fire) {
      const t = { ms, fire };
      pending.push(t);
      return () => {
        pending = pending.filter((p) => p !== t);
      };
    },
    get armed() {
      return pending.map((p) => p.ms);
    },
    fire() {
      const due = pending;
      pending = [];
      for (const p of due) p.fire();
    },
  };
}

/**
 * An in-memory registry below the layer under test: what it holds is set by the test, every call
 * is counted (`calls`, e.g. `fetchManifest app:v1`, `openBlob GET app@sha256:…`), and `fail`
 * makes a call fail or `hold` makes it wait until released.
 */
export class FakeRegistry implements Registry {
  readonly name: string;
  readonly calls: string[] = [];
  readonly manifests = new Map<Digest, FetchedManifest>();
  /** `repo:tag` → digest */
  readonly tags = new Map<string, Digest>();
  readonly blobs = new Map<Digest, Buffer>();
  readonly tagLists = new Map<string, string[]>();
  /** Whether a HEAD names the digest (a registry that does not: null). */
  headNamesDigest = true;
  /** A call whose description starts with one of these fails with that code. */
  readonly fail = new Map<string, SigilErrorCode>();
  /** Calls that wait, by description prefix, until `release()`. */
  readonly #held: Array<{ what: string; go: () => void }> = [];
  readonly hold = new Set<string>();
  readonly #onHeld: Array<{ n: number; resolve: () => void }> = [];

  constructor(name = 'up.test') {
    this.name = name;
  }

  /** Adds a manifest and (when given) the tag that points at it. */
  put(repository: string, m: FetchedManifest, tag?: string): FetchedManifest {
    this.manifests.set(m.digest, m);
    if (tag !== undefined) this.tags.set(`${repository}:${tag}`, m.digest);
    return m;
  }

  count(prefix: string): number {
    return this.calls.filter((c) => c.startsWith(prefix)).length;
  }

  /** Lets the held calls go on. */
  release(): void {
    for (const h of this.#held.splice(0)) h.go();
  }

  get waiting(): number {
    return this.#held.length;
  }

  /** Resolves once at least `n` calls are waiting (no polling: the tests' order, not the machine's speed). */
  held(n = 1): Promise<void> {
    if (this.#held.length >= n) return Promise.resolve();
    return new Promise((resolve) => this.#onHeld.push({ n, resolve }));
  }

  async fetchManifest(repository: string, reference: string): Promise<FetchedManifest> {
    const at = reference.startsWith('sha256:') ? '@' : ':';
    await this.#call(`fetchManifest ${repository}${at}${reference}`);
    const digest = at === '@' ? (reference as Digest) : this.tags.get(`${repository}:${reference}`);
    const m = digest !== undefined ? this.manifests.get(digest) : undefined;
    if (!m) throw new SigilError({ code: 'MANIFEST_UNKNOWN', message: `${repository}${at}${reference}` });
    return m;
  }

  async resolveTag(repository: string, tag: string): Promise<ResolvedTag | null> {
    await this.#call(`resolveTag ${repository}:${tag}`);
    const digest = this.tags.get(`${repository}:${tag}`);
    if (digest === undefined) throw new SigilError({ code: 'MANIFEST_UNKNOWN', message: `${repository}:${tag}` });
    return this.headNamesDigest ? { digest, mediaType: this.manifests.get(digest)?.mediaType ?? OCI_MANIFEST } : null;
  }

  async openBlob(repository: string, digest: Digest, req: BlobRequest): Promise<BlobResponse> {
    await this.#call(`openBlob ${req.method}${req.range ? ` ${req.range}` : ''} ${repository}@${digest}`);
    const bytes = this.blobs.get(digest);
    if (!bytes) throw new SigilError({ code: 'BLOB_UNKNOWN', message: digest });
    const m = req.range === undefined ? null : /^bytes=(\d+)-$/.exec(req.range);
    const part = m ? bytes.subarray(Number(m[1])) : bytes;
    const headers = { 'content-length': String(part.length), 'content-type': 'application/octet-stream' };
    return { status: m ? 206 : 200, headers, body: req.method === 'HEAD' ? null : Readable.from([part]) };
  }

  async listTags(repository: string): Promise<TagList & { upstreamPaginated: boolean }> {
    await this.#call(`listTags ${repository}`);
    const tags = this.tagLists.get(repository);
    if (!tags) throw new SigilError({ code: 'NAME_UNKNOWN', message: repository });
    return { name: repository, tags, upstreamPaginated: false };
  }

  async referrers(repository: string, digest: Digest): Promise<ReferrersAnswer> {
    await this.#call(`referrers ${repository}@${digest}`);
    return { kind: 'unsupported' };
  }

  async ping(): Promise<void> {}

  async close(): Promise<void> {}

  async #call(what: string): Promise<void> {
    this.calls.push(what);
    if ([...this.hold].some((p) => what.startsWith(p))) {
      await new Promise<void>((go) => {
        this.#held.push({ what, go });
        for (const w of this.#onHeld.splice(0)) {
          if (this.#held.length >= w.n) w.resolve();
          else this.#onHeld.push(w);
        }
      });
    }
    for (const [prefix, code] of this.fail) if (what.startsWith(prefix)) throw new SigilError({ code, message: `${this.name}: ${what} failed` });
  }
}
