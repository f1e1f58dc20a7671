import type { Logger } from 'pino';
import type { Config, Policy } from '../config/types.js';
import { SigilError } from '../errors.js';
import type { Metrics } from '../audit/metrics.js';
import { findPolicy } from '../policy/match.js';
import type { FetchedManifest } from '../upstream/types.js';
import type { UpstreamClient } from '../upstream/client.js';

export type Verification = 'verified' | 'unverified' | 'skipped';

/** What the gate decided about one manifest: the bytes to serve and how they were judged. */
export interface ManifestDecision {
  readonly manifest: FetchedManifest;
  readonly verification: Verification;
  readonly policy?: Policy;
  readonly signer?: string;
  /** A `Warning: 299` text for warn mode. */
  readonly warning?: string;
}

export interface ManifestTarget {
  readonly upstream: string;
  readonly repository: string;
  readonly reference: string;
  readonly accept?: string;
}

/**
 * The one module that knows a manifest's whole path: fetch (buffered, hashed, digest
 * checked by upstream/) → verify → decide → the same bytes are served. Concurrent
 * identical requests share one upstream fetch.
 *
 * Verification is the next step of the project (issue 3). Until it exists, policies in
 * `warn` and `off` mode serve with `Sigil-Verification: skipped`, and `enforce` fails
 * closed: nothing is served that a policy says must be verified.
 */
export class ManifestGate {
  readonly #clients: ReadonlyMap<string, UpstreamClient>;
  readonly #config: Config;
  readonly #metrics: Metrics;
  readonly #log: Logger;
  readonly #inflight = new Map<string, Promise<ManifestDecision>>();

  constructor(deps: { config: Config; clients: ReadonlyMap<string, UpstreamClient>; metrics: Metrics; logger: Logger }) {
    this.#config = deps.config;
    this.#clients = deps.clients;
    this.#metrics = deps.metrics;
    this.#log = deps.logger;
  }

  decide(target: ManifestTarget): Promise<ManifestDecision> {
    const key = `${target.upstream}\0${target.repository}\0${target.reference}\0${target.accept ?? ''}`;
    const running = this.#inflight.get(key);
    if (running) return running;
    const p = this.#decide(target).finally(() => this.#inflight.delete(key));
    this.#inflight.set(key, p);
    return p;
  }

  async #decide(target: ManifestTarget): Promise<ManifestDecision> {
    const client = this.#clients.get(target.upstream);
    if (!client) throw new SigilError({ code: 'NAME_UNKNOWN', message: `upstream '${target.upstream}' is not configured` });
    const policy = findPolicy(this.#config.policies, target.upstream, target.repository);
    const manifest = await client.fetchManifest(target.repository, target.reference, { accept: target.accept });
    const decision = this.#judge(target, manifest, policy);
    this.#metrics.manifestDecisions.inc({
      upstream: target.upstream,
      verification: decision.verification,
      policy: policy?.name ?? '',
    });
    return decision;
  }

  #judge(target: ManifestTarget, manifest: FetchedManifest, policy: Policy | undefined): ManifestDecision {
    if (policy?.mode === 'enforce') {
      this.#log.warn(
        { upstream: target.upstream, repository: target.repository, digest: manifest.digest, policy: policy.name },
        'denied: enforce policy but signature verification is not available in this build',
      );
      throw new SigilError({
        code: 'POLICY_DENIED',
        message: `policy '${policy.name}' requires a verified signature, and this build of sigil cannot verify signatures yet`,
        detail: { policy: policy.name, digest: manifest.digest },
      });
    }
    return { manifest, verification: 'skipped', policy };
  }
}
