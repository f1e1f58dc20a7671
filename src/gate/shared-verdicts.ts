import type { Logger } from 'pino';
import type { Metrics } from '../audit/metrics.js';
import type { CacheConfig } from '../config/types.js';
import type { Coordinator } from '../shared/coordinator.js';
import { seal, unseal } from '../shared/sealed.js';
import type { Outcome } from '../verify/types.js';
import { verdictTtlMs, type Computed, type VerdictKeyParts } from './verdicts.js';

/** Outcomes shared between processes: `indeterminate` is not (it says the upstream could not be read from here, now). */
const SHARED_KINDS: ReadonlySet<Outcome['kind']> = new Set(['verified', 'unsigned', 'invalid']);

/** What is stored (sealed) under a verdict's key. */
interface SharedRecord {
  /** The full key, again: a record is only ever taken for the key it names. */
  readonly key: string;
  readonly outcome: Outcome;
  /** Epoch ms (the publisher's clock) after which it is no longer used: a shared verdict lives no longer than one of our own. */
  readonly expiresAt: number;
}

export interface SharedVerdictsOptions {
  readonly coordinator: Pick<Coordinator, 'getJson' | 'setJson'>;
  /** cache.shared.peer.token: every record is HMAC-signed with it; without one verdicts are not shared. */
  readonly token: string;
  /** cache.verifications.ttl. */
  readonly ttlMs: number;
  readonly metrics: Metrics;
  readonly logger: Logger;
  /** Wall clock of `expiresAt` (tests); default Date.now. */
  readonly now?: () => number;
}

/**
 * Verdicts shared between processes through Redis, behind each process's verdict cache: on a
 * memory miss the verdict another process with the same upstream, repository, digest, policy
 * fingerprint and trust fingerprint reached is used; else this process verifies and publishes
 * what it found. Redis is not trusted with a decision: a record counts only when its HMAC
 * (cache.shared.peer.token, over its full key and its body) checks and it names exactly the key
 * asked for; anything else is ignored (counted, logged) and the manifest verified here.
 */
export class SharedVerdicts {
  readonly #o: SharedVerdictsOptions;
  readonly #now: () => number;

  constructor(opts: SharedVerdictsOptions) {
    this.#o = opts;
    this.#now = opts.now ?? Date.now;
  }

  /** The shared verdict for `parts`, else `compute()`'s, published. */
  async verdict(parts: VerdictKeyParts, compute: () => Promise<Outcome>): Promise<Computed> {
    const key = sharedVerdictKey(parts);
    const shared = await this.#read(key);
    if (shared) {
      this.#o.metrics.sharedVerdicts.inc({ result: 'hit' });
      return shared;
    }
    this.#o.metrics.sharedVerdicts.inc({ result: 'miss' });
    const outcome = await compute();
    if (SHARED_KINDS.has(outcome.kind)) {
      const ttlMs = verdictTtlMs(outcome, this.#o.ttlMs);
      const record: SharedRecord = { key, outcome, expiresAt: this.#now() + ttlMs };
      await this.#o.coordinator.setJson(key, seal(this.#o.token, key, record), ttlMs);
    }
    return { outcome };
  }

  async #read(key: string): Promise<Computed | undefined> {
    const stored = await this.#o.coordinator.getJson<unknown>(key);
    if (stored === null || stored === undefined) return undefined;
    const r = unseal(this.#o.token, key, stored) as Partial<SharedRecord> | undefined;
    if (!r || r.key !== key || !wellFormed(r.outcome) || typeof r.expiresAt !== 'number') {
      this.#o.metrics.sharedVerdicts.inc({ result: 'rejected' });
      this.#o.logger.warn({ key }, 'shared verdict ignored: its signature or key does not check (is something else writing to Redis?); verifying here');
      return undefined;
    }
    const left = r.expiresAt - this.#now();
    if (left <= 0) return undefined;
    return { outcome: r.outcome, ttlMs: left };
  }
}

/**
 * The shared verdicts of a config (one per generation, as the gate's verdict cache): with a
 * coordinator (cache.shared.redis) and cache.shared.peer.token; without a token, none.
 */
export function sharedVerdictsOf(cache: Pick<CacheConfig, 'shared' | 'verifications'>, coordinator: SharedVerdictsOptions['coordinator'] | undefined, deps: { metrics: Metrics; logger: Logger }): SharedVerdicts | undefined {
  const token = cache.shared?.peer?.token;
  if (!coordinator || token === undefined) return undefined;
  return new SharedVerdicts({ coordinator, token, ttlMs: cache.verifications.ttlMs, ...deps });
}

/** A verdict's key in Redis: every part of the verdict cache's key, each encoded, so that no two keys read alike. */
export function sharedVerdictKey(k: VerdictKeyParts): string {
  return `verdict:${[k.upstream, k.repository, k.digest, k.policyFingerprint, k.trustFingerprint].map(encodeURIComponent).join('/')}`;
}

/** The shape decide() reads (a sealed record comes from a process holding the token, but maybe another version). */
function wellFormed(o: unknown): o is Outcome {
  if (typeof o !== 'object' || o === null) return false;
  const { kind, checks } = o as { kind?: unknown; checks?: unknown };
  if (typeof kind !== 'string' || !SHARED_KINDS.has(kind as Outcome['kind']) || !Array.isArray(checks)) return false;
  if (kind !== 'verified') return true;
  const signer = (o as { signer?: { kind?: unknown } }).signer;
  return typeof signer === 'object' && signer !== null && (signer.kind === 'key' || signer.kind === 'keyless');
}
