/**
 * Slots for signature verifications: at most `total` at once, and at most `perUpstream` for the
 * decisions of any one upstream, so that an upstream whose answers are slow (or slowed on purpose)
 * can hold no more than its share and never the slots the others need. Waiting is bounded by the
 * caller's AbortSignal (the decision's deadline); a freed slot goes to the longest-waiting request
 * whose upstream is below its share, so requests of a busy upstream never stand in front of the
 * others'.
 */
export class VerificationSlots {
  readonly #total: number;
  readonly #perUpstream: number;
  #running = 0;
  readonly #byUpstream = new Map<string, number>();
  readonly #waiting: Array<{ readonly upstream: string; readonly grant: () => void }> = [];

  constructor(limits: { readonly total: number; readonly perUpstream: number }) {
    if (!(limits.total >= 1 && limits.perUpstream >= 1)) throw new RangeError('verification slots: limits must be at least 1');
    this.#total = limits.total;
    this.#perUpstream = Math.min(limits.perUpstream, limits.total);
  }

  /** Verifications holding a slot now. */
  get running(): number {
    return this.#running;
  }

  /** Requests waiting for a slot now. */
  get waiting(): number {
    return this.#waiting.length;
  }

  /** Verifications of `upstream` holding a slot now. */
  runningFor(upstream: string): number {
    return this.#byUpstream.get(upstream) ?? 0;
  }

  /**
   * A slot for a verification against `upstream`: resolves with its release (call it once, when
   * done), or rejects with the signal's reason when the signal aborts first (nothing is held then).
   */
  acquire(upstream: string, signal: AbortSignal): Promise<() => void> {
    if (signal.aborted) return Promise.reject(signal.reason as Error);
    if (this.#free(upstream)) return Promise.resolve(this.#take(upstream));
    return new Promise<() => void>((resolve, reject) => {
      const waiter = {
        upstream,
        grant: () => {
          signal.removeEventListener('abort', onAbort);
          resolve(this.#take(upstream));
        },
      };
      const onAbort = (): void => {
        const i = this.#waiting.indexOf(waiter);
        if (i >= 0) this.#waiting.splice(i, 1);
        reject(signal.reason as Error);
      };
      signal.addEventListener('abort', onAbort, { once: true });
      this.#waiting.push(waiter);
    });
  }

  #free(upstream: string): boolean {
    return this.#running < this.#total && this.runningFor(upstream) < this.#perUpstream;
  }

  #take(upstream: string): () => void {
    this.#running++;
    this.#byUpstream.set(upstream, this.runningFor(upstream) + 1);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.#running--;
      const n = this.runningFor(upstream) - 1;
      if (n > 0) this.#byUpstream.set(upstream, n);
      else this.#byUpstream.delete(upstream);
      this.#dispatch();
    };
  }

  /** Hands free slots to the longest-waiting requests whose upstream is below its share. */
  #dispatch(): void {
    for (let i = 0; i < this.#waiting.length && this.#running < this.#total; ) {
      const w = this.#waiting[i];
      if (this.runningFor(w.upstream) < this.#perUpstream) {
        this.#waiting.splice(i, 1);
        w.grant();
      } else {
        i++;
      }
    }
  }
}
