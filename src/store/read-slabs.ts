import { READ_CHUNK_BYTES } from './limits.js';

/**
 * What the slabs of every piped store read together aim at: a stream's slabs are sized from its
 * share of this (budget ÷ (streams reading × the slabs a stream has out)). Few streams then read in
 * big chunks, many in smaller ones, so memory per stream falls as streams are added instead of
 * growing with them. 8 MiB: up to 4 streams read in SLAB_MAX_BYTES chunks, from 16 on each reads
 * in SLAB_MIN_BYTES ones.
 */
export const READ_BUDGET_BYTES = 8 * 1024 * 1024;

/**
 * A stream's chunks are never bigger: one warm 256 MiB read pinned to one core measured ~595 MB/s
 * in 256 KiB chunks and ~680 MB/s in 1 MiB ones (fewer reads, socket writes and event-loop turns);
 * 4 MiB were within the noise of 1 MiB.
 */
export const SLAB_MAX_BYTES = 1024 * 1024;

/**
 * Nor smaller: READ_CHUNK_BYTES, what every stream read before slabs were sized. 64 streams
 * warm in 128 KiB slabs measured 546–583 MB/s in all against 742–825 in 256 KiB ones, and
 * peaked 106–108 MiB above their start (the sizes changing as streams came and went: slabs of
 * the old size dropped, new ones allocated) against 2–37 MiB.
 */
export const SLAB_MIN_BYTES = READ_CHUNK_BYTES;

/**
 * Slabs a piped stream has out at once: one being read while the one before is written. Memory
 * per warm stream is then two chunks, whatever the client's speed.
 */
export const SLABS_PER_STREAM = 2;

/**
 * Idle slabs kept for the next streams, of whatever sizes, at most this many bytes (when nothing
 * is being read); a slab allocated because none of its size was idle drops an idle one of another
 * size.
 */
export const IDLE_BYTES_KEPT = 8 * 1024 * 1024;

export interface SlabPoolOptions {
  readonly budgetBytes: number;
  readonly minBytes: number;
  readonly maxBytes: number;
  /** The slabs one stream has out at once (SLABS_PER_STREAM). */
  readonly slabsPerStream: number;
  readonly idleBytesKept: number;
}

/**
 * Read buffers shared by every stored-object stream that writes into an HTTP response itself
 * (ObjectStream's pipe). A slab is taken to read a chunk of a file and given back once the
 * response reported that chunk written (its write callback, without an error): from then on its
 * socket no longer holds it, and the next read may overwrite it (object-stream.ts
 * doneWhenWritten: a stream that passes chunks on would still hold it, and gets fresh buffers).
 * A warm read then allocates nothing per chunk — on one core, fresh buffers per chunk (and the
 * garbage collections they bring) cost about a third of a warm read's CPU. A slab whose write
 * failed or never completed is not given back; the garbage collector takes it.
 *
 * A slab's size is chosen when it is taken, from the streams reading then (`enter`): a power of
 * two between minBytes and maxBytes, budgetBytes ÷ (streams × slabsPerStream) rounded down. Slabs
 * out at once are then about budgetBytes in all, or minBytes × slabsPerStream per stream past
 * budgetBytes ÷ (minBytes × slabsPerStream) streams.
 */
export class SlabPool {
  readonly #o: SlabPoolOptions;
  /** Idle slabs by size. */
  readonly #idle = new Map<number, Buffer[]>();
  #idleBytes = 0;
  #streams = 0;
  /**
   * The slabs this pool handed out and not had back: only these are taken back, once each (not
   * a view of one, not another buffer, not one given twice, which two streams would then share).
   */
  readonly #out = new WeakSet<Buffer>();

  constructor(opts: SlabPoolOptions) {
    if (!isPowerOfTwo(opts.minBytes) || !isPowerOfTwo(opts.maxBytes) || opts.minBytes > opts.maxBytes) {
      throw new RangeError(`slab sizes must be powers of two, min ≤ max (got ${opts.minBytes}, ${opts.maxBytes})`);
    }
    this.#o = opts;
  }

  /**
   * A stream starts reading; the function returned says it stopped (once; later calls do nothing).
   * A stream counts until its destination has taken its last slab, not only while it reads: a slow
   * client's last chunks are still out of the pool (object-stream.ts).
   */
  enter(): () => void {
    this.#streams++;
    let left = false;
    return () => {
      if (left) return;
      left = true;
      this.#streams--;
    };
  }

  /** The size of the next slab taken. */
  slabBytes(): number {
    const share = this.#o.budgetBytes / (Math.max(this.#streams, 1) * this.#o.slabsPerStream);
    if (share >= this.#o.maxBytes) return this.#o.maxBytes;
    if (share <= this.#o.minBytes) return this.#o.minBytes;
    return 2 ** Math.floor(Math.log2(share));
  }

  take(): Buffer {
    const bytes = this.slabBytes();
    let slab = this.#idle.get(bytes)?.pop();
    if (slab !== undefined) this.#idleBytes -= bytes;
    else {
      // None idle of this size: an idle slab of another size (taken when more or fewer streams read)
      // makes room, or idle slabs of sizes no longer taken would fill idleBytesKept for good and
      // every slab of the size taken now would be allocated anew and dropped once written.
      this.#dropIdleOtherThan(bytes);
      slab = Buffer.allocUnsafeSlow(bytes);
    }
    this.#out.add(slab);
    return slab;
  }

  give(slab: Buffer): void {
    if (!this.#out.delete(slab)) return;
    const bytes = slab.length;
    if (this.#idleBytes + bytes > this.#o.idleBytesKept) return;
    const list = this.#idle.get(bytes);
    if (list === undefined) this.#idle.set(bytes, [slab]);
    else list.push(slab);
    this.#idleBytes += bytes;
  }

  #dropIdleOtherThan(bytes: number): void {
    for (const [size, list] of this.#idle) {
      if (size === bytes || list.length === 0) continue;
      list.pop();
      this.#idleBytes -= size;
      if (list.length === 0) this.#idle.delete(size);
      return;
    }
  }

  /** Slabs waiting to be taken (specs). */
  get idle(): number {
    let n = 0;
    for (const list of this.#idle.values()) n += list.length;
    return n;
  }

  /** Streams reading now (specs). */
  get streams(): number {
    return this.#streams;
  }
}

const isPowerOfTwo = (n: number): boolean => Number.isInteger(n) && n > 0 && (n & (n - 1)) === 0;

/** The process's slabs for store reads. */
export const storeReadSlabs = new SlabPool({
  budgetBytes: READ_BUDGET_BYTES,
  minBytes: SLAB_MIN_BYTES,
  maxBytes: SLAB_MAX_BYTES,
  slabsPerStream: SLABS_PER_STREAM,
  idleBytesKept: IDLE_BYTES_KEPT,
});
