import type { Logger } from 'pino';

/** A lease is renewed this many times per TTL, so that two renewals may fail (or be late) before it lapses. */
export const LEASE_RENEWALS_PER_TTL = 3;

/** Calls `fire` after `ms`; returns what cancels it (tests inject one and fire renewals by hand). */
export type Timer = (ms: number, fire: () => void) => () => void;

export const realTimer: Timer = (ms, fire) => {
  const t = setTimeout(fire, ms);
  t.unref();
  return () => clearTimeout(t);
};

export interface Lease {
  readonly key: string;
  /** Monotonic fencing token (INCR at acquire): a later holder always has a larger one. */
  readonly fence: number;
  /** Aborted when the lease is lost (renewal failed or found taken) or released. */
  readonly signal: AbortSignal;
  /** Compare-and-delete (Lua): only removes the lease if it is still ours. */
  release(): Promise<void>;
}

/** What a held lease does through its coordinator (commands answer undefined when Redis is unavailable). */
export interface LeaseOps {
  renew(): Promise<unknown>;
  release(): Promise<unknown>;
  /** The lease is lost: the coordinator no longer releases it at close. */
  lost(): void;
  readonly now: () => number;
  readonly timer: Timer;
  readonly log: Logger;
}

/**
 * A lease this process holds: renewed every ttl/LEASE_RENEWALS_PER_TTL. Found taken (its value
 * is no longer ours) → lost at once; Redis not answering → renewals go on being tried, and the
 * lease is lost once a whole TTL passed since the last one that succeeded (by then it lapsed).
 */
export class HeldLease implements Lease {
  readonly #ops: LeaseOps;
  readonly #abort = new AbortController();
  readonly key: string;
  readonly fence: number;
  readonly #ttlMs: number;
  #confirmedAt: number;
  #cancel: (() => void) | undefined;

  constructor(key: string, fence: number, ttlMs: number, ops: LeaseOps) {
    this.#ops = ops;
    this.key = key;
    this.fence = fence;
    this.#ttlMs = ttlMs;
    this.#confirmedAt = ops.now();
    this.#schedule();
  }

  get signal(): AbortSignal {
    return this.#abort.signal;
  }

  #schedule(): void {
    this.#cancel = this.#ops.timer(Math.floor(this.#ttlMs / LEASE_RENEWALS_PER_TTL), () => void this.#renew());
  }

  async #renew(): Promise<void> {
    if (this.#abort.signal.aborted) return;
    const r = await this.#ops.renew();
    if (this.#abort.signal.aborted) return;
    if (r === 1) {
      this.#confirmedAt = this.#ops.now();
    } else if (r === 0) {
      return this.#lose('taken over');
    } else if (this.#ops.now() - this.#confirmedAt >= this.#ttlMs) {
      return this.#lose('not renewed within its TTL');
    }
    this.#schedule();
  }

  #lose(why: string): void {
    this.#ops.log.warn({ lease: this.key, fence: this.fence, why }, 'lease lost');
    this.#ops.lost();
    this.#stop(new Error(`lease ${this.key} lost: ${why}`));
  }

  #stop(reason: Error): void {
    this.#cancel?.();
    this.#abort.abort(reason);
  }

  async release(): Promise<void> {
    if (this.#abort.signal.aborted) return;
    this.#stop(new Error(`lease ${this.key} released`));
    await this.#ops.release();
  }
}
