import { redactUrl } from './redact-url.js';
import { randomBytes } from 'node:crypto';
import { Redis } from 'iovalkey';
import type { Logger } from 'pino';
import type { Metrics } from '../audit/metrics.js';
import { HeldLease, LEASE_RENEWALS_PER_TTL, realTimer, type Lease, type Timer } from './lease.js';

export { LEASE_RENEWALS_PER_TTL, type Lease, type Timer } from './lease.js';

/** Every key sigil writes, so that a Redis shared with other software (or a later key layout) never collides. */
export { redactUrl };

export const KEY_PREFIX = 'sigil:v1:';

/**
 * A command that has no answer within this long is treated as Redis being unavailable: Redis on
 * the same network answers in well under a millisecond, and every caller has a single-process
 * way to go on, so a pull waits no longer than this for coordination per call.
 */
export const REDIS_COMMAND_TIMEOUT_MS = 500;

/** A (re)connection that is not up within this long is given up on and retried later. */
export const REDIS_CONNECT_TIMEOUT_MS = 2_000;

/**
 * After a command timed out (Redis connected but not answering: overloaded, paused), calls answer
 * "unavailable" at once and a PING is tried this often until one is answered: a hung Redis costs
 * one REDIS_COMMAND_TIMEOUT_MS per outage, not one per call (a pull makes several).
 */
export const REDIS_PROBE_MS = 1_000;

/** Background reconnection backs off up to this interval: a dead Redis costs one attempt per interval. */
export const REDIS_RECONNECT_MAX_MS = 2_000;

/**
 * Retries of one command on a fresh connection: none. With no offline queue, a command sent
 * while Redis is down fails at once; a retry would only add its wait to a pull.
 */
export const REDIS_RETRIES_PER_REQUEST = 0;

/** A lease not renewed lives this long (its holder died): long enough for renewals every third of it to survive a slow tick. */
export const DEFAULT_LEASE_TTL_MS = 15_000;

/**
 * A fencing counter lives this long after its lease was last taken or renewed: far longer than
 * any holder can stay unaware that its lease lapsed, so tokens only grow for as long as anyone
 * could compare them; then the counter is dropped rather than kept forever per key.
 */
export const FENCE_TTL_MS = 24 * 60 * 60 * 1000;

/**
 * A stored JSON value larger than this is not read: sigil writes tag answers and verdicts of a
 * few KiB, and a value from Redis is never trusted to be small.
 */
export const SHARED_VALUE_MAX_BYTES = 256 * 1024;

export type Acquired =
  | { readonly kind: 'acquired'; readonly lease: Lease } // renewed automatically every ttl/3 until released
  | { readonly kind: 'held'; readonly holder: string } // holder = the value the holder stored (e.g. its signed peer address)
  | { readonly kind: 'unavailable' }; // Redis down: behave as a single process

// A lease's value is "<nonce> <holder>": the random nonce makes each acquisition's value unique,
// so that compare-and-renew and compare-and-delete never take a later acquisition (even by the
// same holder) for their own.

/** Random bytes of a lease value's nonce: never the same twice among the leases of a cluster. */
const LEASE_NONCE_BYTES = 12;

/**
 * KEYS: lease, fence. ARGV: value, ttl ms, fence ttl ms, max bytes. → {1, fence} taken, {0, value} held
 * (at most max bytes of it: whoever writes to Redis chooses its size).
 */
const ACQUIRE = `
local held = redis.call('GET', KEYS[1])
if held then return {0, string.sub(held, 1, tonumber(ARGV[4]))} end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
local fence = redis.call('INCR', KEYS[2])
redis.call('PEXPIRE', KEYS[2], ARGV[3])
return {1, fence}`;

/** KEYS: lease, fence. ARGV: our value, ttl ms, fence ttl ms. → 1 renewed, 0 not ours any more. */
const RENEW = `
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
redis.call('PEXPIRE', KEYS[2], ARGV[3])
return 1`;

/** KEYS: lease. ARGV: our value. → 1 deleted, 0 not ours. */
const RELEASE = `
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
return redis.call('DEL', KEYS[1])`;

/** KEYS: lease, fence. ARGV: our value, our fence. → 1 the lease is ours and nobody took it since, else 0. */
const STILL_HOLDS = `
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
if redis.call('GET', KEYS[2]) ~= ARGV[2] then return 0 end
return 1`;

