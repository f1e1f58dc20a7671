import { Readable, pipeline as pipeStreams } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { LRUCache } from 'lru-cache';
import type { Logger } from 'pino';
import type { Metrics } from '../audit/metrics.js';
import { SigilError, isSigilError, type SigilErrorCode } from '../errors.js';
import { isDigest, referrersTag, type Digest } from '../oci/digest.js';
import { DigestCheck } from '../hash/checked-stream.js';
import type { HashPool } from '../hash/hash-pool.js';
import type { Catalog } from '../store/catalog.js';
import type { ContentStore } from '../store/content-store.js';
import { ioErrorCode } from '../store/health.js';
import type { UpstreamClient } from '../upstream/client.js';
import type { BlobRequest, BlobResponse, FetchedManifest, ReferrersAnswer, TagList, UpstreamRegistry } from '../upstream/types.js';
import { StoredRegistry } from './stored-registry.js';
import { STALE_BREAKER_MS, UpstreamBreaker } from './upstream-breaker.js';

/**
 * With a content store, an upstream that has not answered a tag lookup within this long is
 * treated as failing and the stored tag is served (the contract: an image that is not stored
 * gets 502/503/504 within 5 s).
 */
export const STALE_DEADLINE_MS = 4_000;

/** Upstream failures after which stored content is served instead (stale-if-error). */
const STALE_CODES: ReadonlySet<SigilErrorCode> = new Set(['UPSTREAM_UNREACHABLE', 'UPSTREAM_TIMEOUT', 'UPSTREAM_TOOMANYREQUESTS', 'UPSTREAM_BAD_RESPONSE']);

export interface CachingOptions {
  readonly tagTtlMs: number;
  readonly manifestCacheBytes: number;
  readonly staleIfError: boolean;
  /** The clock of the caches and of the stale-if-error breaker (tests inject one); default performance.now. */
  readonly now?: () => number;
}

/**
 * Whether a blob may be written to the store, and the size to hold it to: the gate says (enforce
 * stores only the blobs of verified manifests, at their descriptors' sizes).
 */
export type BlobAdmission = (upstream: string, repository: string, digest: Digest) => false | { size?: number; manifest?: Digest };

/** Downloads into the store at once, per upstream; past this, blobs pass through unstored. */
export const MAX_STORE_DOWNLOADS = 16;

type Download = { kind: 'writing'; size: number | undefined } | { kind: 'stored' } | { kind: 'passthrough' };

/**
 * An upstream behind caches: manifests in memory by digest, tag → digest answers for a short
 * TTL (resolved with a HEAD), and — with a content store — blobs written through to disk once
 * (concurrent requests read behind the one download), stored blobs served from disk, and
 * stored content served when the upstream fails (and, for STALE_BREAKER_MS after a failure,
 * without asking it first). Every manifest still comes back as bytes whose digest was checked;
 * the gate verifies them as always.
 */
export class CachingRegistry implements UpstreamRegistry {
  readonly name: string;
  readonly #up: UpstreamClient;
  readonly #catalog: Catalog | null;
  readonly #content: ContentStore | null;
  readonly #stored: StoredRegistry | null;
  readonly #opts: CachingOptions;
  readonly #metrics: Metrics;
  readonly #log: Logger;
  readonly #tags: LRUCache<string, Digest>;
  readonly #manifests: LRUCache<string, FetchedManifest>;
  /** Downloads into the store by (repository, digest), until the store has committed (or failed). */
  readonly #downloads = new Map<string, Promise<Download>>();
  #admit: BlobAdmission = () => ({});
  /** With a store to fall back on: whether the upstream is treated as failing (metadata requests). */
  readonly #breaker: UpstreamBreaker | null;
  readonly #hashes: HashPool | undefined;

