import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

/**
 * Bytes of dropped blob buffers between two young-generation collections.
 *
 * A blob streamed through sigil arrives in buffers made fresh for every chunk (by the upstream's
 * socket, or by a follower's read of the file being written), each dropped once the client and
 * the store have it. Their memory is outside V8's heap, freed only when the small objects that
 * hold it are collected. A stream makes few other objects, so V8's young generation rarely fills
 * and is rarely collected: the dropped buffers pile up until their total trips V8's
 * external-memory limit, which starts a major (whole-heap) collection, about every 18 MiB of blob.
 * Measured on a cold fill of 256 MiB, pinned to one core (bench/profile-fill.js): 11–20 major
 * collections, 146–200 MB/s, peak RSS ~185 MiB; with a young collection every 16 MiB, none, 231–309
 * MB/s, peak RSS 136 MiB (bench/results/2026-12-04-young-sweeps.md). Every 4 MiB was worse: a
 * buffer still in flight at two young collections in a row is moved to the old generation, where
 * only a major one frees it.
 * Not solved: after the process was idle a few seconds, a fill has ~20 major collections again,
 * whatever the pace (4, 8 or 16 MiB) (the same page, `profile-fill --fills 3 --pause 6`).
 * A smaller young generation (`--max-semi-space-size=2`) has the same effect on blobs, but it cost
 * ~20% more CPU per manifest request, and needs a flag on every command line that starts sigil.
 */
export const YOUNG_SWEEP_BYTES = 16 * 1024 * 1024;

/** Asks V8 for a young-generation collection. */
export type Collect = () => void;

/**
 * V8's young-generation collection, run as a task of its own (not inside the caller), or undefined
 * when this V8 does not offer it (then nothing is asked: V8 collects as it would anyway).
 * `--expose-gc` set at run time gives `gc` to contexts created afterwards, such as this one; it is
 * unset right after, so that no later context (verify/condition-run.ts runs CEL conditions in
 * one) has it, and the main context never had it.
 */
export function minorCollection(): Collect | undefined {
  try {
    setFlagsFromString('--expose-gc');
    const gc = runInNewContext('gc') as unknown;
    if (typeof gc !== 'function') return undefined;
    return () => (gc as (opts: object) => void)({ type: 'minor', execution: 'async' });
  } catch {
    return undefined;
  } finally {
    setFlagsFromString('--no-expose-gc');
  }
}

/** Counts dropped blob bytes and asks for a young collection once every `every` of them. */
export class YoungSweeps {
  readonly #collect: Collect | undefined;
  readonly #every: number;
  #since = 0;

  constructor(collect: Collect | undefined, every = YOUNG_SWEEP_BYTES) {
    if (!Number.isSafeInteger(every) || every < 1) throw new RangeError(`young sweeps: every ${every} bytes is not a byte count`);
    this.#collect = collect;
    this.#every = every;
  }

  /** `bytes` more of blob buffers made for one chunk each, dropped soon. */
  made(bytes: number): void {
    if (this.#collect === undefined) return;
    this.#since += bytes;
    if (this.#since < this.#every) return;
    this.#since = 0;
    this.#collect();
  }
}

let processSweeps: YoungSweeps | undefined;

/**
 * The process's count (one V8 heap, one count): the upstream client's blob bodies and the store's
 * followers report the fresh buffers they stream here. Warm reads from the store reuse their
 * buffers (store/read-slabs.ts) and make none.
 */
export function blobBuffersMade(bytes: number): void {
  processSweeps ??= new YoungSweeps(minorCollection());
  processSweeps.made(bytes);
}
