/**
 * Blob hashing off the event loop. SHA-256 costs about 0.6 CPU-s per GiB (OpenSSL
 * with SHA-NI, measured here), as much again as the proxying itself: on the event
 * loop it halves what one sigil process can stream. Here each stream copies its
 * chunks into a shared-memory ring (layout: ring.ts) and a worker thread hashes
 * them on another core; the event loop pays a memcpy per chunk.
 *
 * Small blobs, and machines with one core, hash inline: a ring and a thread hop
 * cost more than they save there.
 */
import { createHash } from 'node:crypto';
import { availableParallelism } from 'node:os';
import { MessageChannel, Worker } from 'node:worker_threads';
import type { MessagePort } from 'node:worker_threads';
import type { Logger } from 'pino';
import { SigilError } from '../errors.js';
import {
  ABORTED, ALGORITHM, ALGORITHMS, CONTROL_BYTES, DATA_OFFSET, DIGEST_MAX_BYTES, DIGEST_OFFSET, DONE, DOORBELL_BYTES, END, FAILED, OPEN,
  READ, RING_BYTES, STATE, WRITTEN, digestLength,
} from './ring.js';
import type { HashAlgorithm } from './ring.js';
import type { WorkerMessage } from './worker.js';

/** At most this many hash workers: each hashes ~1.7 GB/s, more than one NIC's worth. */
export const HASH_WORKERS_MAX = 4;

/** Blobs known to be smaller than this hash inline (a thread hop costs more than it saves). */
export const OFF_THREAD_MIN_BYTES = 1024 * 1024;

/** Rings kept for reuse once their job is done (each RING_BYTES). */
const FREE_RINGS_MAX = 8;

/**
 * Rings in use at most (16 MiB): a ring is pinned for its stream's whole life, and a
 * slow client holds its stream open; past this, streams hash inline (a few hundred bytes).
 */
export const RINGS_IN_FLIGHT_MAX = 32;

/** A worker's own heap: it holds a hash state per job and nothing else. */
const WORKER_OLD_GENERATION_MB = 32;
const WORKER_YOUNG_GENERATION_MB = 8;

/** After this many workers died (a broken install, thread limits), the pool hashes inline. */
const WORKER_DEATHS_MAX = 3;

/**
 * A worker that makes no progress for this long is stuck: the stream fails (closed,
 * not served unchecked). Hashing a 512 KiB ring takes well under a millisecond.
 */
export const HASH_STALL_TIMEOUT_MS = 30_000;

const MASK = RING_BYTES - 1;

/**
 * The producer wakes the worker once this much is waiting (or at the end, or when the
 * ring is full), not per chunk: a wake-up per 64 KiB chunk cost more CPU than the copy.
 */
const WAKE_BYTES = RING_BYTES / 4;

/** A hash fed chunk by chunk. */
export interface StreamHash {
  /**
   * Adds bytes. Undefined: they are taken (copied), the caller may reuse its buffer.
   * A promise: the worker is a whole ring behind; the rest is taken when it resolves
   * (until then the caller must not change the buffer).
   */
  update(chunk: Uint8Array): Promise<void> | undefined;
  /** No more bytes: the digest, hex. */
  digest(): Promise<string>;
  /** The stream is gone: drop the job. */
  abort(): void;
}