  constructor(
    up: UpstreamClient,
    store: { readonly content: ContentStore; readonly catalog: Catalog } | null,
    opts: CachingOptions,
    deps: { metrics: Metrics; logger: Logger; hashes?: HashPool },
  ) {
    this.name = up.name;
    this.#up = up;
    this.#catalog = store?.catalog ?? null;
    this.#content = store?.content ?? null;
    this.#stored = store ? new StoredRegistry(up.name, store) : null;
    this.#opts = opts;
    this.#metrics = deps.metrics;
    this.#log = deps.logger;
    this.#hashes = deps.hashes;
    const perf = opts.now ? { perf: { now: opts.now } } : {};
    this.#tags = new LRUCache({ max: 10_000, ttl: Math.max(1, opts.tagTtlMs), ...perf });
    this.#manifests = new LRUCache({ maxSize: opts.manifestCacheBytes, sizeCalculation: (m) => Math.max(1, m.bytes.length), ...perf });
    this.#breaker = this.#stored && opts.staleIfError ? new UpstreamBreaker({ now: opts.now ?? (() => performance.now()) }) : null;
  }

  /** Set by the gate: which blobs may be stored. */
  setBlobAdmission(admit: BlobAdmission): void {
    this.#admit = admit;
  }

  async fetchManifest(repository: string, reference: string, opts: { accept?: string } = {}): Promise<FetchedManifest> {
    if (isDigest(reference)) return this.#byDigest(repository, reference, opts.accept);
    const key = `${repository}:${reference}\0${opts.accept ?? ''}`;
    const known = this.#tags.get(key);
    if (known) return this.#byDigest(repository, known, opts.accept);
    return this.#upstreamOrStored(
      () => this.#byTag(repository, reference, opts.accept, key),
      () => this.#stored!.fetchManifest(repository, reference),
    );
  }

  /** A tag resolved by the upstream (stale-if-error: the stored tag when it fails). */
  async #byTag(repository: string, reference: string, accept: string | undefined, key: string): Promise<FetchedManifest> {
    const opts = { accept };
    let resolved: { digest: Digest; mediaType: string } | null;
    try {
      resolved = await this.#deadline(this.#up.resolveTag(repository, reference, opts), `manifest ${repository}:${reference}`);
    } catch (e) {
      return this.#staleOr(e, () => this.#stored!.fetchManifest(repository, reference));
    }
    if (resolved === null) {
      // No digest in the HEAD answer: GET by tag (checked against the upstream's digest header, if any).
      let m: FetchedManifest;
      try {
        m = await this.#deadline(this.#up.fetchManifest(repository, reference, opts), `manifest ${repository}:${reference}`);
      } catch (e) {
        return this.#staleOr(e, () => this.#stored!.fetchManifest(repository, reference));
      }
      this.#tags.set(key, m.digest);
      this.#manifests.set(`${repository}@${m.digest}\0${accept ?? ''}`, m);
      return m;
    }
    try {
      const m = await this.#byDigest(repository, resolved.digest, accept);
      this.#tags.set(key, resolved.digest);
      return m;
    } catch (e) {
      // The tag moved between the HEAD and the GET (or the upstream serves tags only): GET by tag.
      if (!isSigilError(e) || e.code !== 'MANIFEST_UNKNOWN') return this.#staleOr(e, () => this.#stored!.fetchManifest(repository, reference));
      const m = await this.#up.fetchManifest(repository, reference, opts);
      this.#tags.set(key, m.digest);
      return m;
    }
  }

  async #byDigest(repository: string, digest: Digest, accept: string | undefined): Promise<FetchedManifest> {
    const key = `${repository}@${digest}\0${accept ?? ''}`;
    const hit = this.#manifests.get(key);
    if (hit) return hit;
    const stored = this.#catalog ? await this.#catalog.getManifest(this.name, repository, digest) : null;
    if (stored) {
      const m = { bytes: stored.bytes, digest, mediaType: stored.mediaType };
      this.#manifests.set(key, m);
      return m;
    }
    const m = await this.#deadline(this.#up.fetchManifest(repository, digest, { accept }), `manifest ${repository}@${digest}`);
    this.#manifests.set(key, m);
    return m;
  }

  async openBlob(repository: string, digest: Digest, req: BlobRequest): Promise<BlobResponse> {
    const catalog = this.#catalog;
    if (!catalog || req.skipStore) return this.#up.openBlob(repository, digest, req);
    const stored = await this.#fromStore(repository, digest, req);
    if (stored) return stored;
    const admitted = req.method === 'GET' && req.range === undefined ? this.#admit(this.name, repository, digest) : false;
    if (admitted === false) return this.#up.openBlob(repository, digest, req);
    // One download per (repository, digest) writes the store; every request, the first included,
    // reads behind it, so no client holds the download to its own speed and nothing is buffered whole.
    const key = `${repository}@${digest}`;
    let download = this.#downloads.get(key);
    if (!download) {
      // A store that cannot write now (disk full, read-only, removed: it retries by itself) or has
      // no room for this blob: the blob passes through, checked against its digest as always.
      if (this.#downloads.size >= MAX_STORE_DOWNLOADS || !(await this.#content!.admitWrite(admitted.size))) {
        return this.#up.openBlob(repository, digest, req);
      }
      // (another request may have started it meanwhile)
      download = this.#downloads.get(key) ?? this.#startDownload(key, repository, digest, admitted.size, admitted.manifest);
    }
    const d = await download;
    if (d.kind === 'stored') return (await this.#fromStore(repository, digest, req)) ?? this.#up.openBlob(repository, digest, req);
    if (d.kind === 'passthrough') return this.#up.openBlob(repository, digest, req);
    const w = this.#content!.beginWrite(digest, d.size);
    if (w.kind === 'writer') {
      // Committed and evicted in between: nothing to follow; fall back to the upstream.
      w.writer.destroy(new Error('not the download owner'));
      return this.#up.openBlob(repository, digest, req);
    }
    const headers: Record<string, string> = { 'content-type': 'application/octet-stream' };
    if (d.size !== undefined) headers['content-length'] = String(d.size);
    return { status: 200, headers, body: this.#behindDownload(repository, digest, w.stream, d.size) };
  }

  /**
   * A request reading behind the store's download of a blob. When the store fails under it (a
   * disk fault: full, removed, an I/O error — not the upstream's bytes, not a wrong digest), the
   * rest comes from the upstream, from the first byte this request has not had yet: a store
   * fault degrades to pass-through, it does not cut downloads off. The bytes are hashed on the
   * way (hash/checked-stream.ts: the last chunk is held back until they match): those before the
   * fault came from the store's unfinished file, the rest from another answer, so only the
   * whole, checked, may complete.
   */
  #behindDownload(repository: string, digest: Digest, follower: Readable, size: number | undefined): Readable {
    const what = `upstream ${this.name}: blob ${digest} of ${repository}`;
    const resume = async function* (this: CachingRegistry): AsyncGenerator<Buffer> {
      let delivered = 0;
      try {
        for await (const chunk of follower as AsyncIterable<Buffer>) {
          delivered += chunk.length;
          yield chunk;
        }
        return;
      } catch (err) {
        if (ioErrorCode(err) === undefined) throw err;
        this.#log.warn({ upstream: this.name, repository, digest, delivered, err: String(err) }, 'store failed under a download: the rest comes from the upstream');
      }
      const res = await this.#up.openBlob(repository, digest, delivered > 0 ? { method: 'GET', range: `bytes=${delivered}-` } : { method: 'GET' });
      // a 206 starts where it was asked to (upstream/ranges.ts); a 200 is the whole blob again
      let skip = res.status === 200 ? delivered : 0;
      for await (const chunk of res.body as AsyncIterable<Buffer>) {
        if (skip >= chunk.length) {
          skip -= chunk.length;
          continue;
        }
        yield skip > 0 ? chunk.subarray(skip) : chunk;
        skip = 0;
      }
    };
    const checked = new DigestCheck({
      digest,
      ...(size !== undefined ? { expectedLength: size } : {}),
      ...(this.#hashes !== undefined ? { hashes: this.#hashes } : {}),
      mismatch: (got) => new SigilError({ code: 'DIGEST_MISMATCH', message: `${what}: the bytes hash to ${got}`, detail: { expected: digest, got } }),
      wrongLength: (count) => new SigilError({ code: 'UPSTREAM_BAD_RESPONSE', message: `${what}: ${count} bytes, announced ${size}` }),
    });
    // bytes, not objects: an object-mode stream would read 16 chunks ahead of a slow client
    pipeStreams(Readable.from(resume.call(this), { objectMode: false }), checked, () => {
      /* an error is the consumer's (pipeline destroyed `checked` with it) */
    });
    return checked;
  }

  /**
   * The blob from the store, when it holds it for this repository and can read it (an object
   * that is unreadable, or found damaged before anything was served, is absent); else null.
   */
  async #fromStore(repository: string, digest: Digest, req: BlobRequest): Promise<BlobResponse | null> {
    if (!(await this.#catalog!.hasBlob(this.name, repository, digest))) return null;
    try {
      return await this.#stored!.openBlob(repository, digest, req);
    } catch (e) {
      if (isSigilError(e) && e.code === 'BLOB_UNKNOWN') return null;
      throw e;
    }
  }

  /** Starts the download of `key` and registers it until the object is committed (or failed). */
  #startDownload(key: string, repository: string, digest: Digest, admittedSize: number | undefined, namedBy: Digest | undefined): Promise<Download> {
    const started = this.#download(repository, digest, admittedSize, namedBy);
    const download = started.then((d) => d.download);
    this.#downloads.set(key, download);
    // Until the object is committed, later requests join this download instead of starting one.
    started.then(
      ({ done }) => done.finally(() => this.#downloads.delete(key)),
      () => this.#downloads.delete(key),
    );
    return download;
  }

  /** Starts the upstream download into the store; resolves once the upstream answered. */
  async #download(repository: string, digest: Digest, admittedSize: number | undefined, namedBy: Digest | undefined): Promise<{ download: Download; done: Promise<unknown> }> {
    const catalog = this.#catalog!;
    const store = this.#content!;
    const settled = Promise.resolve();
    if (await store.has(digest)) {
      // Stored for another repository (or by another process): confirm this repository has it upstream.
      const head = await this.#up.openBlob(repository, digest, { method: 'HEAD' });
      head.body?.destroy();
      try {
        await catalog.noteBlob(this.name, repository, digest, namedBy);
      } catch (err) {
        this.#log.warn({ digest, repository, err: String(err) }, 'blob stored but not recorded');
        return { download: { kind: 'passthrough' }, done: settled };
      }
      return { download: { kind: 'stored' }, done: settled };
    }
    // The store's writer hashes the bytes and commits (and lets readers finish) only on a match.
    const res = await this.#up.openBlob(repository, digest, { method: 'GET', verifyDigest: false });
    const length = res.headers['content-length'];
    const announced = length !== undefined && /^\d+$/.test(length) ? Number(length) : undefined;
    if ((admittedSize !== undefined && announced !== undefined && announced !== admittedSize) || (announced ?? admittedSize ?? 0) > store.maxBytes) {
      // Not what the manifest said, or too big to store: serve it as it comes, through the digest check.
      res.body?.destroy();
      return { download: { kind: 'passthrough' }, done: settled };
    }
    const size = admittedSize ?? announced;
    if (admittedSize === undefined && announced !== undefined && !(await store.admitWrite(announced))) {
      res.body?.destroy();
      return { download: { kind: 'passthrough' }, done: settled };
    }
    const w = store.beginWrite(digest, size);
    if (w.kind === 'follower') {
      // Another download of this digest (another repository or upstream) is writing it: do not
      // depend on it (it may be slow on purpose); these requests pass through instead.
      res.body?.destroy();
      w.stream.destroy();
      return { download: { kind: 'passthrough' }, done: settled };
    }
    try {
      await w.opened;
    } catch {
      // The disk refused the temp file (the store counted and logged it, and stops writing): nothing
      // was written, nobody reads behind it; these requests pass through instead.
      res.body?.destroy();
      return { download: { kind: 'passthrough' }, done: settled };
    }
    pipeline(res.body!, w.writer).catch(() => {
      /* the store's `done` reports it */
    });
    const done = w.done
      .then(
        () => catalog.noteBlob(this.name, repository, digest, namedBy),
        (err: unknown) => this.#log.warn({ digest, repository, err: String(err) }, 'blob not stored'),
      )
      .catch((err: unknown) => this.#log.warn({ digest, err: String(err) }, 'blob stored but not recorded'));
    return { download: { kind: 'writing', size }, done };
  }

  async listTags(repository: string, q: { n?: number; last?: string }): Promise<TagList & { upstreamPaginated: boolean }> {
    const stored = (): Promise<TagList & { upstreamPaginated: boolean }> => this.#stored!.listTags(repository);
    return this.#upstreamOrStored(async () => {
      try {
        return await this.#deadline(this.#up.listTags(repository, q), `tags of ${repository}`);
      } catch (e) {
        return this.#staleOr(e, stored);
      }
    }, stored);
  }

  async referrers(repository: string, digest: Digest, artifactType?: string): Promise<ReferrersAnswer> {
    const stored = (): Promise<ReferrersAnswer> => this.#storedReferrers(repository, digest);
    return this.#upstreamOrStored(async () => {
      try {
        return await this.#deadline(this.#up.referrers(repository, digest, artifactType), `referrers of ${repository}@${digest}`);
      } catch (e) {
        return this.#staleOr(e, stored);
      }
    }, stored);
  }

  /**
   * The stored referrers of `digest`: the recorded list, or — recorded from an upstream without
   * the API — `unsupported` when the referrers tag is stored (read next, from the store). With
   * neither, nothing is stored (MANIFEST_UNKNOWN): the upstream's answer or failure is the answer,
   * and no lookup of the referrers tag follows on an upstream known to be failing.
   */
  async #storedReferrers(repository: string, digest: Digest): Promise<ReferrersAnswer> {
    const r = await this.#stored!.referrers(repository, digest);
    if (r.kind === 'unsupported') await this.#stored!.fetchManifest(repository, referrersTag(digest));
    return r;
  }

  ping(): Promise<void> {
    return this.#up.ping();
  }

  close(): Promise<void> {
    return this.#up.close();
  }

  /**
   * `ask()` (the upstream, stale-if-error included) — unless the upstream is treated as failing
   * and the store has the answer: then that at once, marked stale and counted. With nothing
   * stored the upstream is asked anyway. Once the interval is over, one request at a time asks
   * the upstream whatever is stored (the probe): its answer closes the breaker, its failure
   * starts the interval again.
   */
  async #upstreamOrStored<T>(ask: () => Promise<T>, stored: () => Promise<T>): Promise<T> {
    const breaker = this.#breaker;
    const turn = breaker?.turn() ?? 'ask';
    if (turn === 'probe') {
      try {
        return await ask();
      } finally {
        breaker!.probed();
      }
    }
    if (turn === 'stored') {
      let r: T;
      try {
        r = await stored();
      } catch (miss) {
        if (isSigilError(miss) && /UNKNOWN$/.test(miss.code)) return ask(); // not stored: the upstream it is
        throw miss;
      }
      this.#metrics.staleResponses.inc({ upstream: this.name });
      return r;
    }
    return ask();
  }

  /** The stored answer when the upstream failed in a way stale-if-error covers; else the failure. */
  async #staleOr<T>(e: unknown, stored: () => Promise<T>): Promise<T> {
    if (!this.#stored || !this.#opts.staleIfError || !isSigilError(e) || !STALE_CODES.has(e.code)) throw e;
    try {
      const r = await stored();
      this.#metrics.staleResponses.inc({ upstream: this.name });
      return r;
    } catch (miss) {
      if (isSigilError(miss) && /UNKNOWN$/.test(miss.code)) throw e; // not stored: the upstream's failure is the answer
      throw miss;
    }
  }

  /**
   * With a store to fall back on, no metadata request waits longer than STALE_DEADLINE_MS; its
   * outcome tells the breaker whether the upstream is failing (logged when that changes, not per
   * request).
   */
  #deadline<T>(p: Promise<T>, what: string): Promise<T> {
    const breaker = this.#breaker;
    if (!breaker) return p;
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(new SigilError({ code: 'UPSTREAM_TIMEOUT', message: `upstream ${this.name}: ${what}: no answer within ${STALE_DEADLINE_MS} ms` })),
        STALE_DEADLINE_MS,
      );
    });
    p.catch(() => undefined);
    return Promise.race([p, late])
      .then(
        (v) => {
          this.#answered(breaker);
          return v;
        },
        (e: unknown) => {
          if (isSigilError(e) && STALE_CODES.has(e.code)) {
            if (breaker.failed()) {
              this.#log.warn(
                { upstream: this.name, cause: e.message, forMs: STALE_BREAKER_MS },
                'upstream failing: stored content is served without asking it first',
              );
            }
          } else if (isSigilError(e)) {
            this.#answered(breaker); // an answer ("not found", "denied"): the upstream is there
          }
          throw e;
        },
      )
      .finally(() => clearTimeout(timer));
  }

  #answered(breaker: UpstreamBreaker): void {
    if (breaker.answered()) this.#log.info({ upstream: this.name }, 'upstream answering again: asked first again');
  }
}
