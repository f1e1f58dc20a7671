import { hostname } from 'node:os';
import type { Metrics } from '../audit/metrics.js';
import { isSigilError } from '../errors.js';
import { isDigest, type Digest } from '../oci/digest.js';
import type { FetchedManifest, Registry, ResolvedTag } from '../oci/registry.js';
import type { Coordinator } from '../shared/coordinator.js';
import { seal, unseal } from '../shared/sealed.js';
import { Layer } from './layer.js';
import { staleCovers } from './stale-breaker.js';
import type { Timer } from './stale-deadline.js';

/**
 * A process that finds another one looking a tag up waits this long at most for its answer, then
 * looks it up itself. A healthy upstream answers a tag lookup (token and HEAD) well within it;
 * longer would eat into the contract's 5 s for an image whose upstream is down (the waiter's own
 * lookup is still bounded by STALE_DEADLINE_MS, 4 s, after it).
 */
export const TAG_FOLLOW_MS = 750;

/** How often a waiting process looks for the answer (a GET, and a GET of the lease while there is none). */
export const TAG_POLL_MS = 25;

/**
 * A tag's last answer is kept this long for stale-if-error: a process that has never stored the
 * tag itself (a new replica) can still serve it through an upstream outage of up to a week, as
 * one whose own store kept it would.
 */
export const TAG_LAST_GOOD_TTL_MS = 7 * 24 * 60 * 60 * 1000;

/** What a shared tag answer holds: where the tag pointed. */
interface TagAnswer {
  readonly digest: Digest;
  readonly mediaType: string;
}

/** A tag answer as stored (sealed): with the wall-clock time it stops holding, so that a copy replayed later is refused. */
interface StoredAnswer extends TagAnswer {
  readonly expiresAt: number;
}

export interface SharedTagsOptions {
  readonly coordinator: Pick<Coordinator, 'acquire' | 'holder' | 'getJson' | 'setJson'>;
  /** cache.tags.ttl: how long a shared answer is taken to hold (0: answers are not shared, lookups still single-flight). */
  readonly ttlMs: number;
  /** The upstream's staleIfError: the last good answer is used while the upstream fails. */
  readonly staleIfError: boolean;
  /**
   * cache.shared.peer.token: answers are sealed with it, and others ignored. Required: a plain
   * answer would let whoever can write to Redis point a tag at another digest of the repository
   * (an older signed release); compose.ts shares no tags without a token.
   */
  readonly token: string;
  readonly metrics: Metrics;
  /** Told to the processes waiting for this one (default host:pid). */
  readonly holder?: string;
  /** The follower's deadline clock and its polling timer (tests). */
  readonly now?: () => number;
  /** Wall clock (ms) of the answers' expiry, comparable across processes; default Date.now (tests). */
  readonly wallClock?: () => number;
  readonly timer?: Timer;
}

const realTimer: Timer = (ms, fire) => {
  const t = setTimeout(fire, ms);
  return () => clearTimeout(t);
};

/**
 * Tag → digest shared between processes through Redis, under the per-process tag cache: a tag
 * another process looked up within cache.tags.ttl is fetched by the digest it found; a tag no
 * one has is looked up by one process at a time (a lease per tag and Accept), the others waiting
 * briefly for its answer. While the upstream fails in a way stale-if-error covers, and the layers
 * below have nothing stored, the tag's last good answer is fetched (marked stale). An answer is a
 * pointer only: what is fetched by it is digest-checked and judged by the gate as always. Redis
 * unavailable: straight below.
 */
export class SharedTags extends Layer {
  readonly #o: SharedTagsOptions;
  readonly #holder: string;
  readonly #now: () => number;
  readonly #timer: Timer;
  readonly #wallClock: () => number;

  constructor(below: Registry, opts: SharedTagsOptions) {
    super(below);
    this.#o = opts;
    this.#holder = opts.holder ?? `${hostname()}:${process.pid}`;
    this.#now = opts.now ?? (() => performance.now());
    this.#timer = opts.timer ?? realTimer;
    this.#wallClock = opts.wallClock ?? Date.now;
  }