class InlineHash implements StreamHash {
  readonly #hash;
  constructor(alg: HashAlgorithm) {
    this.#hash = createHash(alg);
  }
  update(chunk: Uint8Array): undefined {
    this.#hash.update(chunk);
    return undefined;
  }
  digest(): Promise<string> {
    return Promise.resolve(this.#hash.digest('hex'));
  }
  abort(): void {}
}

/** A hash on `pool`'s workers when there is a pool (it decides), else inline on the event loop. */
export function startHash(pool: HashPool | undefined, alg: HashAlgorithm, expectedBytes?: number): StreamHash {
  return pool !== undefined ? pool.start(alg, expectedBytes) : new InlineHash(alg);
}

function stalled(ms: number): SigilError {
  return new SigilError({ code: 'INTERNAL', message: `blob hashing: the hash worker made no progress for ${ms} ms` });
}

function workerGone(): SigilError {
  return new SigilError({ code: 'INTERNAL', message: 'blob hashing: the hash worker stopped' });
}

function ended(): SigilError {
  return new SigilError({ code: 'INTERNAL', message: 'blob hashing: the hash is already finished or aborted' });
}

/**
 * WRITTEN and READ start here, just below the Int32 maximum, so that every
 * off-thread blob crosses the counters' wrap-around in its first megabyte: the
 * wrapping arithmetic is exercised by every test, not only by 4 GiB blobs.
 */
export const COUNTER_START = 0x7ff0_0000;

/** Waits while ctrl[index] === value (woken by the worker's notify), or `timeoutMs`. */
async function waitWhile(ctrl: Int32Array, index: number, value: number, timeoutMs: number): Promise<'changed' | 'timed-out'> {
  const r = Atomics.waitAsync(ctrl, index, value, timeoutMs);
  const outcome = r.async ? await r.value : r.value;
  return outcome === 'timed-out' ? 'timed-out' : 'changed';
}

class RingHash implements StreamHash {
  readonly #slot: Slot;
  readonly #sab: SharedArrayBuffer;
  readonly #ctrl: Int32Array;
  readonly #data: Uint8Array;
  readonly #alg: HashAlgorithm;
  #written = COUNTER_START;
  #unannounced = 0;
  #settled = false;

  constructor(slot: Slot, sab: SharedArrayBuffer, alg: HashAlgorithm) {
    this.#slot = slot;
    this.#sab = sab;
    this.#ctrl = new Int32Array(sab, 0, CONTROL_BYTES / 4);
    this.#data = new Uint8Array(sab, DATA_OFFSET, RING_BYTES);
    this.#alg = alg;
  }

