import { randomUUID } from 'node:crypto';
import type { Logger } from 'pino';
import { digestOf, isDigest, type Digest } from '../oci/digest.js';
import type { FetchedManifest, Registry } from '../oci/registry.js';
import type { Coordinator } from '../shared/coordinator.js';
import { realTimer, type Timer } from '../shared/lease.js';
import { Layer } from './layer.js';

/**
 * Manifests shared through Redis are small documents: past this, a follower fetches its own (the
 * cap keeps one cold index from filling Redis; image manifests and signatures are a few KiB).
 */
export const SHARED_MANIFEST_MAX_BYTES = 256 * 1024;
/** A published manifest is kept this long: long enough for every replica's cold pull to find it. */
export const SHARED_MANIFEST_TTL_MS = 60_000;
/** The fetch lease: longer than an upstream manifest fetch takes (it is renewed while it runs). */
export const MANIFEST_LEASE_TTL_MS = 10_000;
/** A follower waits this long for the holder's manifest, then fetches its own (well inside the stale-if-error and decision deadlines above). */
export const MANIFEST_FOLLOW_DEADLINE_MS = 2_000;
/** A follower looks for the published manifest after this long, then twice as long each time up to the max. */
export const MANIFEST_POLL_FIRST_MS = 10;
export const MANIFEST_POLL_MAX_MS = 200;

interface Published {
  readonly mediaType: string;
  /** base64 */
  readonly bytes: string;
}

export interface SharedManifestsOptions {
  readonly coordinator: Pick<Coordinator, 'acquire' | 'holder' | 'getJson' | 'setJson'>;
  readonly logger: Logger;
  /** How a follower waits between looks, and its clock (tests: a fake clock); default real timers, performance.now. */
  readonly timer?: Timer;
  readonly now?: () => number;
}

/**
 * Cluster single-flight of manifests by digest: one replica fetches a manifest from the upstream
 * while the others wait for it (lease `manifest:<upstream>/<repository>@<digest>` in Redis); the
 * holder publishes the bytes for SHARED_MANIFEST_TTL_MS and every replica takes them from there.
 * Bytes from Redis are judged by their digest (they must hash to it), so Redis cannot change a
 * manifest; a mismatch, a timeout or Redis being unavailable means fetching from below, as a
 * single process does. Tags go below untouched (shared-tags.ts shares tag answers).
 */
export class SharedManifests extends Layer {
  readonly #coord: SharedManifestsOptions['coordinator'];
  readonly #log: Logger;
  readonly #timer: Timer;
  readonly #now: () => number;
  /** Who holds a manifest lease: this process (a lease value; nothing reads it back). */
  readonly #holder = randomUUID();

  constructor(below: Registry, opts: SharedManifestsOptions) {
    super(below);
    this.#coord = opts.coordinator;
    this.#log = opts.logger;
    this.#timer = opts.timer ?? realTimer;
    this.#now = opts.now ?? (() => performance.now());
  }

  override async fetchManifest(repository: string, reference: string, opts?: { accept?: string }): Promise<FetchedManifest> {
    if (!isDigest(reference)) return this.below.fetchManifest(repository, reference, opts);
    const at = `${this.name}/${repository}@${reference}`;
    const shared = await this.#published(at, reference);
    if (shared) return shared;
    const got = await this.#coord.acquire(`manifest:${at}`, this.#holder, MANIFEST_LEASE_TTL_MS);
    if (got.kind === 'acquired') {
      try {
        const m = await this.below.fetchManifest(repository, reference, opts);
        if (m.bytes.length <= SHARED_MANIFEST_MAX_BYTES && !m.stale) {
          await this.#coord.setJson(`manifest-bytes:${at}`, { mediaType: m.mediaType, bytes: m.bytes.toString('base64') } satisfies Published, SHARED_MANIFEST_TTL_MS);
        }
        return m;
      } finally {
        await got.lease.release();
      }
    }
    if (got.kind === 'held') {
      const deadline = this.#now() + MANIFEST_FOLLOW_DEADLINE_MS;
      for (let wait = MANIFEST_POLL_FIRST_MS; this.#now() < deadline; wait = Math.min(wait * 2, MANIFEST_POLL_MAX_MS)) {
        await new Promise<void>((resolve) => this.#timer(wait, resolve));
        const m = await this.#published(at, reference);
        if (m) return m;
        // The holder is done (or gone) and published nothing: fetch our own.
        if ((await this.#coord.holder(`manifest:${at}`)) !== got.holder) break;
      }
    }
    return this.below.fetchManifest(repository, reference, opts);
  }

  /** The manifest published for `at`, when there is one and it hashes to `digest`. */
  async #published(at: string, digest: Digest): Promise<FetchedManifest | undefined> {
    const p = await this.#coord.getJson<Published>(`manifest-bytes:${at}`);
    if (!p || typeof p.mediaType !== 'string' || typeof p.bytes !== 'string') return undefined;
    const bytes = Buffer.from(p.bytes, 'base64');
    if (digestOf(bytes, digest) !== digest) {
      this.#log.warn({ manifest: at }, 'a manifest published in Redis does not hash to its digest; fetching it from the upstream');
      return undefined;
    }
    return { bytes, digest, mediaType: p.mediaType };
  }
}

/** The shared-manifests layer, for compose.ts. */
export const sharedManifests =
  (opts: SharedManifestsOptions) =>
  (below: Registry): Registry =>
    new SharedManifests(below, opts);
