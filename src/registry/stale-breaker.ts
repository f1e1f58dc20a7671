import { isSigilError, type SigilErrorCode } from '../errors.js';

/** Upstream failures after which stored content is served instead (stale-if-error). */
export const STALE_CODES: ReadonlySet<SigilErrorCode> = new Set(['UPSTREAM_UNREACHABLE', 'UPSTREAM_TIMEOUT', 'UPSTREAM_TOOMANYREQUESTS', 'UPSTREAM_BAD_RESPONSE']);

/** Is `e` a failure stale-if-error covers (the upstream is failing, not answering "no")? */
export function staleCovers(e: unknown): boolean {
  return isSigilError(e) && STALE_CODES.has(e.code);
}

/**
 * After a metadata request to an upstream failed in a way stale-if-error covers, requests that
 * have a stored answer get it at once for this long, instead of each waiting up to
 * STALE_DEADLINE_MS for the same silence. Longer than VERIFICATION_DEADLINE_MS (6 s), so that once
 * one lookup of a decision found the upstream failing, the rest of that decision is answered from
 * the store (a stored image re-verifies with at most one cut-off); short, so that an upstream that
 * recovered is asked again within seconds (tags move: a stored tag is served at most this long
 * after the upstream was last seen failing, where the tag cache already keeps one for 30 s).
 */
export const STALE_BREAKER_MS = 10_000;

/**
 * What to do with one metadata request: `ask` the upstream (it is answering); serve the `stored`
 * answer if there is one (it is failing; with nothing stored, ask it anyway); or `probe`: it was
 * failing and the interval is over, so this request — one at a time — asks it, to find out
 * whether it recovered (call `probed()` when it is done, whatever came of it).
 */
export type BreakerTurn = 'ask' | 'stored' | 'probe';

/**
 * Whether one upstream is treated as failing: from a failure stale-if-error covers until
 * `intervalMs` later (a failure while failing starts the interval again), or until the upstream
 * answers anything (a success, or an answer such as "not found"). Timing comes from `now`, so
 * that tests need not wait. One per upstream, shared by the stale-if-error layer (which asks it
 * whose turn it is) and the stale deadline layer (which tells it what the upstream did).
 */
export class UpstreamBreaker {
  readonly #now: () => number;
  readonly #intervalMs: number;
  /** Failing until this time; null while the upstream is answering. */
  #until: number | null = null;
  #probing = false;

  constructor(opts: { now: () => number; intervalMs?: number }) {
    this.#now = opts.now;
    this.#intervalMs = opts.intervalMs ?? STALE_BREAKER_MS;
  }

  /** Treated as failing now (whether or not the interval is over). */
  get failing(): boolean {
    return this.#until !== null;
  }

  /** The turn of one request; see BreakerTurn. */
  turn(): BreakerTurn {
    if (this.#until === null) return 'ask';
    if (this.#now() < this.#until || this.#probing) return 'stored';
    this.#probing = true;
    return 'probe';
  }

  /** The probe has its answer (or failure): the next one may go once the interval allows. */
  probed(): void {
    this.#probing = false;
  }

  /** A failure stale-if-error covers. True when the upstream was answering until now. */
  failed(): boolean {
    const was = this.#until === null;
    this.#until = this.#now() + this.#intervalMs;
    return was;
  }

  /** An answer from the upstream. True when it was treated as failing until now. */
  answered(): boolean {
    const was = this.#until !== null;
    this.#until = null;
    return was;
  }
}
