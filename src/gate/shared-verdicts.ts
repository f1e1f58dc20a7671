import { hostname } from 'node:os';
import type { Logger } from 'pino';
import type { Metrics } from '../audit/metrics.js';
import type { CacheConfig } from '../config/types.js';
import type { Coordinator } from '../shared/coordinator.js';
import { realTimer, type Timer } from '../shared/lease.js';
import { seal, unseal } from '../shared/sealed.js';
import type { Outcome } from '../verify/types.js';
import { verdictTtlMs, type Computed, type VerdictKeyParts } from './verdicts.js';

/** Outcomes shared between processes: `indeterminate` is not (it says the upstream could not be read from here, now). */
const SHARED_KINDS: ReadonlySet<Outcome['kind']> = new Set(['verified', 'unsigned', 'invalid']);

/**
 * A process that finds another verifying the same key (its lease in Redis) waits this long at
 * most for that verdict before verifying itself: long enough for a keyless verification that
 * reads a signature, a certificate chain and a log entry from a slow upstream, short enough
 * that a holder that hangs (or a lease written into Redis by someone else) costs one wait. The
 * asking decision's deadline, when it ends sooner, ends the wait too.
 */
export const VERDICT_FOLLOW_MS = 10_000;
/** How often a waiting process looks for the verdict. */
export const VERDICT_POLL_MS = 50;

/** What is stored (sealed) under a verdict's key. */
interface SharedRecord {
  /** The full key, again: a record is only ever taken for the key it names. */
  readonly key: string;
  readonly outcome: Outcome;
  /** Epoch ms (the publisher's clock) after which it is no longer used: a shared verdict lives no longer than one of our own. */
  readonly expiresAt: number;
}

export interface SharedVerdictsOptions {
  readonly coordinator: Pick<Coordinator, 'getJson' | 'setJson' | 'acquire' | 'holder'>;
  /** cache.shared.peer.token: every record is HMAC-signed with it; without one verdicts are not shared. */
  readonly token: string;
  /** cache.verifications.ttl. */
  readonly ttlMs: number;
  readonly metrics: Metrics;
  readonly logger: Logger;
  /** Wall clock of `expiresAt` (tests); default Date.now. */
  readonly now?: () => number;
  /** Told to the processes waiting for this one (default host:pid). */
  readonly holder?: string;
  /** The waiting process's deadline clock and its polling timer (tests); default performance.now and real timers. */
  readonly monotonic?: () => number;
  readonly timer?: Timer;
}

/**
 * Verdicts shared between processes through Redis, behind each process's verdict cache: on a
 * memory miss the verdict another process with the same upstream, repository, digest, policy
 * fingerprint and trust fingerprint reached is used; else this process verifies and publishes
 * what it found. Redis is not trusted with a decision: a record counts only when its HMAC
 * (cache.shared.peer.token, over its full key and its body) checks and it names exactly the key
 * asked for; anything else is ignored (counted, logged) and the manifest verified here. One
 * process at a time verifies a key (a lease per key): the others asking meanwhile wait for its
 * verdict (VERDICT_FOLLOW_MS at most), and verify themselves when it publishes none (an
 * indeterminate outcome is not shared) or Redis is unavailable.
 */
export class SharedVerdicts {
  readonly #o: SharedVerdictsOptions;
  readonly #now: () => number;
  readonly #monotonic: () => number;
  readonly #timer: Timer;
  readonly #holder: string;

  constructor(opts: SharedVerdictsOptions) {
    this.#o = opts;
    this.#now = opts.now ?? Date.now;
    this.#monotonic = opts.monotonic ?? (() => performance.now());
    this.#timer = opts.timer ?? realTimer;
    this.#holder = opts.holder ?? `${hostname()}:${process.pid}`;
  }

