/**
 * `trust.tuf`: keeps the trusted root of a TUF repository fresh. At start it takes the last
 * verified root from the cache dir, then (unless offline) asks the repository, and asks again
 * every `refresh` (sooner after a failure). A root that fails TUF verification, or is not a
 * trusted root sigil can use, is never used: what was in use stays, down to the configured
 * roots (the floor), and the failure is logged, counted and shown by /readyz. The repository is
 * never contacted offline, nor when `trust.tuf` is not configured (no refresher exists then).
 */
import type { Logger } from 'pino';
import type { TufMetrics } from '../audit/tuf-metrics.js';
import type { TufConfig } from '../config/types.js';
import { parseTrustedRoot } from '../verify/index.js';
import { readLastVerified, writeLastVerified } from './last-verified.js';
import type { TufRoot, TufRootHolder } from './trust-source.js';
import { fetchTrustedRoot, type FetchTrustedRoot } from './tuf-repository.js';

/**
 * After a failed refresh the repository is asked again this soon (or at `refresh`, if sooner):
 * a sigil that started before its network was up gets fresh trust within minutes, not a day.
 */
export const TUF_RETRY_MS = 5 * 60_000;
/**
 * Start-up waits this long for the first refresh, then serves under what it has (the cached
 * root or the floor) while the refresh goes on: a repository that does not answer must not
 * keep sigil from listening (each request of a refresh has TUF_FETCH_TIMEOUT_MS).
 */
export const TUF_START_WAIT_MS = 10_000;

/** Fires `fire` after `ms`; returns a cancel function (tests fire by hand). */
export type Timer = (ms: number, fire: () => void) => () => void;

/** The longest delay setTimeout waits: a longer one fires after 1 ms (a `refresh` of 720h would ask without pause). */
export const MAX_TIMER_MS = 2 ** 31 - 1;

/** Real timers; a delay beyond MAX_TIMER_MS is waited out in several. */
const realTimer: Timer = (ms, fire) => {
  let t: NodeJS.Timeout;
  const arm = (left: number): void => {
    t = setTimeout(() => (left > MAX_TIMER_MS ? arm(left - MAX_TIMER_MS) : fire()), Math.min(left, MAX_TIMER_MS));
    t.unref();
  };
  arm(ms);
  return () => clearTimeout(t);
};

export interface TufRefresherOptions {
  readonly config: TufConfig;
  readonly logger: Logger;
  readonly metrics?: TufMetrics;
  /** `sigil serve --offline`: the repository is never contacted. */
  readonly offline: boolean;
  /** Wall clock, ms since the epoch (when a root was verified, its age); default Date.now. */
  readonly now?: () => number;
  /** Schedules refreshes and bounds the start-up wait; default real timers. */
  readonly timer?: Timer;
  /** One look at the repository; default tuf-repository.ts fetchTrustedRoot. */
  readonly fetch?: FetchTrustedRoot;
}

/** The refresher's state, for /readyz. */
export interface TufStatus {
  readonly url: string;
  readonly offline: boolean;
  /** The TUF root version of the trusted root in use; null: none verified, trust.trustedRoot alone. */
  readonly rootVersion: number | null;
  readonly verifiedAt: string | null;
  readonly ageSeconds: number | null;
  /** The last attempt to refresh (none yet, or offline: null). */
  readonly lastAttempt: { readonly at: string; readonly ok: boolean; readonly error?: string } | null;
}

/** An error and its causes in one line (TUF errors wrap what went wrong). */
function describe(e: unknown): string {
  const parts: string[] = [];
  for (let c: unknown = e; c !== undefined && c !== null && parts.length < 4; c = (c as { cause?: unknown }).cause) {
    parts.push(c instanceof Error ? c.message : String(c));
  }
  return parts.join(': ');
}

export class TufRefresher implements TufRootHolder {
  readonly #config: TufConfig;
  readonly #log: Logger;
  readonly #metrics: TufMetrics | undefined;
  readonly #offline: boolean;
  readonly #now: () => number;
  readonly #timer: Timer;
  readonly #fetch: FetchTrustedRoot;
  #latest: TufRoot | null = null;
  #lastAttempt: { at: number; error: string | null } | null = null;
  #running: Promise<void> | null = null;
  #cancel: (() => void) | null = null;
  #closed = false;

  constructor(opts: TufRefresherOptions) {
    this.#config = opts.config;
    this.#log = opts.logger.child({ tuf: opts.config.url });
    this.#metrics = opts.metrics;
    this.#offline = opts.offline;
    this.#now = opts.now ?? Date.now;
    this.#timer = opts.timer ?? realTimer;
    this.#fetch = opts.fetch ?? fetchTrustedRoot;
    this.#metrics?.observe(() => ({ rootVersion: this.#latest?.rootVersion ?? null, ageSeconds: this.#age() }));
  }

  /** The TUF root in use; null while none was verified (the configured roots alone). */
  get latest(): TufRoot | null {
    return this.#latest;
  }

