import type { Logger } from 'pino';
import { SigilError, isSigilError } from '../errors.js';
import { isDigest, type Digest } from '../oci/digest.js';
import type { FetchedManifest, ReferrersAnswer, Registry, ResolvedTag, TagList } from '../oci/registry.js';
import { Layer } from './layer.js';
import { STALE_BREAKER_MS, staleCovers, type UpstreamBreaker } from './stale-breaker.js';

/**
 * With a content store, an upstream that has not answered a tag lookup within this long is
 * treated as failing and the stored tag is served (the contract: an image that is not stored
 * gets 502/503/504 within 5 s).
 */
export const STALE_DEADLINE_MS = 4_000;

/** Calls `fire` after `ms`; returns what cancels it. Injected by tests, so that no deadline is waited out. */
export type Timer = (ms: number, fire: () => void) => () => void;

const realTimer: Timer = (ms, fire) => {
  const t = setTimeout(fire, ms);
  return () => clearTimeout(t);
};

export interface StaleDeadlineOptions {
  readonly breaker: UpstreamBreaker;
  readonly logger: Logger;
  /** Default STALE_DEADLINE_MS. */
  readonly deadlineMs?: number;
  readonly timer?: Timer;
}

/**
 * Stale-if-error's deadline, just above the upstream: no metadata request (manifest, tag, tag
 * list, referrers) waits longer than the deadline, and what came of it tells the breaker whether
 * the upstream is failing (logged when that changes, not per request). Blobs are not bounded
 * here: they stream for as long as they take.
 */
export class StaleDeadline extends Layer {
  readonly #breaker: UpstreamBreaker;
  readonly #log: Logger;
  readonly #ms: number;
  readonly #timer: Timer;

  constructor(below: Registry, opts: StaleDeadlineOptions) {
    super(below);
    this.#breaker = opts.breaker;
    this.#log = opts.logger;
    this.#ms = opts.deadlineMs ?? STALE_DEADLINE_MS;
    this.#timer = opts.timer ?? realTimer;
  }

  override fetchManifest(repository: string, reference: string, opts?: { accept?: string }): Promise<FetchedManifest> {
    return this.#bounded(this.below.fetchManifest(repository, reference, opts), `manifest ${repository}${isDigest(reference) ? '@' : ':'}${reference}`);
  }

  override resolveTag(repository: string, tag: string, opts?: { accept?: string }): Promise<ResolvedTag | null> {
    return this.#bounded(this.below.resolveTag(repository, tag, opts), `manifest ${repository}:${tag}`);
  }

  override listTags(repository: string, q: { n?: number; last?: string }): Promise<TagList & { upstreamPaginated: boolean }> {
    return this.#bounded(this.below.listTags(repository, q), `tags of ${repository}`);
  }

  override referrers(repository: string, digest: Digest, artifactType?: string): Promise<ReferrersAnswer> {
    return this.#bounded(this.below.referrers(repository, digest, artifactType), `referrers of ${repository}@${digest}`);
  }

  async #bounded<T>(p: Promise<T>, what: string): Promise<T> {
    let cancel = (): void => undefined;
    const late = new Promise<never>((_, reject) => {
      cancel = this.#timer(this.#ms, () => reject(new SigilError({ code: 'UPSTREAM_TIMEOUT', message: `upstream ${this.name}: ${what}: no answer within ${this.#ms} ms` })));
    });
    p.catch(() => undefined);
    try {
      const v = await Promise.race([p, late]);
      this.#answered();
      return v;
    } catch (e) {
      if (staleCovers(e)) {
        if (this.#breaker.failed()) {
          this.#log.warn({ upstream: this.name, cause: (e as Error).message, forMs: STALE_BREAKER_MS }, 'upstream failing: stored content is served without asking it first');
        }
      } else if (isSigilError(e)) {
        this.#answered(); // an answer ("not found", "denied"): the upstream is there
      }
      throw e;
    } finally {
      cancel();
    }
  }

  #answered(): void {
    if (this.#breaker.answered()) this.#log.info({ upstream: this.name }, 'upstream answering again: asked first again');
  }
}

/** The stale deadline layer, for compose.ts. */
export const staleDeadline =
  (opts: StaleDeadlineOptions) =>
  (below: Registry): Registry =>
    new StaleDeadline(below, opts);
