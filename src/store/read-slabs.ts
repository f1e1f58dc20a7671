import { READ_CHUNK_BYTES } from './limits.js';

/**
 * Idle slabs kept for the next stream: 32 × 256 KiB = 8 MiB at most when nothing is being read.
 * Enough for 16 warm streams to start without allocating; more streams allocate and give back
 * what fits.
 */
export const IDLE_SLABS_KEPT = 32;

/**
 * Fixed-size read buffers shared by every stored-object stream that writes into an HTTP response
 * itself (ObjectStream's pipe). A slab is taken to read a chunk of a file and given back once the
 * response reported that chunk written (its write callback, without an error): from then on its
 * socket no longer holds it, and the next read may overwrite it (object-stream.ts
 * doneWhenWritten: a stream that passes chunks on would still hold it, and gets fresh buffers).
 * A warm read then allocates nothing per chunk — on one core, fresh 256 KiB buffers per chunk
 * (and the garbage collections they bring) cost about a third of a warm read's CPU. A slab whose write failed or never
 * completed is not given back; the garbage collector takes it.
 */
export class SlabPool {
  readonly #idle: Buffer[] = [];

  constructor(
    readonly slabBytes: number,
    readonly idleKept: number,
  ) {}

  take(): Buffer {
    return this.#idle.pop() ?? Buffer.allocUnsafeSlow(this.slabBytes);
  }

  give(slab: Buffer): void {
    if (slab.length === this.slabBytes && this.#idle.length < this.idleKept) this.#idle.push(slab);
  }

  /** Slabs waiting to be taken (for specs). */
  get idle(): number {
    return this.#idle.length;
  }
}

/** The process's slabs for store reads. */
export const storeReadSlabs = new SlabPool(READ_CHUNK_BYTES, IDLE_SLABS_KEPT);
