import { PassThrough, type Readable } from 'node:stream';
import type { Logger } from 'pino';
import type { Metrics } from '../audit/metrics.js';
import type { SharedPeerConfig } from '../config/types.js';
import { SigilError } from '../errors.js';
import type { Coordinator } from '../shared/coordinator.js';
import { realTimer, type Lease, type Timer } from '../shared/lease.js';
import type { Digest } from '../oci/digest.js';
import type { BlobRequest, BlobResponse, Registry } from '../oci/registry.js';
import { peerOrigin, signHolder, verifyHolder, type PeerAddress } from '../shared/peer-auth.js';
import type { PeerAnswer, PeerClient } from '../shared/peer-client.js';
import type { ContentStore } from '../store/content-store.js';
import { HEADERS_TIMEOUT_MS } from '../upstream/limits.js';
import { Layer } from './layer.js';

/**
 * A holder takes its lease before its upstream answers and begins its store write after: a
 * follower that finds it not writing yet asks again this many times, PEER_ABSENT_WAIT_MS apart
 * (about an upstream's time to answer), then fetches from the upstream itself (the holder may be
 * passing the blob through, unstored, and never write it).
 */
export const PEER_ABSENT_RETRIES = 5;
export const PEER_ABSENT_WAIT_MS = 200;
/**
 * Past PEER_ABSENT_RETRIES, a follower keeps asking while the same holder still holds the lease
 * (its upstream may be slow to answer under load: fetching too would be the duplicate the lease
 * exists to prevent), up to this long in all: the upstream client's own wait for an answer's
 * headers (upstream/limits.ts HEADERS_TIMEOUT_MS), after which the holder has an answer or none.
 */
export const PEER_ABSENT_DEADLINE_MS = HEADERS_TIMEOUT_MS;

/**
 * After the upstream's last byte the store still hashes the end, syncs and renames: the holder
 * keeps its lease until its store commits the blob (a replica asking meanwhile streams from it
 * instead of fetching again), at most this long — a write that fails its digest check never
 * commits, and its lease must not be renewed forever.
 */
export const COMMIT_WAIT_MS = 10_000;

/**
 * Once committed, the blob is still to be uploaded to the bucket (in the background) and other
 * replicas may ask for it right after (a rollout's pods pulling one image): the holder keeps its
 * lease this much longer, so that they stream the committed object from its peer listener
 * instead of fetching it from the upstream again. A holder that dies meanwhile is taken over as
 * during a download.
 */
export const HOLD_AFTER_COMMIT_MS = 30_000;

/** What the whole-blob download into the store asks below (the store's writer above hashes it). */
const WHOLE: BlobRequest = { method: 'GET', verifyDigest: false };

/** `bytes a-b/n`: the continuation of a blob after a holder failed (upstream/ranges.ts checked its start). */
const CONTENT_RANGE_RE = /^bytes (\d{1,15})-(\d{1,15})\/(\d{1,15})$/;

export type FlightOutcome = 'fetched' | 'peer' | 'alone' | 'own' | 'bad_mac' | 'peer_failed' | 'taken_over';

/** The lease of one blob's download into the store, per (upstream, repository): see ClusterFlight. */
export function blobLeaseKey(upstream: string, repository: string, digest: Digest): string {
  return `blob:${upstream}/${repository}@${digest}`;
}

export interface ClusterFlightOptions {
  /** Leases in Redis (shared/coordinator.ts). */
  readonly leases: Pick<Coordinator, 'acquire' | 'holder'>;
  readonly peers: PeerClient;
  /** This replica's advertised address and the token that signs it. */
  readonly peer: Pick<SharedPeerConfig, 'advertise' | 'token'>;
  /** The local store the downloads go into (write-through above): a holder's lease lasts until it commits. */
  readonly content: Pick<ContentStore, 'onCommit' | 'has'>;
  readonly logger: Logger;
  readonly metrics?: Metrics | undefined;
  /** The pauses before asking a holder again and the bound of COMMIT_WAIT_MS (tests); default real timers. */
  readonly timer?: Timer | undefined;
  /** The clock of PEER_ABSENT_DEADLINE_MS (tests); default performance.now. */
  readonly now?: (() => number) | undefined;
}