  override async fetchManifest(repository: string, reference: string, opts: { accept?: string } = {}): Promise<FetchedManifest> {
    if (isDigest(reference)) return this.below.fetchManifest(repository, reference, opts);
    const key = tagKey(this.name, repository, reference, opts.accept);
    try {
      return await this.#shared(repository, reference, key, opts);
    } catch (e) {
      if (!this.#o.staleIfError || !staleCovers(e)) throw e;
      const last = await this.#read(`last-good:${key}`);
      if (!last) throw e;
      let m: FetchedManifest;
      try {
        m = await this.below.fetchManifest(repository, last.digest, opts);
      } catch {
        throw e; // not to be had either: the upstream's failure is the answer
      }
      this.#o.metrics.staleResponses.inc({ upstream: this.name });
      return { ...m, stale: true };
    }
  }

  override async resolveTag(repository: string, tag: string, opts: { accept?: string } = {}): Promise<ResolvedTag | null> {
    const key = tagKey(this.name, repository, tag, opts.accept);
    const known = await this.#answer(key);
    if (known) return known;
    // One lookup at a time across processes, as for a fetch by tag (the same lease: either publishes the answer).
    const got = await this.#o.coordinator.acquire(key, this.#holder);
    if (got.kind === 'held') {
      const answer = await this.#follow(key);
      if (answer) return answer;
    }
    try {
      const r = await this.below.resolveTag(repository, tag, opts);
      if (r) await this.#publish(key, r);
      return r;
    } finally {
      if (got.kind === 'acquired') await got.lease.release();
    }
  }

  /** The shared answer's manifest; else the lookup, by this process or the one holding the lease. */
  async #shared(repository: string, tag: string, key: string, opts: { accept?: string }): Promise<FetchedManifest> {
    const known = await this.#answer(key);
    if (known) {
      const m = await this.#byDigest(repository, known.digest, opts);
      if (m) return m;
    }
    const got = await this.#o.coordinator.acquire(key, this.#holder);
    if (got.kind === 'acquired') {
      try {
        const m = await this.below.fetchManifest(repository, tag, opts);
        if (!m.stale) await this.#publish(key, m);
        return m;
      } finally {
        await got.lease.release();
      }
    }
    if (got.kind === 'held') {
      const answer = await this.#follow(key);
      const m = answer && (await this.#byDigest(repository, answer.digest, opts));
      if (m) return m;
    }
    return this.below.fetchManifest(repository, tag, opts);
  }

  /** The manifest an answer points at; null when it is gone (the tag is then looked up). */
  async #byDigest(repository: string, digest: Digest, opts: { accept?: string }): Promise<FetchedManifest | null> {
    try {
      return await this.below.fetchManifest(repository, digest, opts);
    } catch (e) {
      if (isSigilError(e) && e.code === 'MANIFEST_UNKNOWN') return null;
      throw e;
    }
  }

  /** Waits for the lease holder's answer: until it is there, the lease is gone, or TAG_FOLLOW_MS passed. */
  async #follow(key: string): Promise<TagAnswer | undefined> {
    const deadline = this.#now() + TAG_FOLLOW_MS;
    for (;;) {
      await new Promise<void>((resolve) => this.#timer(TAG_POLL_MS, resolve));
      const answer = await this.#answer(key);
      if (answer) return answer;
      if (this.#now() >= deadline) return undefined;
      const holder = await this.#o.coordinator.holder(key);
      if (holder === undefined) return undefined; // Redis gone: on our own
      if (holder === null) return this.#answer(key); // done: its answer, or none (it failed)
    }
  }

  async #publish(key: string, m: { digest: Digest; mediaType: string }): Promise<void> {
    const answer: TagAnswer = { digest: m.digest, mediaType: m.mediaType };
    const writes = [this.#write(`last-good:${key}`, answer, TAG_LAST_GOOD_TTL_MS)];
    if (this.#o.ttlMs > 0) writes.push(this.#write(key, answer, this.#o.ttlMs));
    await Promise.all(writes);
  }

  async #write(key: string, answer: TagAnswer, ttlMs: number): Promise<void> {
    const stored: StoredAnswer = { ...answer, expiresAt: this.#wallClock() + ttlMs };
    await this.#o.coordinator.setJson(key, seal(this.#o.token, key, stored), ttlMs);
  }

  /** The shared answer for a tag key (none while answers are not shared: cache.tags.ttl 0). */
  #answer(key: string): Promise<TagAnswer | undefined> {
    return this.#o.ttlMs > 0 ? this.#read(key) : Promise.resolve(undefined);
  }

  /** A stored answer that checks (sealed with our token for this key, well-formed, not expired: not a replayed old one); else undefined. */
  async #read(key: string): Promise<TagAnswer | undefined> {
    const v = unseal(this.#o.token, key, await this.#o.coordinator.getJson<unknown>(key));
    if (typeof v !== 'object' || v === null) return undefined;
    const { digest, mediaType, expiresAt } = v as Partial<StoredAnswer>;
    if (typeof digest !== 'string' || !isDigest(digest) || typeof mediaType !== 'string') return undefined;
    if (typeof expiresAt !== 'number' || expiresAt <= this.#wallClock()) return undefined;
    return { digest, mediaType };
  }
}

/** The key of a tag's shared answer and lease: the upstream, repository, tag and the Accept it was asked with. */
function tagKey(upstream: string, repository: string, tag: string, accept: string | undefined): string {
  return `tag:${[upstream, repository, tag, accept ?? ''].map(encodeURIComponent).join('/')}`;
}

/** The shared tags layer, for compose.ts. */
export const sharedTags =
  (opts: SharedTagsOptions) =>
  (below: Registry): Registry =>
    new SharedTags(below, opts);
