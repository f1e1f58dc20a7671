/**
 * The verdict on an image under a policy: its signatures first (candidates.ts), then — once one
 * verified, and only when the policy asks — the attestations the policy requires
 * (attestations.ts). An image whose signature verified but whose attestations fall short is
 * `invalid`, with the signature checks and the attestation checks saying why.
 */
import type { Policy } from '../config/types.js';
import { checkAttestations } from './attestations.js';
import { parseAuthorityKey, verifyCandidates, type VerifyOptions } from './candidates.js';
import { conditionBudget } from './condition-run.js';
import type { TrustBundle } from './trust.js';
import type { CandidateSignature, Outcome, Subject } from './types.js';

export interface ImageVerifyOptions extends VerifyOptions {
  /** CPU time the attestation conditions may take together (tests shorten it); default CONDITION_BUDGET_MS. */
  readonly conditionBudgetMs?: number;
}

/** Verifies the signatures and attestations found for one manifest (`.att` layers among them). */
export function verifyImage(candidates: readonly CandidateSignature[], subject: Subject, policy: Policy, trust: TrustBundle, opts: ImageVerifyOptions = {}): Outcome {
  const signatures = candidates.filter((c) => c.format !== 'attestation');
  const outcome = verifyCandidates(signatures, subject, policy, trust, opts);
  if (outcome.kind !== 'verified' || (policy.attestations ?? []).length === 0) return outcome;
  const attestations = checkAttestations(candidates, {
    subject,
    policy,
    trust,
    keys: policy.authorities.map(parseAuthorityKey),
    now: opts.now ?? new Date(),
    budget: conditionBudget(opts.conditionBudgetMs),
  });
  if (attestations.every((a) => a.ok)) return { ...outcome, attestations };
  return { kind: 'invalid', checks: outcome.checks, attestations };
}