/**
 * Cluster single-flight of blob downloads into the store (cache.shared with redis and peer):
 * across replicas, one fetches a blob from the upstream while the others stream it from that
 * one's peer listener as it arrives. Only the store's whole-blob downloads (`verifyDigest: false`:
 * this layer sits below write-through, whose store writer hashes every byte it returns, whoever
 * sent it) take part; anything else goes below untouched.
 *
 * A download takes the lease of its (upstream, repository, digest) — per repository, so a blob
 * is only ever streamed to a replica for a repository its holder fetched it from upstream —
 * carrying this replica's signed address (peer-auth.ts), and holds it until the store committed
 * the blob (or the download failed). A
 * replica that finds the lease held streams from the holder only when the value's MAC checks (a
 * bad one is counted and ignored); when the holder's stream fails mid-way it takes the lease and
 * continues from the upstream at the byte it reached (a 206 for exactly the rest, else the
 * download fails: never a short or spliced blob passed on as whole). Redis unavailable: below,
 * as a single process.
 */
export class ClusterFlight extends Layer {
  readonly #o: ClusterFlightOptions;
  readonly #self: string | undefined;
  readonly #timer: Timer;
  readonly #now: () => number;
  /** Leases to release once the store commits their blob, by digest. */
  readonly #awaitingCommit = new Map<Digest, Set<() => void>>();

  constructor(below: Registry, opts: ClusterFlightOptions) {
    super(below);
    this.#o = opts;
    this.#self = peerOrigin(opts.peer.advertise);
    this.#timer = opts.timer ?? realTimer;
    this.#now = opts.now ?? (() => performance.now());
    opts.content.onCommit((digest) => {
      for (const release of this.#awaitingCommit.get(digest) ?? []) release();
    });
  }

  override async openBlob(repository: string, digest: Digest, req: BlobRequest): Promise<BlobResponse> {
    if (req.method !== 'GET' || req.range !== undefined || req.verifyDigest !== false || req.skipStore === true) return this.below.openBlob(repository, digest, req);
    const key = blobLeaseKey(this.name, repository, digest);
    const got = await this.#o.leases.acquire(key, signHolder(this.#o.peer.token, key, this.#o.peer.advertise));
    switch (got.kind) {
      case 'unavailable':
        this.#count('alone');
        return this.below.openBlob(repository, digest, req);
      case 'acquired':
        this.#count('fetched');
        return this.#fetch(repository, digest, got.lease);
      case 'held':
        return this.#follow(repository, digest, key, got.holder);
    }
  }

  /** The upstream's answer, the lease held until the store committed it (or the request or its body failed). */
  async #fetch(repository: string, digest: Digest, lease: Lease): Promise<BlobResponse> {
    let res: BlobResponse;
    try {
      res = await this.below.openBlob(repository, digest, WHOLE);
    } catch (err) {
      void lease.release();
      throw err;
    }
    const body = res.body;
    if (body === null) {
      void lease.release();
      return res;
    }
    let ended = false;
    body.once('end', () => (ended = true));
    body.once('close', () => {
      if (ended) this.#releaseOnCommit(digest, lease);
      else void lease.release();
    });
    return res;
  }

