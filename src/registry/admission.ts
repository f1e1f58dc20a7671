import type { LRUCache } from 'lru-cache';
import { lru } from '../lru.js';
import type { Policy } from '../config/types.js';
import type { Digest } from '../oci/digest.js';
import { admitsUnnamedBlob, type Judged } from '../policy/decide.js';
import { findPolicy } from '../policy/match.js';
import { cacheClock } from './layer.js';

/** Blob digests of manifests let through, remembered for admission to the store (enforce mode). */
export const ADMITTED_MAX = 100_000;
/** (upstream, repository) pairs whose policy mode is remembered (the config never changes while serving). */
export const POLICY_MEMO_MAX = 10_000;

/** A verdict as the keeper reads it: the policy it was made under, its basis and outcome. */
export type KeptJudgement = Judged & { readonly policy?: Policy };

/** A blob's admission: false, or the size to hold its download to and the manifest that named it. */
export type BlobAdmitted = false | { readonly size?: number; readonly manifest?: Digest };

/**
 * Which blobs may be written to the store and served from it (the rule: policy/decide.ts), given at construction to the
 * write-through layer and the keeper: the blobs a manifest let through names (remembered with
 * their descriptors' sizes for the verdict lifetime, cache.verifications.ttl), and, by the policy
 * of their repository, the rest. The policy is looked up once per (upstream, repository).
 */
export class StoreAdmission {
  readonly #policies: readonly Policy[];
  readonly #admitted: LRUCache<string, { size: number; manifest: Digest }>;
  readonly #policyOf = lru<string, { policy: Policy | undefined }>(POLICY_MEMO_MAX);

  constructor(policies: readonly Policy[], opts: { ttlMs: number; now?: () => number }) {
    this.#policies = policies;
    this.#admitted = lru(ADMITTED_MAX, { ttl: Math.max(1, opts.ttlMs), ...cacheClock(opts.now) });
  }

  /** The policy of a repository (findPolicy, remembered). */
  policy(upstream: string, repository: string): Policy | undefined {
    const k = `${upstream}/${repository}`;
    let memo = this.#policyOf.get(k);
    if (memo === undefined) {
      memo = { policy: findPolicy(this.#policies, upstream, repository) };
      this.#policyOf.set(k, memo);
    }
    return memo.policy;
  }

  /** A manifest was let through: the blobs it names may be stored, held to these sizes. */
  admitNamed(upstream: string, repository: string, manifest: Digest, blobs: ReadonlyArray<{ readonly digest: Digest; readonly size: number }>): void {
    for (const b of blobs) this.#admitted.set(`${upstream}|${repository}|${b.digest}`, { size: b.size, manifest });
  }

  /** Did a manifest let through in this process, within the verdict lifetime, name this blob in this repository? */
  admittedBy(upstream: string, repository: string, digest: Digest): boolean {
    return this.#admitted.has(`${upstream}|${repository}|${digest}`);
  }

  /** The write-through layer's question: may this blob be stored, and held to what size? */
  blob(upstream: string, repository: string, digest: Digest): BlobAdmitted {
    const admitted = this.#admitted.get(`${upstream}|${repository}|${digest}`);
    if (admitted !== undefined) return admitted;
    return admitsUnnamedBlob(this.policy(upstream, repository)) ? {} : false;
  }

  /** May a stored blob be served without a passing manifest that names it (anything but enforce)? */
  servesUnnamed(upstream: string, repository: string): boolean {
    return admitsUnnamedBlob(this.policy(upstream, repository));
  }
}