/** Members scored at once by `scores` (ZMSCORE): one command stays small whatever the set's size. */
export const SCORES_PER_COMMAND = 1000;

/**
 * KEYS: key. ARGV: max bytes. → the string value; nil when absent or not a string; its length
 * (an integer) when longer than max bytes — never a value bigger than that over the wire.
 */
const GET_CAPPED = `
if redis.call('TYPE', KEYS[1]).ok ~= 'string' then return false end
local n = redis.call('STRLEN', KEYS[1])
if n > tonumber(ARGV[1]) then return n end
return redis.call('GET', KEYS[1])`;

export interface CoordinatorOptions {
  /** redis:// or rediss:// (cache.shared.redis.url). */
  readonly url: string;
  readonly logger: Logger;
  readonly metrics?: Metrics | undefined;
  /** The clock a lease's lapse is judged by (tests); default performance.now. */
  readonly now?: (() => number) | undefined;
  /** Schedules lease renewals (tests); default real timers. */
  readonly timer?: Timer | undefined;
}

/**
 * Redis/Valkey coordination between sigil processes: leases (one process at a time does a piece
 * of work, with a fencing token), and small JSON values with a TTL. Nothing here is needed for
 * correctness of one process: when Redis is down every call answers "unavailable" (undefined,
 * false) within REDIS_COMMAND_TIMEOUT_MS, and callers go on as a single process would. Up and
 * down are logged once per change and counted; the client reconnects in the background.
 */
export class Coordinator {
  readonly #redis: Redis;
  readonly #log: Logger;
  readonly #metrics: Metrics | undefined;
  readonly #now: () => number;
  readonly #timer: Timer;
  readonly #leases = new Set<HeldLease>();
  /** The value each lease this process took was stored with (stillHolds compares it). */
  readonly #values = new WeakMap<Lease, string>();
  #up: boolean | undefined;
  #closed = false;
  /** A command timed out on a connection still open: calls answer "unavailable" until a probe is answered. */
  #hung = false;

  static connect(opts: CoordinatorOptions): Coordinator {
    return new Coordinator(opts);
  }

