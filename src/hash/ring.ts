/**
 * The shared-memory layout of one off-thread hash job, used by both sides:
 * the event loop (producer, hash-pool.ts) and a hash worker (consumer, worker.ts).
 *
 *   bytes 0..63    control: Int32 slots below
 *   bytes 64..127  the digest, written by the worker once STATE is DONE
 *   bytes 128..    the ring of RING_BYTES data bytes
 *
 * WRITTEN and READ count bytes modulo 2^32 (Int32 arithmetic wraps); the ring size
 * is a power of two, so `count & (RING_BYTES - 1)` is a position and
 * `(WRITTEN - READ) | 0` the bytes waiting, whatever the blob's size.
 */

/**
 * One job's ring, pinned for its stream's whole life: 512 KiB, so that a stream's memory stays
 * near 1 MiB with its read buffers (64 concurrent pulls through 2 MiB rings pinned 64 MiB of
 * rings alone). About 0.3 ms of SHA-256 on one core: a worker descheduled for longer holds its
 * producers back (a full ring is backpressure), it never fails them.
 */
export const RING_BYTES = 512 * 1024;

export const CONTROL_BYTES = 64;
export const DIGEST_OFFSET = 64;
export const DIGEST_MAX_BYTES = 64; // sha512
export const DATA_OFFSET = 128;

/** Int32 slot indexes in the control block. */
export const WRITTEN = 0;
export const READ = 1;
export const STATE = 2;
/** 0: sha256, 1: sha512 (set before the job is handed over). */
export const ALGORITHM = 3;

/** STATE values. */
export const OPEN = 0;
/** The producer wrote its last byte: hash what is left and write the digest. */
export const END = 1;
/** The digest is at DIGEST_OFFSET. */
export const DONE = 2;
/** The producer gave up: drop the job. */
export const ABORTED = 3;
/** The worker could not hash (it is going away): the producer must fail. */
export const FAILED = 4;

export type HashAlgorithm = 'sha256' | 'sha512';

export const ALGORITHMS: readonly HashAlgorithm[] = ['sha256', 'sha512'];

export function digestLength(alg: HashAlgorithm): number {
  return alg === 'sha512' ? 64 : 32;
}

/** The worker's doorbell: one Int32 the producers bump (and notify) after every write. */
export const DOORBELL_BYTES = 4;
