import type { Logger } from 'pino';
import type { Metrics } from '../audit/metrics.js';
import type { Digest } from '../oci/digest.js';
import { recordId, type RecordRef } from '../store/catalog-keys.js';
import type { Catalog } from '../store/catalog.js';
import type { ContentStore } from '../store/content-store.js';
import type { Bucket } from './bucket.js';

/**
 * Uploads waiting at most: past it, new ones are dropped (counted, logged). The bucket is a
 * cache: a dropped object is uploaded by the next replica that commits it; the bound keeps a
 * dead or slow bucket from holding memory for every pull.
 */
export const REPLICATION_QUEUE_MAX = 1000;
/** Uploads at once: each holds about (BUCKET_PARTS_IN_FLIGHT + 1) × 5 MiB and one store read. */
export const REPLICATION_CONCURRENCY = 4;

/** The record kinds the bucket holds: what binds an object to a repository (tags, verdicts and referrers stay local). */
const REPLICATED_RECORDS: ReadonlySet<RecordRef['kind']> = new Set(['manifest', 'blob']);

type Task = { readonly kind: 'object'; readonly digest: Digest; readonly size: number } | { readonly kind: 'record'; readonly ref: RecordRef; readonly value: unknown };

export interface ReplicatorOptions {
  readonly bucket: Pick<Bucket, 'holds' | 'put' | 'putRecord'>;
  readonly content: ContentStore;
  readonly catalog: Catalog;
  readonly logger: Logger;
  readonly metrics?: Metrics | undefined;
  /** Overrides REPLICATION_QUEUE_MAX (tests). */
  readonly queueMax?: number;
  /** Overrides REPLICATION_CONCURRENCY. */
  readonly concurrency?: number;
}

/**
 * Replication into the shared bucket: what the local store commits (objects: only verified
 * ones reach it) and the catalog's `manifest` and `blob` records, uploaded in the background
 * after the commit — the listeners only queue, so a slow or dead bucket never slows a pull.
 * An object the bucket holds already is not sent again (a head first, none when this process
 * has just read it there: Bucket.holds; a record it has just read there is not sent either:
 * Bucket.putRecord); one evicted locally
 * before its turn is skipped. The queue is bounded and deduplicated (a record waiting is
 * replaced by its newer value); uploads run REPLICATION_CONCURRENCY at a time.
 */
export class Replicator {
  readonly #o: ReplicatorOptions;
  readonly #max: number;
  readonly #concurrency: number;
  readonly #queue = new Map<string, Task>();
  readonly #idle: Array<() => void> = [];
  #running = 0;
  #dropping = false;
  #closed = false;

  constructor(opts: ReplicatorOptions) {
    this.#o = opts;
    this.#max = opts.queueMax ?? REPLICATION_QUEUE_MAX;
    this.#concurrency = opts.concurrency ?? REPLICATION_CONCURRENCY;
    opts.content.onCommit((digest, size) => this.#enqueue(`o:${digest}`, { kind: 'object', digest, size }));
    opts.catalog.onRecord((ref, value) => {
      if (REPLICATED_RECORDS.has(ref.kind)) this.#enqueue(`r:${recordId(ref)}`, { kind: 'record', ref, value });
    });
  }

  /** Uploads waiting or running. */
  get pending(): number {
    return this.#queue.size + this.#running;
  }

  /** Resolves once nothing waits or runs (tests). */
  idle(): Promise<void> {
    if (this.pending === 0) return Promise.resolve();
    return new Promise((resolve) => this.#idle.push(resolve));
  }

  /** Queues nothing more, drops what waits and waits for the uploads running. */
  async close(): Promise<void> {
    this.#closed = true;
    this.#queue.clear();
    await this.idle();
  }

  #enqueue(key: string, task: Task): void {
    if (this.#closed) return;
    if (this.#queue.has(key)) {
      if (task.kind === 'record') this.#queue.set(key, task); // the newer value goes up
      return;
    }
    if (this.#queue.size >= this.#max) {
      this.#o.metrics?.sharedReplications.inc({ kind: task.kind, result: 'dropped' });
      if (!this.#dropping) this.#o.logger.warn({ queued: this.#queue.size, max: this.#max }, 'replication: the queue is full, new uploads are dropped until it has room');
      this.#dropping = true;
      return;
    }
    this.#dropping = false;
    this.#queue.set(key, task);
    queueMicrotask(() => this.#pump());
  }

  #pump(): void {
    while (this.#running < this.#concurrency && this.#queue.size > 0) {
      const [key, task] = this.#queue.entries().next().value as [string, Task];
      this.#queue.delete(key);
      this.#running++;
      this.#run(task)
        .then(
          (result) => this.#o.metrics?.sharedReplications.inc({ kind: task.kind, result }),
          (err: unknown) => {
            this.#o.metrics?.sharedReplications.inc({ kind: task.kind, result: 'failed' });
            this.#o.logger.warn({ task: describe(task), err: String(err) }, 'replication failed');
          },
        )
        .finally(() => {
          this.#running--;
          this.#pump();
          if (this.pending === 0) for (const resolve of this.#idle.splice(0)) resolve();
        });
    }
  }

  async #run(task: Task): Promise<'uploaded' | 'present' | 'gone' | 'failed'> {
    const { bucket, content } = this.#o;
    if (task.kind === 'record') return (await bucket.putRecord(task.ref, task.value)) ? 'uploaded' : 'failed';
    const there = await bucket.holds(task.digest, task.size);
    if (there === undefined) return 'failed';
    if (there) return 'present';
    const body = await content.openRead(task.digest);
    if (!body) return 'gone';
    return (await bucket.put(task.digest, task.size, body)) ? 'uploaded' : 'failed';
  }
}

function describe(task: Task): string {
  return task.kind === 'object' ? task.digest : recordId(task.ref).replace('\0', ' ');
}
