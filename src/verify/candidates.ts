/**
 * The verification entry point: every candidate signature against every
 * authority of the policy, until one pair passes — or, for a policy with a
 * threshold above 1, until enough distinct authorities are met by distinct
 * signers (quorum.ts counts them). Nothing here throws: any exception (from
 * sigstore-js, OpenSSL, JSON parsing) is that attempt's reason, and every
 * candidate keeps its reason in the outcome.
 */
import type { Authority, Policy } from '../config/types.js';
import { prepareBundle, verifyBundle, type PreparedBundle } from './bundle.js';
import { createPublicKey } from 'node:crypto';
import { keyIdOf, keyMaterialId, parsePublicKey, type PublicKey } from './key-signature.js';
import { prepareLegacy, verifyLegacy, type PreparedLegacy } from './legacy.js';
import { countQuorum, type Pass } from './quorum.js';
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

/** One candidate's check, and every authority it verified under (only the first unless `every`). */
interface Checked {
  readonly check: SignatureCheck;
  readonly passes: readonly Pass[];
}

/** The key that made a verified signature (the authority's key, or the certificate's), by its key material. */
function signingKey(p: Prepared, key: AuthorityKey): string {
  if (typeof key === 'object') return keyMaterialId(key.key);
  // A keyless signer always verified with its certificate's key.
  const certificate = p.value.certificate;
  if (certificate === undefined) return '';
  try {
    return keyMaterialId(createPublicKey({ key: Buffer.from(certificate.publicKey), format: 'der', type: 'spki' }));
  } catch {
    return keyIdOf(certificate.publicKey);
  }
}

function checkCandidate(c: CandidateSignature, subject: Subject, policy: Policy, trust: TrustBundle, keys: readonly AuthorityKey[], now: Date, every: boolean): Checked {
  const source = c.source;
  try {
    const prepared = prepare(c, subject, policy);
    if (typeof prepared === 'string') return { check: { source, ok: false, reason: prepared }, passes: [] };
    const reasons: string[] = [];
    const passes: Pass[] = [];
    for (const i of attemptOrder(prepared, keys)) {
      const authority = policy.authorities[i];
      try {
        const signer = attempt(prepared, authority, keys[i], trust, now);
        passes.push({ source, authority: i, signer, signingKey: signingKey(prepared, keys[i]) });
        if (!every) break;
      } catch (e) {
        const reason = describeError(e);
        reasons.push(policy.authorities.length === 1 ? reason : `authority ${i} (${authorityLabel(authority, keys[i])}): ${reason}`);
      }
    }
    const first = passes[0];
    if (first !== undefined) return { check: { source, ok: true, signer: first.signer, authority: first.authority }, passes };
    return { check: { source, ok: false, reason: reasons.join('; ') }, passes };
  } catch (e) {
    return { check: { source, ok: false, reason: describeError(e) }, passes: [] };
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
 *   checks made until then; with a threshold N above 1, the first candidate
 *   after which N authorities are met by distinct signers, with the quorum;
 * - `invalid`: every candidate failed, each with its reason (with a threshold,
 *   too few authorities were met, and the quorum says which were);
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
  const threshold = policy.threshold ?? 1;
  const labels = policy.authorities.map((a, i) => `authority ${i} (${authorityLabel(a, keys[i])})`);
  const checks: SignatureCheck[] = [];
  const passes: Pass[] = [];
  for (const c of candidates) {
    const { check, passes: found } = checkCandidate(c, subject, policy, trust, keys, now, threshold > 1);
    checks.push(check);
    if (threshold <= 1) {
      if (check.ok) return { kind: 'verified', signer: check.signer, checks };
      continue;
    }
    if (found.length === 0) continue;
    passes.push(...found);
    const quorum = countQuorum(passes, labels, threshold);
    if (quorum.met.length >= threshold) return { kind: 'verified', signer: quorum.met[0].signer, checks, quorum };
  }
  return threshold <= 1 ? { kind: 'invalid', checks } : { kind: 'invalid', checks, quorum: countQuorum(passes, labels, threshold) };
}
