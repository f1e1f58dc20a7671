import { DeleteObjectCommand, GetObjectCommand, HeadObjectCommand, ListObjectsV2Command, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import { getSignedUrl } from '@aws-sdk/s3-request-presigner';
import type { Readable } from 'node:stream';
import type { Logger } from 'pino';
import type { Metrics } from '../audit/metrics.js';
import type { SharedS3Config } from '../config/types.js';
import type { LRUCache } from 'lru-cache';
import { lru } from '../lru.js';
import { digestAlgorithm, isDigest, type Digest } from '../oci/digest.js';
import { keyOf, recordId, type RecordRef } from '../store/catalog-keys.js';
import { readCapped } from './read-capped.js';
import { redactUrl } from './redact-url.js';
import { UploadTally } from './upload-tally.js';

/** After a failure the bucket is taken as down this long: every call answers "unavailable" at once, then one is tried again. */
export const BUCKET_RETRY_MS = 30_000;
/** A bucket that does not accept a connection within this is down (reads sit on the request path). */
export const BUCKET_CONNECT_TIMEOUT_MS = 2_000;
/** Reads (head, object and record GETs) and deletes wait this long for the answer's headers: past it, the pull goes below instead. */
export const BUCKET_ANSWER_TIMEOUT_MS = 5_000;
/** Each upload request (a record, an object, one part) may take this long: uploads run in the background, a part is 5 MiB. */
export const BUCKET_UPLOAD_TIMEOUT_MS = 120_000;
/** A connection idle this long (a stalled body) fails. */
export const BUCKET_IDLE_TIMEOUT_MS = 30_000;
/** Multipart part size: S3's minimum; a smaller object is one PutObject, sent once its bytes checked. */
export const BUCKET_PART_BYTES = 5 * 1024 * 1024;
/** Parts of one upload in flight: an upload holds about (this + 1) parts in memory. */
export const BUCKET_PARTS_IN_FLIGHT = 2;
/** A record (a few hundred bytes: a media type, at most MAX_BLOB_NAMERS digests) read back is at most this big. */
export const RECORD_MAX_BYTES = 64 * 1024;
/**
 * What this process saw the bucket hold (an object's size, a record's value) is taken as still
 * there this long, so that uploading what it just read is no request at all: a replica that
 * fills its store from the bucket replicates those objects and records back. Objects are evicted
 * by the janitor (one of these processes: its deletes go through `delete`, which forgets them)
 * and records never, so this only bounds how long a deletion by someone else goes unseen.
 */
export const BUCKET_SEEN_TTL_MS = 10 * 60_000;
/** Objects and records remembered as seen, at most (each a key and a short value). */
export const BUCKET_SEEN_MAX = 20_000;

export interface BucketDeps {
  readonly logger: Logger;
  readonly metrics?: Metrics | undefined;
  /** Monotonic clock (ms) of the down window (tests); default performance.now. */
  readonly now?: (() => number) | undefined;
}

/**
 * The shared bucket (`cache.shared.s3`): objects by digest, complete and digest-checked, and the
 * catalog's per-repository records, on any S3-compatible store. Keys:
 * `<prefix>objects/<alg>/<hex>` and `<prefix>records/<kind>/<encodeURIComponent(catalog key)>.json`.
 *
 * Every call answers fast when the bucket fails: a network error, a timeout, a 5xx or a refusal
 * (403, …) makes it "down" for BUCKET_RETRY_MS, during which calls answer `undefined`
 * (unavailable) without a request; the transitions are logged once each and counted
 * (sigil_shared_unavailable_total{engine="s3"}, sigil_shared_up{engine="s3"}). Credentials are
 * never logged (messages name the endpoint and bucket only).
 */
export class Bucket {
  readonly #client: S3Client;
  readonly #bucket: string;
  readonly #prefix: string;
  readonly #log: Logger;
  readonly #metrics: Metrics | undefined;
  readonly #now: () => number;
  #downUntil: number | undefined;
  /** Objects (their size) and records (their JSON) seen in the bucket lately: BUCKET_SEEN_TTL_MS. */
  readonly #seen: LRUCache<string, string>;

  constructor(cfg: SharedS3Config, deps: BucketDeps) {
    this.#bucket = cfg.bucket;
    this.#prefix = cfg.prefix;
    // an endpoint may carry a password (http://user:secret@host): logged without it
    this.#log = deps.logger.child({ bucket: cfg.bucket, ...(cfg.endpoint !== undefined ? { endpoint: redactUrl(cfg.endpoint) } : {}) });
    this.#metrics = deps.metrics;
    this.#now = deps.now ?? (() => performance.now());
    // (ttlResolution 0: every lookup reads the injected clock)
    this.#seen = lru<string, string>(BUCKET_SEEN_MAX, { ttl: BUCKET_SEEN_TTL_MS, ttlResolution: 0, perf: { now: this.#now } });
    this.#client = new S3Client({
      region: cfg.region,
      forcePathStyle: cfg.forcePathStyle,
      ...(cfg.endpoint !== undefined ? { endpoint: cfg.endpoint } : {}),
      // A copy: the SDK marks where credentials came from on the object itself, and a compiled config is frozen.
      ...(cfg.credentials !== undefined ? { credentials: { ...cfg.credentials } } : {}),
      // A failed call is answered from below at once: the bucket is retried after BUCKET_RETRY_MS, not per call.
      maxAttempts: 1,
      // S3-compatible stores (MinIO, Ceph, s3rver) do not all take the SDK's default CRC trailers; the digest is checked here.
      requestChecksumCalculation: 'WHEN_REQUIRED',
      responseChecksumValidation: 'WHEN_REQUIRED',
      requestHandler: {
        connectionTimeout: BUCKET_CONNECT_TIMEOUT_MS,
        requestTimeout: BUCKET_UPLOAD_TIMEOUT_MS,
        throwOnRequestTimeout: true,
        socketTimeout: BUCKET_IDLE_TIMEOUT_MS,
      },
    });
    this.#metrics?.sharedUp.set({ engine: 's3' }, 1);
  }

  /** False while the bucket is taken as down (after a failure, for BUCKET_RETRY_MS). */
  get available(): boolean {
    return this.#downUntil === undefined || this.#now() >= this.#downUntil;
  }

  /** Size when the bucket holds the object; null when not; undefined when unavailable. */
  async head(digest: Digest): Promise<number | null | undefined> {
    return this.#call('head', async () => {
      const r = await this.#client.send(new HeadObjectCommand({ Bucket: this.#bucket, Key: this.objectKey(digest) }), read);
      return r.ContentLength ?? null;
    }).then((size) => this.#sawObject(digest, size));
  }

  /**
   * Does the bucket hold the object with this size? Answered without a request when this process
   * saw it there lately (read, written or headed: BUCKET_SEEN_TTL_MS); else a head. Undefined
   * when unavailable.
   */
  async holds(digest: Digest, size: number): Promise<boolean | undefined> {
    if (this.#seen.get(objectSeen(digest)) === String(size)) return true;
    const there = await this.head(digest);
    return there === undefined ? undefined : there === size;
  }

  /**
   * A stream of the object, or of the range `start`–`end` (inclusive, within the object); `size`
   * is the whole object's. null when absent; undefined when unavailable. The bytes are as stored:
   * the caller checks them (they were checked on the way in).
   */
  async open(digest: Digest, range?: { start: number; end: number }): Promise<{ size: number; body: Readable } | null | undefined> {
    return this.#call('open', async () => {
      const r = await this.#client.send(
        new GetObjectCommand({ Bucket: this.#bucket, Key: this.objectKey(digest), ...(range ? { Range: `bytes=${range.start}-${range.end}` } : {}) }),
        read,
      );
      const body = r.Body as Readable | undefined;
      const total = range ? Number(/\/(\d+)$/.exec(r.ContentRange ?? '')?.[1]) : r.ContentLength;
      if (!body || total === undefined || !Number.isSafeInteger(total)) {
        body?.destroy();
        throw new Error(`GET ${digest}: no body or size in the answer`);
      }
      return { size: total, body };
    }).then((obj) => {
      this.#sawObject(digest, obj === null ? null : obj?.size);
      return obj;
    });
  }

  /**
   * Uploads bytes that must hash to `digest` and be `size` long. They are hashed and counted as
   * they flow to the upload (upload-tally.ts), which completes only if both match: a small
   * object is one PutObject sent after the check, a big one a multipart upload whose completion
   * is never sent on a mismatch (its parts are aborted, best effort — an uncompleted multipart
   * upload is never an object). Resolves false, leaving no object, on a mismatch, a source
   * error or a bucket failure (or unavailable).
   */
  async put(digest: Digest, size: number, body: Readable): Promise<boolean> {
    if (!this.available) {
      body.destroy();
      return false;
    }
    const tally = new UploadTally(digest, size);
    body.on('error', (err) => tally.sourceError(err));
    body.pipe(tally);
    const upload = new Upload({
      client: this.#client,
      params: { Bucket: this.#bucket, Key: this.objectKey(digest), Body: tally, ContentType: 'application/octet-stream' },
      partSize: BUCKET_PART_BYTES,
      queueSize: BUCKET_PARTS_IN_FLIGHT,
    });
    try {
      await upload.done();
      this.#ok();
      this.#sawObject(digest, size);
      return true;
    } catch (err) {
      body.destroy();
      if (tally.refused !== undefined) {
        this.#log.warn({ digest, reason: tally.refused }, 'bucket: upload refused, the bytes are not the object');
      } else if (tally.sourceFailed) {
        this.#log.warn({ digest, err: String(err) }, 'bucket: upload source failed');
      } else {
        this.#failed('put', err);
      }
      return false;
    }
  }

  /** The record's value; null when absent (or unreadable JSON); undefined when unavailable. */
  async getRecord(ref: RecordRef): Promise<unknown | null | undefined> {
    return this.#call('getRecord', async () => {
      const r = await this.#client.send(new GetObjectCommand({ Bucket: this.#bucket, Key: this.recordKey(ref) }), read);
      const body = r.Body as Readable | undefined;
      if (!body || (r.ContentLength ?? 0) > RECORD_MAX_BYTES) {
        body?.destroy();
        this.#log.warn({ ref, size: r.ContentLength }, 'bucket: record too big, taken as absent');
        return null;
      }
      const bytes = await readCapped(body, RECORD_MAX_BYTES);
      try {
        const value = bytes === undefined ? null : (JSON.parse(bytes.toString('utf8')) as unknown);
        if (value !== null) this.#seen.set(recordSeen(ref), JSON.stringify(value));
        return value;
      } catch {
        this.#log.warn({ ref }, 'bucket: record is not JSON, taken as absent');
        return null;
      }
    });
  }

  /** Writes the record, unless this process saw the bucket hold this very value lately (BUCKET_SEEN_TTL_MS): then no request. */
  async putRecord(ref: RecordRef, value: unknown): Promise<boolean> {
    const Body = JSON.stringify(value);
    if (this.#seen.get(recordSeen(ref)) === Body) return true;
    const ok = await this.#call('putRecord', async () => {
      await this.#client.send(new PutObjectCommand({ Bucket: this.#bucket, Key: this.recordKey(ref), Body, ContentType: 'application/json' }));
      return true;
    });
    if (ok === true) this.#seen.set(recordSeen(ref), Body);
    return ok === true;
  }

  /** A URL that GETs the object for `ttlSeconds` (signed here, no request); undefined while the bucket is down. */
  async presign(digest: Digest, ttlSeconds: number): Promise<string | undefined> {
    if (!this.available) return undefined;
    return getSignedUrl(this.#client, new GetObjectCommand({ Bucket: this.#bucket, Key: this.objectKey(digest) }), { expiresIn: ttlSeconds });
  }

  async delete(digest: Digest): Promise<boolean> {
    this.#seen.delete(objectSeen(digest));
    const ok = await this.#call('delete', async () => {
      // (a delete may sit on the request path: a wrong object found by a pull, shared-store.ts)
      await this.#client.send(new DeleteObjectCommand({ Bucket: this.#bucket, Key: this.objectKey(digest) }), read);
      return true;
    });
    return ok === true;
  }

  /** Every object (keys that are not an object's are skipped); throws when the bucket fails meanwhile. */
  async *list(): AsyncIterable<{ digest: Digest; size: number; lastModified: number }> {
    const Prefix = `${this.#prefix}objects/`;
    let ContinuationToken: string | undefined;
    do {
      let page;
      try {
        page = await this.#client.send(new ListObjectsV2Command({ Bucket: this.#bucket, Prefix, ...(ContinuationToken ? { ContinuationToken } : {}) }), read);
        this.#ok();
      } catch (err) {
        this.#failed('list', err);
        throw err;
      }
      for (const o of page.Contents ?? []) {
        const digest = (o.Key ?? '').slice(Prefix.length).replace('/', ':');
        if (isDigest(digest)) yield { digest, size: o.Size ?? 0, lastModified: o.LastModified?.getTime() ?? 0 };
      }
      ContinuationToken = page.IsTruncated ? page.NextContinuationToken : undefined;
    } while (ContinuationToken);
  }

  /** The key of an object. */
  objectKey(digest: Digest): string {
    return `${this.#prefix}objects/${digestAlgorithm(digest)}/${digest.slice(digest.indexOf(':') + 1)}`;
  }

  /** The key of a record (its catalog key, from catalog-keys.ts). */
  recordKey(ref: RecordRef): string {
    return `${this.#prefix}records/${ref.kind}/${encodeURIComponent(keyOf(ref))}.json`;
  }

  close(): void {
    this.#client.destroy();
  }

  /** Remembers what a head or read found of an object (a size), or forgets it (absent); passes the answer on. */
  #sawObject<T extends number | null | undefined>(digest: Digest, size: T): T {
    if (typeof size === 'number') this.#seen.set(objectSeen(digest), String(size));
    else if (size === null) this.#seen.delete(objectSeen(digest));
    return size;
  }

  /** Runs one call unless the bucket is down: absent (404) → null, a failure → undefined (and down). */
  async #call<T>(op: string, f: () => Promise<T>): Promise<T | null | undefined> {
    if (!this.available) return undefined;
    try {
      const v = await f();
      this.#ok();
      return v;
    } catch (err) {
      if (statusOf(err) === 404) {
        this.#ok();
        return null;
      }
      this.#failed(op, err);
      return undefined;
    }
  }

  #ok(): void {
    if (this.#downUntil === undefined) return;
    this.#downUntil = undefined;
    this.#metrics?.sharedUp.set({ engine: 's3' }, 1);
    this.#log.info('bucket: available again');
  }

  #failed(op: string, err: unknown): void {
    const wasUp = this.#downUntil === undefined;
    this.#downUntil = this.#now() + BUCKET_RETRY_MS;
    if (!wasUp) return;
    this.#metrics?.sharedUnavailable.inc({ engine: 's3' });
    this.#metrics?.sharedUp.set({ engine: 's3' }, 0);
    const e = err as { name?: string; message?: string };
    this.#log.warn({ op, status: statusOf(err), error: `${e.name ?? 'Error'}: ${e.message ?? String(err)}`, retryMs: BUCKET_RETRY_MS }, 'bucket: unavailable, pulls go on without it');
  }
}

const objectSeen = (digest: Digest): string => `o ${digest}`;
const recordSeen = (ref: RecordRef): string => `r ${recordId(ref)}`;

/** Options of a read (or a delete) on the request path: its answer within BUCKET_ANSWER_TIMEOUT_MS. */
const read = { requestTimeout: BUCKET_ANSWER_TIMEOUT_MS };

function statusOf(err: unknown): number | undefined {
  return (err as { $metadata?: { httpStatusCode?: number } } | undefined)?.$metadata?.httpStatusCode;
}
