import { LRUCache } from 'lru-cache';
import type { Mode, Policy } from '../config/types.js';
import type { Digest } from '../oci/digest.js';
import { findPolicy } from '../policy/match.js';
import { cacheClock } from './layer.js';
import type { Outcome } from '../verify/types.js';

/** Blob digests of manifests let through, remembered for admission to the store (enforce mode). */
export const ADMITTED_MAX = 100_000;
/** (upstream, repository) pairs whose policy mode is remembered (the config never changes while serving). */
export const POLICY_MEMO_MAX = 10_000;

/** What the admission rule reads of a verdict (the gate's Evaluation has this shape). */
export interface Judged {
  readonly policy?: { readonly mode: Mode };
  /** 'signature-artifact': signature data whose bytes were checked, let through unverified. */
  readonly basis?: string;
  readonly outcome?: Outcome;
}

/**
 * The store's admission rule, the one place it is written: the store keeps what the gate lets
 * through — under enforce only what verified (or signature data whose bytes were checked), under
 * warn, off or no policy everything. Without a verdict (`judged` undefined: a blob no manifest
 * let through in this process names) only a policy that is not enforce admits.
 * (To become policy/decide.ts's decision: kept unless denied.)
 */
export function storeAdmits(policy: { readonly mode: Mode } | undefined, judged?: Judged): boolean {
  if (policy?.mode !== 'enforce') return true;
  return judged !== undefined && (judged.basis === 'signature-artifact' || judged.outcome?.kind === 'verified');
}

/** A blob's admission: false, or the size to hold its download to and the manifest that named it. */
export type BlobAdmitted = false | { readonly size?: number; readonly manifest?: Digest };

/**
 * Which blobs may be written to the store and served from it, given at construction to the
 * write-through layer and the keeper: the blobs a manifest let through names (remembered with
 * their descriptors' sizes for the verdict lifetime, cache.verifications.ttl), and, by the policy
 * of their repository, the rest. The policy is looked up once per (upstream, repository).
 */
export class StoreAdmission {
  readonly #policies: readonly Policy[];
  readonly #admitted: LRUCache<string, { size: number; manifest: Digest }>;
  readonly #policyOf = new LRUCache<string, { policy: Policy | undefined }>({ max: POLICY_MEMO_MAX });

  constructor(policies: readonly Policy[], opts: { ttlMs: number; now?: () => number }) {
    this.#policies = policies;
    this.#admitted = new LRUCache({ max: ADMITTED_MAX, ttl: Math.max(1, opts.ttlMs), ...cacheClock(opts.now) });
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
    return storeAdmits(this.policy(upstream, repository)) ? {} : false;
  }

  /** May a stored blob be served without a passing manifest that names it (anything but enforce)? */
  servesUnnamed(upstream: string, repository: string): boolean {
    return storeAdmits(this.policy(upstream, repository));
  }
}
