/**
 * A policy's attestation requirements (`attestations[]`): each is met by one attestation — an
 * in-toto statement whose subject is the served digest, of one of the requirement's predicate
 * types, signed by one of the policy's authorities, whose condition holds. Attestations come as
 * cosign's `.att` envelopes (envelope.ts) or Sigstore bundles among the referrers (bundle.ts).
 * Order matters for cost and safety: statement and binding first (cheap, unsigned), then the
 * signature, and only over a statement that verified the condition (bounded: condition-run.ts).
 * Nothing here throws: every failure is a reason.
 */
import type { AttestationRequirement, Policy } from '../config/types.js';
import type { AttestedStatement } from './binding.js';
import { prepareBundleAttestation, verifyBundle } from './bundle.js';
import { authorityLabel, type AuthorityKey } from './candidates.js';
import { bindStatement, runCondition, type BoundStatement, type ConditionBudget } from './condition-run.js';
import { prepareEnvelope } from './envelope.js';
import { verifyLegacy } from './legacy.js';
import { describeError } from './sigstore-run.js';
import type { TrustBundle } from './trust.js';
import type { AttestationCheck, CandidateSignature, Signer, Subject } from './types.js';

/** One attestation found: its statement and how to verify its signature, or why it cannot count. */
type Found =
  | {
      readonly source: string;
      readonly attested: AttestedStatement;
      readonly verifyWith: (i: number) => Signer;
      /** Memoised: the signer, or why no authority verifies it; the statement bound for conditions. */
      signer?: Signer | string;
      bound?: BoundStatement;
    }
  | { readonly source: string; readonly problem: string };

export interface AttestationContext {
  readonly subject: Subject;
  readonly policy: Policy;
  readonly trust: TrustBundle;
  /** The policy's authority keys, parsed once (candidates.ts parseAuthorityKey). */
  readonly keys: readonly AuthorityKey[];
  readonly now: Date;
  readonly budget: ConditionBudget;
}

function found(c: CandidateSignature, ctx: AttestationContext): Found | undefined {
  const { source } = c;
  const usable = (k: AuthorityKey): Exclude<AuthorityKey, string> => {
    if (typeof k === 'string') throw new Error(k);
    return k;
  };
  try {
    if (c.format === 'attestation') {
      const p = prepareEnvelope(c, ctx.subject);
      if (typeof p === 'string') return { source, problem: p };
      return { source, attested: p.attested, verifyWith: (i) => verifyLegacy(p, ctx.policy.authorities[i], usable(ctx.keys[i]), ctx.trust, ctx.now) };
    }
    if (c.format === 'bundle') {
      const p = prepareBundleAttestation(c, ctx.subject);
      if (typeof p === 'string') return { source, problem: p };
      return { source, attested: p.attested, verifyWith: (i) => verifyBundle(p.prepared, ctx.policy.authorities[i], usable(ctx.keys[i]), ctx.trust, ctx.now) };
    }
  } catch (e) {
    return { source, problem: describeError(e) };
  }
  return undefined; // a `.sig` layer signs; it attests nothing
}

/** The first authority that verifies the attestation's signature (tried once per attestation), or why none does. */
function signerOf(f: Extract<Found, { attested: unknown }>, ctx: AttestationContext): Signer | string {
  if (f.signer !== undefined) return f.signer;
  const reasons: string[] = [];
  for (const [i, authority] of ctx.policy.authorities.entries()) {
    try {
      f.signer = f.verifyWith(i);
      return f.signer;
    } catch (e) {
      const reason = describeError(e);
      reasons.push(ctx.policy.authorities.length === 1 ? reason : `authority ${i} (${authorityLabel(authority, ctx.keys[i])}): ${reason}`);
    }
  }
  f.signer = reasons.length === 0 ? `policy ${ctx.policy.name} has no authority to verify with` : reasons.join('; ');
  return f.signer;
}

function check(r: AttestationRequirement, all: readonly Found[], ctx: AttestationContext): AttestationCheck {
  const head = { name: r.name, predicateTypes: r.predicateTypes, condition: r.condition.text };
  const tried: { source: string; reason: string }[] = [];
  for (const f of all) {
    if (!('attested' in f) || !r.predicateTypes.includes(f.attested.predicateType)) continue;
    const signer = signerOf(f, ctx);
    if (typeof signer === 'string') {
      tried.push({ source: f.source, reason: `not signed by an authority of the policy: ${signer}` });
      continue;
    }
    f.bound ??= bindStatement(f.attested.statement);
    const result = runCondition(r.condition, f.bound, ctx.budget);
    if (result.ok) return { ...head, ok: true, source: f.source, signer, predicateType: f.attested.predicateType };
    tried.push({ source: f.source, reason: `condition ${r.condition.text} ${result.reason}` });
  }
  if (tried.length > 0) return { ...head, ok: false, reason: tried.map((t) => `${t.source}: ${t.reason}`).join('; '), tried };
  const unusable = all.flatMap((f) => ('problem' in f ? [`${f.source}: ${f.problem}`] : []));
  const none = `no attestation of predicate type ${r.predicateTypes.join(' or ')} for ${ctx.subject.digest}`;
  return { ...head, ok: false, reason: unusable.length === 0 ? none : `${none} (not usable: ${unusable.join('; ')})`, tried };
}

/** Checks every requirement of the policy against the attestations among `candidates`, in policy order. */
export function checkAttestations(candidates: readonly CandidateSignature[], ctx: AttestationContext): AttestationCheck[] {
  const requirements = ctx.policy.attestations ?? [];
  if (requirements.length === 0) return [];
  const all = candidates.map((c) => found(c, ctx)).filter((f) => f !== undefined);
  return requirements.map((r) => check(r, all, ctx));
}
