import type { LRUCache } from 'lru-cache';
import { lru } from '../lru.js';
import type { Outcome } from '../verify/types.js';

/**
 * A failed or indeterminate verdict is kept this long only: long enough that a pull storm
 * of an unsigned image costs one signature lookup, short enough that a signature pushed
 * a moment later (or an upstream that recovers) is seen almost at once.
 */
export const FAILURE_TTL_MS = 10_000;

export interface VerdictKeyParts {
  readonly upstream: string;
  readonly repository: string;
  readonly digest: string;
  readonly policyFingerprint: string;
  readonly trustFingerprint: string;
}

/** The contract's cache key: upstream, repository, digest, policy and trust. Never a tag. */
export function verdictKey(k: VerdictKeyParts): string {
  return [k.upstream, k.repository, k.digest, k.policyFingerprint, k.trustFingerprint].join('|');
}

/** A verdict just reached, or one reached elsewhere that lives at most `ttlMs` more (a shared verdict, shared-verdicts.ts). */
export interface Computed {
  readonly outcome: Outcome;
  readonly ttlMs?: number;
}

/** How long a verdict of this kind is kept: verified outcomes `ttlMs`, the rest FAILURE_TTL_MS at most. */
export function verdictTtlMs(outcome: Outcome, ttlMs: number): number {
  return outcome.kind === 'verified' ? ttlMs : Math.min(FAILURE_TTL_MS, ttlMs);
}

/**
 * Verdicts by key. Concurrent requests for one key share one computation (lru-cache's
 * fetch is inflight-unique); verified outcomes live `ttlMs`, the rest FAILURE_TTL_MS.
 */
export class VerdictCache {
  readonly #cache: LRUCache<string, Outcome, () => Promise<Computed>>;
  readonly #ttlMs: number;

  constructor(opts: { maxEntries: number; ttlMs: number; now?: () => number }) {
    this.#ttlMs = opts.ttlMs;
    this.#cache = lru<string, Outcome, () => Promise<Computed>>(opts.maxEntries, {
      ttl: opts.ttlMs,
      ...(opts.now ? { perf: { now: opts.now } } : {}),
      fetchMethod: async (_key, _stale, { options, context }) => {
        const { outcome, ttlMs } = await context();
        const ttl = verdictTtlMs(outcome, this.#ttlMs);
        options.ttl = ttlMs === undefined ? ttl : Math.max(1, Math.min(ttl, ttlMs));
        return outcome;
      },
    });
  }

  /** The cached outcome for `key`, else `compute()` (shared by concurrent callers). */
  async get(key: string, compute: () => Promise<Computed>): Promise<{ outcome: Outcome; cached: boolean }> {
    const hit = this.#cache.get(key);
    if (hit !== undefined) return { outcome: hit, cached: true };
    const outcome = await this.#cache.fetch(key, { context: compute });
    if (outcome === undefined) throw new Error(`verdict for ${key} was not computed`);
    return { outcome, cached: false };
  }
}

/**
 * Children of verified indexes: a child manifest passes when an index that lists it passed
 * under the same policy and trust, within that verdict's lifetime.
 */
export class VerifiedChildren {
  readonly #cache: LRUCache<string, { index: string; outcome: Outcome }>;

  constructor(opts: { maxEntries: number; ttlMs: number; now?: () => number }) {
    this.#cache = lru(opts.maxEntries, { ttl: opts.ttlMs, ...(opts.now ? { perf: { now: opts.now } } : {}) });
  }

  remember(childKey: string, index: string, outcome: Outcome): void {
    this.#cache.set(childKey, { index, outcome });
  }

  lookup(childKey: string): { index: string; outcome: Outcome } | undefined {
    return this.#cache.get(childKey);
  }
}