  /** Releases `lease` HOLD_AFTER_COMMIT_MS after the store has `digest`, or after COMMIT_WAIT_MS without it. */
  #releaseOnCommit(digest: Digest, lease: Lease): void {
    const waiting = this.#awaitingCommit.get(digest) ?? new Set<() => void>();
    this.#awaitingCommit.set(digest, waiting);
    let cancel = (): void => {};
    const finish = (lingerMs: number): void => {
      if (!waiting.delete(committed)) return;
      if (waiting.size === 0) this.#awaitingCommit.delete(digest);
      cancel();
      if (lingerMs === 0) void lease.release();
      else this.#timer(lingerMs, () => void lease.release());
    };
    const committed = (): void => finish(HOLD_AFTER_COMMIT_MS);
    waiting.add(committed);
    cancel = this.#timer(COMMIT_WAIT_MS, () => finish(0));
    // committed before this listened
    this.#o.content.has(digest).then((has) => has && committed(), () => {});
  }

  async #follow(repository: string, digest: Digest, key: string, holder: string): Promise<BlobResponse> {
    const address = verifyHolder(this.#o.peer.token, key, holder);
    if (address === undefined) {
      this.#count('bad_mac');
      this.#o.logger.warn({ upstream: this.name, repository, digest }, 'a blob lease names a holder whose signature does not check: ignored (is cache.shared.peer.token the same on every replica?)');
      return this.below.openBlob(repository, digest, WHOLE);
    }
    if (address === this.#self) {
      this.#count('own'); // another download here (another upstream name for it, a restart): as without peers
      return this.below.openBlob(repository, digest, WHOLE);
    }
    const answer = await this.#openPeer(address, digest, key, holder);
    if (answer.kind === 'failed') {
      this.#count('peer_failed');
      this.#o.logger.info({ upstream: this.name, repository, digest, peer: address, reason: answer.reason, detail: answer.detail }, 'the lease holder gave no stream: fetching from the upstream');
      return this.below.openBlob(repository, digest, WHOLE);
    }
    this.#count('peer');
    const headers: Record<string, string> = { 'content-type': 'application/octet-stream' };
    if (answer.size !== undefined) headers['content-length'] = String(answer.size);
    return { status: 200, headers, body: this.#relay(repository, digest, key, answer.body, answer.size) };
  }

  /**
   * The holder's stream; a holder not writing yet is asked again (PEER_ABSENT_RETRIES), and past
   * those for as long as it still holds the lease, within PEER_ABSENT_DEADLINE_MS.
   */
  async #openPeer(address: PeerAddress, digest: Digest, key: string, holder: string): Promise<PeerAnswer> {
    const wait = (ms: number): Promise<void> => new Promise((resolve) => this.#timer(ms, resolve));
    const deadline = this.#now() + PEER_ABSENT_DEADLINE_MS;
    for (let attempt = 0; ; attempt++) {
      const answer = await this.#o.peers.open(address, digest);
      if (answer.kind === 'ok' || answer.reason !== 'absent') return answer;
      if (attempt >= PEER_ABSENT_RETRIES && (this.#now() >= deadline || (await this.#o.leases.holder(key)) !== holder)) return answer;
      await wait(PEER_ABSENT_WAIT_MS);
    }
  }

  /**
   * The holder's bytes, then — when its stream fails — the rest from the upstream under this
   * replica's lease. Relayed by 'data' (no async iterator: a paused stream's read() copies).
   */
  #relay(repository: string, digest: Digest, key: string, first: Readable, size: number | undefined): Readable {
    const out = new PassThrough();
    // Handed up before anyone reads it (the store's download awaits its temp file first): a failure
    // meanwhile waits in `out` (errored) for its reader, never an 'error' event without a listener.
    out.on('error', () => {});
    let delivered = 0;
    let current = first;
    let lease: Lease | undefined;
    const pass = (src: Readable, failed: (err: Error) => void): void => {
      current = src;
      if (out.destroyed) return void src.destroy();
      src.on('data', (chunk: Buffer) => void (delivered += chunk.length));
      src.once('end', () => out.end());
      src.once('error', failed);
      src.pipe(out, { end: false });
    };
    const takeOver = async (): Promise<Readable> => {
      const got = await this.#o.leases.acquire(key, signHolder(this.#o.peer.token, key, this.#o.peer.advertise));
      if (got.kind === 'acquired') lease = got.lease;
      if (out.destroyed) void lease?.release();
      return this.#rest(repository, digest, delivered, size);
    };
    pass(first, (err) => {
      if (out.destroyed) return;
      first.unpipe(out);
      this.#count('taken_over');
      this.#o.logger.warn({ upstream: this.name, repository, digest, delivered, err: String(err) }, "the lease holder's stream failed: the rest comes from the upstream");
      takeOver().then(
        (rest) => pass(rest, (e) => out.destroy(e)),
        (e: unknown) => out.destroy(e as Error),
      );
    });
    let ended = false;
    out.once('end', () => (ended = true));
    out.once('close', () => {
      current.destroy();
      if (lease === undefined) return;
      if (ended) this.#releaseOnCommit(digest, lease);
      else void lease.release();
    });
    return out;
  }

  /** The blob from byte `from` on, from below: the whole (from 0), or a 206 of exactly the rest. */
  async #rest(repository: string, digest: Digest, from: number, size: number | undefined): Promise<Readable> {
    if (from === 0) return (await this.below.openBlob(repository, digest, WHOLE)).body!;
    const res = await this.below.openBlob(repository, digest, { ...WHOLE, range: `bytes=${from}-` });
    const m = res.status === 206 ? CONTENT_RANGE_RE.exec(res.headers['content-range'] ?? '') : null;
    const [start, end, total] = m ? [Number(m[1]), Number(m[2]), Number(m[3])] : [];
    if (start !== from || end !== total! - 1 || (size !== undefined && total !== size)) {
      res.body?.destroy();
      const said = res.status === 206 ? `206 with Content-Range ${res.headers['content-range'] ?? 'none'}` : String(res.status);
      throw new SigilError({ code: 'UPSTREAM_BAD_RESPONSE', message: `upstream ${this.name}: blob ${digest} of ${repository}: asked for bytes ${from}- after a peer failed, answered ${said}` });
    }
    return res.body!;
  }

  #count(outcome: FlightOutcome): void {
    this.#o.metrics?.blobFlights.inc({ upstream: this.name, outcome });
  }
}

/** The cluster single-flight layer, for compose.ts. */
export const clusterFlight =
  (opts: ClusterFlightOptions) =>
  (below: Registry): Registry =>
    new ClusterFlight(below, opts);