  /** The cached root, then (not offline) the first refresh, waited for up to TUF_START_WAIT_MS; then the schedule. */
  async start(): Promise<void> {
    await this.#fromCache();
    if (this.#offline) {
      this.#log.info({ rootVersion: this.#latest?.rootVersion ?? null }, 'offline: the TUF repository is not contacted');
      return;
    }
    let cancelWait = (): void => {};
    const waited = new Promise<void>((resolve) => {
      cancelWait = this.#timer(TUF_START_WAIT_MS, resolve);
    });
    const first = this.refresh().then(() => this.#schedule());
    await Promise.race([first, waited]);
    cancelWait();
  }

  /** Asks the repository now (one refresh at a time: a caller during one gets that one). Never rejects. */
  refresh(): Promise<void> {
    this.#running ??= this.#attempt().finally(() => {
      this.#running = null;
    });
    return this.#running;
  }

  /** The refresh under way, if any (tests: wait for the one a timer started). */
  settled(): Promise<void> {
    return this.#running ?? Promise.resolve();
  }

  status(): TufStatus {
    const l = this.#latest;
    const a = this.#lastAttempt;
    return {
      url: this.#config.url,
      offline: this.#offline,
      rootVersion: l?.rootVersion ?? null,
      verifiedAt: l ? new Date(l.verifiedAt).toISOString() : null,
      ageSeconds: this.#age(),
      lastAttempt: a ? { at: new Date(a.at).toISOString(), ok: a.error === null, ...(a.error !== null ? { error: a.error } : {}) } : null,
    };
  }

  /** What /readyz reports as degraded: the last refresh failed (sigil serves on under the trust it has). */
  degraded(): string | null {
    const a = this.#lastAttempt;
    if (a === null || a.error === null) return null;
    const l = this.#latest;
    const using = l ? `the trusted root verified at ${new Date(l.verifiedAt).toISOString()} (TUF root version ${l.rootVersion}) and trust.trustedRoot` : 'trust.trustedRoot only';
    return `refresh from ${this.#config.url} failed at ${new Date(a.at).toISOString()}: ${a.error}; using ${using}`;
  }

  /** Stops the schedule (a refresh under way finishes, and schedules nothing). */
  close(): void {
    this.#closed = true;
    this.#cancel?.();
    this.#cancel = null;
  }

  #age(): number | null {
    return this.#latest ? Math.max(0, (this.#now() - this.#latest.verifiedAt) / 1000) : null;
  }

  #schedule(): void {
    if (this.#closed) return;
    this.#cancel?.();
    const failed = this.#lastAttempt?.error != null;
    const ms = failed ? Math.min(this.#config.refreshMs, TUF_RETRY_MS) : this.#config.refreshMs;
    this.#cancel = this.#timer(ms, () => {
      this.#cancel = null;
      void this.refresh().then(() => this.#schedule());
    });
  }

  async #fromCache(): Promise<void> {
    try {
      const r = await readLastVerified(this.#config.cacheDir, this.#config.url);
      if (r === null) return;
      const root = parseTrustedRoot(r.trustedRoot, `trusted root cached from TUF repository ${this.#config.url}`);
      this.#latest = { url: r.url, rootVersion: r.rootVersion, verifiedAt: r.verifiedAt, root };
      this.#log.info({ rootVersion: r.rootVersion, verifiedAt: new Date(r.verifiedAt).toISOString() }, 'trust: using the trusted root last verified from the TUF repository');
    } catch (e) {
      this.#log.warn({ err: describe(e) }, 'trust: the cached TUF trusted root is not used');
    }
  }

  async #attempt(): Promise<void> {
    const at = this.#now();
    let next: TufRoot;
    let text: string;
    try {
      const got = await this.#fetch(this.#config);
      const parsed = parseTrustedRoot(got.trustedRoot, `trusted root from TUF repository ${this.#config.url}`);
      const prev = this.#latest;
      const same = prev !== null && prev.root.canonical === parsed.canonical;
      // The same content keeps the same object: the trust in use (and its fingerprint) does not change.
      next = { url: this.#config.url, rootVersion: got.rootVersion, verifiedAt: at, root: same ? prev.root : parsed };
      text = got.trustedRoot;
    } catch (e) {
      const error = describe(e);
      this.#lastAttempt = { at, error };
      this.#metrics?.refreshes.inc({ result: 'failure' });
      const l = this.#latest;
      this.#log.warn({ err: error, using: l ? { rootVersion: l.rootVersion, verifiedAt: new Date(l.verifiedAt).toISOString() } : 'trust.trustedRoot' }, 'trust: TUF refresh failed; the trust in use stays');
      return;
    }
    if (this.#closed) return;
    const changed = this.#latest?.root !== next.root;
    this.#latest = next;
    this.#lastAttempt = { at, error: null };
    this.#metrics?.refreshes.inc({ result: 'success' });
    this.#log[changed ? 'info' : 'debug']({ rootVersion: next.rootVersion, changed }, changed ? 'trust: a new trusted root from the TUF repository is in use' : 'trust: the TUF repository confirmed the trusted root in use');
    try {
      await writeLastVerified(this.#config.cacheDir, { url: next.url, rootVersion: next.rootVersion, verifiedAt: at, trustedRoot: text });
    } catch (e) {
      this.#log.warn({ err: describe(e) }, 'trust: cannot cache the verified trusted root (a restart starts from trust.trustedRoot until a refresh)');
    }
  }
}