  update(chunk: Uint8Array): Promise<void> | undefined {
    let off = 0;
    while (off < chunk.length) {
      const state = Atomics.load(this.#ctrl, STATE);
      if (this.#settled || state !== OPEN) return Promise.reject(state === FAILED ? workerGone() : ended());
      const read = Atomics.load(this.#ctrl, READ);
      const room = RING_BYTES - ((this.#written - read) | 0);
      if (room === 0) {
        this.#announce();
        const rest = chunk.subarray(off);
        const ms = this.#slot.pool.stallTimeoutMs;
        return waitWhile(this.#ctrl, READ, read, ms).then((outcome) => {
          if (outcome === 'timed-out' && Atomics.load(this.#ctrl, READ) === read) {
            this.#slot.retire();
            throw stalled(ms);
          }
          return this.update(rest);
        });
      }
      const pos = this.#written & MASK;
      const n = Math.min(room, RING_BYTES - pos, chunk.length - off);
      this.#data.set(chunk.subarray(off, off + n), pos);
      this.#written = (this.#written + n) | 0;
      Atomics.store(this.#ctrl, WRITTEN, this.#written);
      this.#unannounced += n;
      off += n;
    }
    if (this.#unannounced >= WAKE_BYTES) this.#announce();
    return undefined;
  }

  #announce(): void {
    this.#unannounced = 0;
    this.#slot.ring();
  }

  async digest(): Promise<string> {
    if (this.#settled) throw ended();
    try {
      if (Atomics.compareExchange(this.#ctrl, STATE, OPEN, END) !== OPEN) throw workerGone();
      this.#slot.ring();
      for (;;) {
        const state = Atomics.load(this.#ctrl, STATE);
        if (state === DONE) break;
        if (state !== END) throw workerGone();
        const ms = this.#slot.pool.stallTimeoutMs;
        if ((await waitWhile(this.#ctrl, STATE, END, ms)) === 'timed-out' && Atomics.load(this.#ctrl, STATE) === END) {
          this.#slot.retire();
          throw stalled(ms);
        }
      }
    } catch (err) {
      this.#settle(false);
      throw err;
    }
    const hex = Buffer.from(this.#sab, DIGEST_OFFSET, digestLength(this.#alg)).toString('hex');
    this.#settle(true);
    return hex;
  }

  abort(): void {
    if (this.#settled) return;
    const prev = Atomics.compareExchange(this.#ctrl, STATE, OPEN, ABORTED);
    if (prev === END) Atomics.compareExchange(this.#ctrl, STATE, END, ABORTED);
    // a pending update() (ring full) or digest() of this job wakes up now and fails
    Atomics.notify(this.#ctrl, READ);
    Atomics.notify(this.#ctrl, STATE);
    this.#slot.ring();
    this.#settle(false);
  }

  /** The worker is gone: whoever waits on this job wakes up and fails. */
  fail(): void {
    Atomics.store(this.#ctrl, STATE, FAILED);
    Atomics.notify(this.#ctrl, READ);
    Atomics.notify(this.#ctrl, STATE);
  }

  #settle(reusable: boolean): void {
    if (this.#settled) return;
    this.#settled = true;
    this.#slot.drop(this);
    // DONE: the worker has dropped the job, the ring is free. An aborted ring may still be read: let it go.
    if (reusable) this.#slot.recycle(this.#sab);
  }
}

interface Slot {
  readonly pool: HashPool;
  readonly worker: Worker;
  /** A finished job's ring, free for the next job. */
  recycle(sab: SharedArrayBuffer): void;
  /** The worker is stuck: fail its jobs, stop it, count it as dead. */
  retire(): void;
  readonly port: MessagePort;
  readonly jobs: Set<RingHash>;
  ring(): void;
  /** A job in flight keeps the process alive (a pending Atomics.waitAsync does not). */
  add(job: RingHash): void;
  drop(job: RingHash): void;
  dead: boolean;
}

export interface HashPoolOptions {
  /** Worker threads at most (default: one less than the cores, at most HASH_WORKERS_MAX; 0: hash inline). */
  readonly size?: number;
  /** Default HASH_STALL_TIMEOUT_MS (tests shorten it). */
  readonly stallTimeoutMs?: number;
  /** The worker's module (tests substitute a broken one). */
  readonly workerUrl?: URL;
  /** Where worker deaths and stalls are reported. */
  readonly logger?: Logger;
}

/** An app's hash workers, started on first use. */
export class HashPool {
  readonly stallTimeoutMs: number;
  readonly #workerUrl: URL;
  readonly #logger: Logger | undefined;
  #size: number;
  #deaths = 0;
  readonly #slots: Slot[] = [];
  readonly #free: SharedArrayBuffer[] = [];
  #closed = false;

  constructor(opts: HashPoolOptions = {}) {
    this.#size = Math.max(0, opts.size ?? Math.min(HASH_WORKERS_MAX, availableParallelism() - 1));
    this.stallTimeoutMs = opts.stallTimeoutMs ?? HASH_STALL_TIMEOUT_MS;
    this.#workerUrl = opts.workerUrl ?? new URL('./worker.js', import.meta.url);
    this.#logger = opts.logger;
  }

  /** A hash for a stream of `expectedBytes` (undefined: unknown); inline when off-thread would not pay. */
  start(alg: HashAlgorithm, expectedBytes?: number): StreamHash {
    if (
      this.#size === 0 ||
      this.#closed ||
      (expectedBytes !== undefined && expectedBytes < OFF_THREAD_MIN_BYTES) ||
      this.#inFlight() >= RINGS_IN_FLIGHT_MAX
    ) {
      return new InlineHash(alg);
    }
    const slot = this.#pick();
    if (slot === undefined) return new InlineHash(alg);
    const sab = this.#free.pop() ?? new SharedArrayBuffer(DATA_OFFSET + RING_BYTES);
    const ctrl = new Int32Array(sab, 0, CONTROL_BYTES / 4);
    ctrl.fill(0);
    new Uint8Array(sab, DIGEST_OFFSET, DIGEST_MAX_BYTES).fill(0);
    Atomics.store(ctrl, WRITTEN, COUNTER_START);
    Atomics.store(ctrl, READ, COUNTER_START);
    Atomics.store(ctrl, ALGORITHM, ALGORITHMS.indexOf(alg));
    Atomics.store(ctrl, STATE, OPEN);
    const job = new RingHash(slot, sab, alg);
    slot.add(job);
    slot.port.postMessage({ job: sab } satisfies WorkerMessage);
    slot.ring();
    return job;
  }

  /** Jobs in flight on each live worker (tests, metrics). */
  load(): number[] {
    return this.#slots.filter((s) => !s.dead).map((s) => s.jobs.size);
  }

  /** Whether new streams still go to workers (false once WORKER_DEATHS_MAX workers died, or closed). */
  offThread(): boolean {
    return this.#size > 0 && !this.#closed;
  }

  async close(): Promise<void> {
    this.#closed = true;
    const slots = this.#slots.splice(0);
    await Promise.all(
      slots.map(async (s) => {
        s.port.postMessage({ stop: true } satisfies WorkerMessage);
        s.ring();
        await s.worker.terminate();
      }),
    );
  }

  #inFlight(): number {
    let n = 0;
    for (const s of this.#slots) n += s.jobs.size;
    return n;
  }

  /** The least busy live worker, starting one while fewer than #size run. */
  #pick(): Slot | undefined {
    for (let i = this.#slots.length - 1; i >= 0; i--) if (this.#slots[i].dead) this.#slots.splice(i, 1);
    let best: Slot | undefined;
    for (const s of this.#slots) if (best === undefined || s.jobs.size < best.jobs.size) best = s;
    if (best !== undefined && (best.jobs.size === 0 || this.#slots.length >= this.#size)) return best;
    try {
      return this.#spawn();
    } catch {
      return best; // no new thread (resource limits): share one, or hash inline
    }
  }

  #spawn(): Slot {
    const { port1, port2 } = new MessageChannel();
    const doorbell = new SharedArrayBuffer(DOORBELL_BYTES);
    const bell = new Int32Array(doorbell);
    const worker = new Worker(this.#workerUrl, {
      workerData: { port: port2, doorbell },
      transferList: [port2],
      resourceLimits: { maxOldGenerationSizeMb: WORKER_OLD_GENERATION_MB, maxYoungGenerationSizeMb: WORKER_YOUNG_GENERATION_MB },
    });
    worker.unref();
    port1.unref();
    const free = this.#free;
    const slot: Slot = {
      pool: this,
      worker,
      recycle(sab) {
        if (free.length < FREE_RINGS_MAX) free.push(sab);
      },
      retire() {
        if (slot.dead) return;
        gone('stalled');
        void worker.terminate();
      },
      port: port1,
      jobs: new Set(),
      dead: false,
      ring() {
        Atomics.add(bell, 0, 1);
        Atomics.notify(bell, 0);
      },
      add(job) {
        if (this.jobs.size === 0) worker.ref();
        this.jobs.add(job);
      },
      drop(job) {
        if (this.jobs.delete(job) && this.jobs.size === 0) worker.unref();
      },
    };
    const gone = (why: string): void => {
      if (slot.dead) return;
      slot.dead = true;
      const jobs = slot.jobs.size;
      for (const job of slot.jobs) job.fail();
      slot.jobs.clear();
      worker.unref();
      port1.close();
      if (this.#closed) return;
      this.#deaths++;
      this.#logger?.warn({ why, jobs, deaths: this.#deaths }, 'blob hashing: a hash worker stopped; its streams failed');
      if (this.#deaths >= WORKER_DEATHS_MAX && this.#size > 0) {
        this.#size = 0;
        this.#logger?.error({ deaths: this.#deaths }, 'blob hashing: too many hash workers stopped; hashing on the event loop from now on');
      }
    };
    worker.on('error', (err) => gone(err.message));
    worker.once('exit', (code) => gone(`exit ${code}`));
    this.#slots.push(slot);
    return slot;
  }
}