  /**
   * The shared verdict for `parts` (reached meanwhile by the process verifying it, if one is),
   * else `compute()`'s, published unless the trust in force when it ended (`trustNow`) is not
   * the one `parts` names: a trust root refreshed during the verification (TUF) may have decided
   * it, and processes still on the old root must not take it as theirs.
   */
  async verdict(parts: VerdictKeyParts, compute: () => Promise<Outcome>, trustNow: () => string = () => parts.trustFingerprint, signal?: AbortSignal): Promise<Computed> {
    const key = sharedVerdictKey(parts);
    const computeHere = (): Promise<Computed> => this.#compute(key, compute, () => trustNow() === parts.trustFingerprint);
    const shared = await this.#read(key);
    if (shared === 'rejected') return computeHere();
    if (shared) return this.#hit(shared);
    const got = await this.#o.coordinator.acquire(leaseOf(key), this.#holder);
    if (got.kind === 'held') {
      const followed = await this.#follow(key, signal);
      if (followed) return this.#hit(followed);
    }
    try {
      return await computeHere();
    } finally {
      if (got.kind === 'acquired') await got.lease.release();
    }
  }

  #hit(c: Computed): Computed {
    this.#o.metrics.sharedVerdicts.inc({ result: 'hit' });
    return c;
  }

  /** Verifies here, and publishes what can be shared (while the key still names the trust in force). */
  async #compute(key: string, compute: () => Promise<Outcome>, keyStillTrue: () => boolean): Promise<Computed> {
    this.#o.metrics.sharedVerdicts.inc({ result: 'miss' });
    const outcome = await compute();
    if (!keyStillTrue()) {
      this.#o.logger.info({ key }, 'verdict not shared: the trust root changed while it was verified');
      return { outcome };
    }
    if (SHARED_KINDS.has(outcome.kind)) {
      const ttlMs = verdictTtlMs(outcome, this.#o.ttlMs);
      const record: SharedRecord = { key, outcome, expiresAt: this.#now() + ttlMs };
      await this.#o.coordinator.setJson(key, seal(this.#o.token, key, record), ttlMs);
    }
    return { outcome };
  }

  /**
   * Waits for the verdict of the process holding the key's lease: until it is there, the lease is
   * gone, VERDICT_FOLLOW_MS passed, or `signal` (the asking decision's deadline) aborted. The
   * caller's `compute` then runs; what it does past that deadline is the caller's (the gate
   * verifies under a deadline of its own, or, when an artifact check started the deadline, under
   * that one: indeterminate, never shared).
   */
  async #follow(key: string, signal: AbortSignal | undefined): Promise<Computed | undefined> {
    const deadline = this.#monotonic() + VERDICT_FOLLOW_MS;
    for (;;) {
      await new Promise<void>((resolve) => this.#timer(VERDICT_POLL_MS, resolve));
      const v = await this.#read(key);
      if (v === 'rejected') return undefined; // (logged once: verified here)
      if (v) return v;
      if (this.#monotonic() >= deadline || signal?.aborted === true) return undefined;
      const holder = await this.#o.coordinator.holder(leaseOf(key));
      if (holder === undefined) return undefined; // Redis gone: verified here
      if (holder === null) {
        const last = await this.#read(key); // done: its verdict, or none (not shareable, or it failed)
        return last === 'rejected' ? undefined : last;
      }
    }
  }

  /** The shared verdict; undefined when none (or expired); 'rejected' when a record is there that does not check (counted, logged). */
  async #read(key: string): Promise<Computed | 'rejected' | undefined> {
    const stored = await this.#o.coordinator.getJson<unknown>(key);
    if (stored === null || stored === undefined) return undefined;
    const r = unseal(this.#o.token, key, stored) as Partial<SharedRecord> | undefined;
    if (!r || r.key !== key || !wellFormed(r.outcome) || typeof r.expiresAt !== 'number') {
      this.#o.metrics.sharedVerdicts.inc({ result: 'rejected' });
      this.#o.logger.warn({ key }, 'shared verdict ignored: its signature or key does not check (is something else writing to Redis?); verifying here');
      return 'rejected';
    }
    const left = r.expiresAt - this.#now();
    if (left <= 0) return undefined;
    return { outcome: r.outcome, ttlMs: left };
  }
}

/** The lease of one verification: who is verifying the key now. */
const leaseOf = (key: string): string => `verifying:${key}`;

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
