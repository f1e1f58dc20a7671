/**
 * The verification entry point: every candidate signature against every
 * authority of the policy, until one pair passes. Nothing here throws: any
 * exception (from sigstore-js, OpenSSL, JSON parsing) is that attempt's
 * reason, and every candidate keeps its reason in the outcome.
 */
import type { Authority, Policy } from '../config/types.js';
import { prepareBundle, verifyBundle, type PreparedBundle } from './bundle.js';
import { parsePublicKey, type PublicKey } from './key-signature.js';
import { prepareLegacy, verifyLegacy, type PreparedLegacy } from './legacy.js';
import { describeError } from './sigstore-run.js';
import type { TrustBundle } from './trust.js';
import type { CandidateSignature, Outcome, SignatureCheck, Signer, Subject } from './types.js';

export interface VerifyOptions {
  /** The time a certificate is checked at when the signature carries no verified timestamp (private PKI). Default: now. */
  readonly now?: Date;
}

type Prepared = { readonly format: 'legacy'; readonly value: PreparedLegacy } | { readonly format: 'bundle'; readonly value: PreparedBundle };

/** An authority's key, parsed once per call; a string is why it does not parse. */
export type AuthorityKey = PublicKey | string | undefined;

export function authorityLabel(a: Authority, key: AuthorityKey): string {
  if (a.kind === 'keyless') return `keyless ${a.subjectText} (issuer ${a.issuerText})`;
  return typeof key === 'object' ? `key ${key.keyId}` : `key ${a.source}`;
}

function prepare(c: CandidateSignature, subject: Subject, policy: Policy): Prepared | string {
  switch (c.format) {
    case 'legacy': {
      const value = prepareLegacy(c, subject, policy);
      return typeof value === 'string' ? value : { format: 'legacy', value };
    }
    case 'bundle': {
      const value = prepareBundle(c, subject, policy);
      return typeof value === 'string' ? value : { format: 'bundle', value };
    }
    case 'attestation':
      return 'an attestation, not a signature of the image';
  }
}

/** Authority indexes in attempt order: key authorities named by a bundle's key hint first. */
function attemptOrder(p: Prepared, keys: readonly AuthorityKey[]): number[] {
  const order = keys.map((_, i) => i);
  const hint = p.format === 'bundle' ? p.value.keyHint : undefined;
  if (hint === undefined || hint === '') return order;
  const named = (k: AuthorityKey): boolean =>
    typeof k === 'object' && (k.keyId === hint || k.keyId.slice('sha256:'.length) === hint || Buffer.from(k.keyId.slice('sha256:'.length), 'hex').toString('base64') === hint);
  return [...order.filter((i) => named(keys[i])), ...order.filter((i) => !named(keys[i]))];
}

function attempt(p: Prepared, authority: Authority, key: AuthorityKey, trust: TrustBundle, now: Date): Signer {
  if (typeof key === 'string') throw new Error(key);
  return p.format === 'legacy' ? verifyLegacy(p.value, authority, key, trust, now) : verifyBundle(p.value, authority, key, trust, now);
}

function checkCandidate(c: CandidateSignature, subject: Subject, policy: Policy, trust: TrustBundle, keys: readonly AuthorityKey[], now: Date): SignatureCheck {
  const source = c.source;
  try {
    const prepared = prepare(c, subject, policy);
    if (typeof prepared === 'string') return { source, ok: false, reason: prepared };
    const reasons: string[] = [];
    for (const i of attemptOrder(prepared, keys)) {
      const authority = policy.authorities[i];
      try {
        const signer = attempt(prepared, authority, keys[i], trust, now);
        return { source, ok: true, signer, authority: i };
      } catch (e) {
        const reason = describeError(e);
        reasons.push(policy.authorities.length === 1 ? reason : `authority ${i} (${authorityLabel(authority, keys[i])}): ${reason}`);
      }
    }
    return { source, ok: false, reason: reasons.join('; ') };
  } catch (e) {
    return { source, ok: false, reason: describeError(e) };
  }
}

export function parseAuthorityKey(a: Authority): AuthorityKey {
  if (a.kind !== 'key') return undefined;
  try {
    return parsePublicKey(a.pem);
  } catch (e) {
    return `key ${a.source} does not parse: ${describeError(e)}`;
  }
}

/**
 * Verifies the candidate signatures of one manifest under a policy.
 * - `unsigned`: no candidates;
 * - `verified`: the first (candidate, authority) pair that passes, with the
 *   checks made until then;
 * - `invalid`: every candidate failed, each with its reason;
 * - `indeterminate`: the policy gives nothing to verify with.
 */
export function verifyCandidates(
  candidates: readonly CandidateSignature[],
  subject: Subject,
  policy: Policy,
  trust: TrustBundle,
  opts: VerifyOptions = {},
): Outcome {
  if (candidates.length === 0) return { kind: 'unsigned', checks: [] };
  if (policy.authorities.length === 0) return { kind: 'indeterminate', cause: `policy ${policy.name} has no authority to verify with`, checks: [] };
  const now = opts.now ?? new Date();
  const keys = policy.authorities.map(parseAuthorityKey);
  const checks: SignatureCheck[] = [];
  for (const c of candidates) {
    const check = checkCandidate(c, subject, policy, trust, keys, now);
    checks.push(check);
    if (check.ok) return { kind: 'verified', signer: check.signer, checks };
  }
  return { kind: 'invalid', checks };
}