  private constructor(opts: CoordinatorOptions) {
    this.#log = opts.logger.child({ redis: redactUrl(opts.url) });
    this.#metrics = opts.metrics;
    this.#now = opts.now ?? (() => performance.now());
    this.#timer = opts.timer ?? realTimer;
    this.#metrics?.sharedUp.set({ engine: 'redis' }, 0);
    this.#metrics?.sharedUnavailable.inc({ engine: 'redis' }, 0);
    this.#redis = new Redis(opts.url, {
      commandTimeout: REDIS_COMMAND_TIMEOUT_MS,
      connectTimeout: REDIS_CONNECT_TIMEOUT_MS,
      enableOfflineQueue: false,
      maxRetriesPerRequest: REDIS_RETRIES_PER_REQUEST,
      retryStrategy: (times) => (this.#closed ? null : Math.min(100 * times, REDIS_RECONNECT_MAX_MS)),
    });
    this.#redis.on('ready', () => {
      this.#hung = false;
      this.#mark(true);
    });
    this.#redis.on('close', () => this.#mark(false));
    // Connection errors come with 'close' (and are logged there once); without a listener they would crash the process.
    this.#redis.on('error', (e: Error) => {
      if (this.#up === undefined) this.#mark(false, e);
    });
  }

  /** Is Redis answering (as of the last connection event or command)? */
  get available(): boolean {
    return this.#up === true && this.#redis.status === 'ready' && !this.#hung;
  }

  /** Resolves once Redis is up, or with whether it is after `ms` of real time (start-up, tests). */
  async waitUntilUp(ms: number): Promise<boolean> {
    if (this.available) return true;
    return new Promise((resolve) => {
      const t = setTimeout(() => {
        this.#redis.off('ready', onReady);
        resolve(this.available);
      }, ms);
      const onReady = (): void => {
        clearTimeout(t);
        resolve(true);
      };
      this.#redis.once('ready', onReady);
    });
  }

  /**
   * Takes the lease `key` for `holder` (what others are told holds it) for `ttlMs`, renewed
   * every ttl/LEASE_RENEWALS_PER_TTL until released or lost; `held` names the holder when
   * another has it.
   */
  async acquire(key: string, holder: string, ttlMs = DEFAULT_LEASE_TTL_MS): Promise<Acquired> {
    const ttl = leaseTtl(ttlMs);
    const value = `${randomBytes(LEASE_NONCE_BYTES).toString('hex')} ${holder}`;
    const r = await this.#call(() => this.#redis.eval(ACQUIRE, 2, leaseKey(key), fenceKey(key), value, ttl, FENCE_TTL_MS, SHARED_VALUE_MAX_BYTES));
    if (r === undefined || this.#closed) {
      // A command that timed out may still run once Redis answers again: this one, sent after it
      // on the same connection, takes back the lease nobody would renew (best effort).
      // (Sent past the "hung" mark that timeout set: it has to queue behind the acquire.)
      if (!this.#closed) this.#redis.eval(RELEASE, 1, leaseKey(key), value).catch(() => {});
      return { kind: 'unavailable' };
    }
    const [taken, v] = r as [number, number | string];
    if (taken !== 1) return { kind: 'held', holder: holderOf(String(v)) };
    const lease: HeldLease = new HeldLease(key, Number(v), ttl, {
      renew: () => this.#call(() => this.#redis.eval(RENEW, 2, leaseKey(key), fenceKey(key), value, ttl, FENCE_TTL_MS)),
      release: () => {
        this.#leases.delete(lease);
        return this.#call(() => this.#redis.eval(RELEASE, 1, leaseKey(key), value));
      },
      lost: () => this.#leases.delete(lease),
      now: this.#now,
      timer: this.#timer,
      log: this.#log,
    });
    this.#leases.add(lease);
    this.#values.set(lease, value);
    return { kind: 'acquired', lease };
  }

  /**
   * Does `lease` still hold, as Redis sees it now: its value is still ours and its fencing
   * counter still its fence (nobody acquired it since)? Checked right before an act a later
   * holder must not see done by an earlier one (a paused process wakes with a live-looking
   * signal: its renewals had no chance to fail). false when lost or released; undefined when
   * unavailable (the caller must not act then either).
   */
  async stillHolds(lease: Lease): Promise<boolean | undefined> {
    const value = this.#values.get(lease);
    if (value === undefined || lease.signal.aborted) return false;
    const r = await this.#call(() => this.#redis.eval(STILL_HOLDS, 2, leaseKey(lease.key), fenceKey(lease.key), value, String(lease.fence)));
    return r === undefined ? undefined : r === 1;
  }

  /** Who holds the lease `key` (null: nobody; undefined: unavailable). */
  async holder(key: string): Promise<string | null | undefined> {
    const v = await this.#getCapped(leaseKey(key));
    return v === undefined || v === null ? v : holderOf(v);
  }

  /** The JSON value stored at `key` (null: none, or not readable JSON; undefined: unavailable). */
  async getJson<T>(key: string): Promise<T | null | undefined> {
    const v = await this.#getCapped(valueKey(key));
    if (v === undefined || v === null) return v;
    try {
      return JSON.parse(v) as T;
    } catch {
      this.#log.warn({ key }, 'shared value is not JSON: ignored');
      return null;
    }
  }

  /** Stores `value` as JSON at `key` for `ttlMs`; false when unavailable (or too large to be read back). */
  async setJson(key: string, value: unknown, ttlMs: number): Promise<boolean> {
    const text = JSON.stringify(value);
    if (Buffer.byteLength(text) > SHARED_VALUE_MAX_BYTES) return false;
    const r = await this.#call(() => this.#redis.set(valueKey(key), text, 'PX', Math.max(1, Math.round(ttlMs))));
    return r === 'OK';
  }

  /** Sets `member`'s score in the sorted set `set` (e.g. a time of last use); false when unavailable. */
  async touch(set: string, member: string, score: number): Promise<boolean> {
    const r = await this.#call(() => this.#redis.zadd(setKey(set), score, member));
    return r !== undefined;
  }

  /** The scores of `members` in `set`, in their order (null: not a member); undefined when unavailable. */
  async scores(set: string, members: readonly string[]): Promise<Array<number | null> | undefined> {
    const out: Array<number | null> = [];
    for (let i = 0; i < members.length; i += SCORES_PER_COMMAND) {
      const batch = members.slice(i, i + SCORES_PER_COMMAND);
      const r = await this.#call(() => this.#redis.zmscore(setKey(set), ...batch));
      if (r === undefined) return undefined;
      for (const v of r) out.push(v === null ? null : Number(v));
    }
    return out;
  }

  /** Removes `member` from `set`; false when unavailable. */
  async forget(set: string, member: string): Promise<boolean> {
    const r = await this.#call(() => this.#redis.zrem(setKey(set), member));
    return r !== undefined;
  }

  /** Releases the leases still held (best effort) and disconnects. */
  async close(): Promise<void> {
    if (this.#closed) return;
    await Promise.all([...this.#leases].map((l) => l.release()));
    this.#closed = true;
    try {
      await this.#redis.quit();
    } catch {
      this.#redis.disconnect();
    }
  }

  /** The string at `key` (null: none, or not a string, or longer than SHARED_VALUE_MAX_BYTES, logged; undefined: unavailable). */
  async #getCapped(key: string): Promise<string | null | undefined> {
    const v = await this.#call(() => this.#redis.eval(GET_CAPPED, 1, key, SHARED_VALUE_MAX_BYTES) as Promise<string | number | null>);
    if (typeof v === 'number') {
      this.#log.warn({ key, bytes: v, max: SHARED_VALUE_MAX_BYTES }, 'shared value too large: ignored');
      return null;
    }
    return v;
  }

  /**
   * Runs a command; undefined when it fails or times out. An error reply (a key of another type)
   * is the command's own failure; anything else (a timeout, a lost connection) marks Redis down,
   * and no command is sent until it answers again (a probe while the connection stays open).
   */
  async #call<T>(run: () => Promise<T>): Promise<T | undefined> {
    if (this.#closed || this.#redis.status !== 'ready' || this.#hung) return undefined;
    try {
      const r = await run();
      this.#mark(true);
      return r;
    } catch (e) {
      if ((e as Error | undefined)?.name === 'ReplyError') {
        this.#log.warn({ cause: (e as Error).message }, 'redis refused a command');
        return undefined;
      }
      this.#mark(false, e);
      this.#probe();
      return undefined;
    }
  }

  /** Until a PING is answered (or the connection is ready again), calls answer "unavailable" at once. */
  #probe(): void {
    if (this.#hung || this.#closed) return;
    this.#hung = true;
    const again = (): void => {
      const t = setTimeout(() => {
        if (this.#closed || !this.#hung) return;
        this.#redis.ping().then(
          () => {
            this.#hung = false;
            this.#mark(true);
          },
          again,
        );
      }, REDIS_PROBE_MS);
      t.unref();
    };
    again();
  }

  /** Records up or down; a change is logged once and counted. */
  #mark(up: boolean, cause?: unknown): void {
    if (this.#up === up || (this.#closed && !up)) return;
    const first = this.#up === undefined;
    this.#up = up;
    this.#metrics?.sharedUp.set({ engine: 'redis' }, up ? 1 : 0);
    if (up) {
      this.#log.info(first ? 'redis connected: leases, tag answers and verdicts are shared' : 'redis answering again: leases, tag answers and verdicts are shared again');
      return;
    }
    this.#metrics?.sharedUnavailable.inc({ engine: 'redis' });
    this.#log.warn({ cause: cause instanceof Error ? cause.message : undefined }, 'redis unavailable: each process fetches and verifies on its own until it answers again');
  }
}

function leaseTtl(ms: number): number {
  if (!Number.isFinite(ms) || ms < LEASE_RENEWALS_PER_TTL) throw new RangeError(`lease TTL must be at least ${LEASE_RENEWALS_PER_TTL} ms, got ${ms}`);
  return Math.round(ms);
}

const leaseKey = (key: string): string => `${KEY_PREFIX}lease:${key}`;
const fenceKey = (key: string): string => `${KEY_PREFIX}fence:${key}`;
const valueKey = (key: string): string => `${KEY_PREFIX}value:${key}`;
const setKey = (set: string): string => `${KEY_PREFIX}set:${set}`;

/** The holder part of a lease value ("<nonce> <holder>"). */
function holderOf(value: string): string {
  const sp = value.indexOf(' ');
  return sp < 0 ? value : value.slice(sp + 1);
}
