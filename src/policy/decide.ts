import type { Policy } from '../config/types.js';
import type { FetchedManifest } from '../oci/registry.js';
import { signerHeader, type AttestationCheck, type Outcome, type Quorum, type SignatureCheck } from '../verify/types.js';
import type { Evaluation, Verification } from './evaluation.js';

/**
 * What a verdict means under its policy, and how sigil words it: the one place that says it.
 * Pure: the gate (serve), `sigil mirror`/`import`, `sigil verify` and the content store's
 * admission act on its answer.
 *
 * The rule: enforce lets through (serves, stores, vouches for blobs with) only what verified, or
 * a manifest whose bytes proved it is a signature artifact; warn lets the rest through marked;
 * off, or no policy, lets everything through unjudged.
 */

/** What is being judged: how its verdict was reached and the outcome (none when not verified at all). */
export type Judged = Pick<Evaluation, 'basis' | 'outcome'>;

/** A judged manifest, with its digest (named in a denial). */
export type JudgedManifest = Judged & { readonly manifest: Pick<FetchedManifest, 'digest'> };

export type Action = 'allow' | 'warn' | 'deny';

export interface Decision {
  /** allow: serve it; warn: serve it with `warning`; deny: refuse it (POLICY_DENIED, `denial`). */
  readonly action: Action;
  /** verified: a signature verified; unverified: judged, not verified; skipped: not judged (no policy, mode off, a signature artifact). */
  readonly verification: Verification;
  /** The Sigil-Signer header text, when verified. */
  readonly signer?: string;
  /**
   * Why it is not verified, one line: the basis when skipped ("no policy matches this image"), the
   * outcome with the policy and mode when unverified ("no signature found (policy p, enforce)").
   */
  readonly because?: string;
  /** Unverified: every reason, for the audit log (the cause first when indeterminate, then each failed signature). */
  readonly reasons: readonly string[];
  /** Unverified: the outcome and the policy, as serve words it ("no signature found (policy p)"). */
  readonly wording?: string;
  /** Warn: the `Warning: 299` text. */
  readonly warning?: string;
  /** Deny: the detail of the POLICY_DENIED error. */
  readonly denial?: Readonly<Record<string, unknown>>;
  /**
   * Deny: why, in a few words, for the status line's reason phrase (`sigil: no valid signature
   * (policy prod)`): what Go clients such as containerd print of a refused pull.
   */
  readonly statusPhrase?: string;
}

/** The decision on a judged manifest under its policy (`undefined`: no policy matches it). */
export function decide(policy: Policy | undefined, judged: JudgedManifest): Decision {
  switch (judged.basis) {
    case 'no-policy':
      return { action: 'allow', verification: 'skipped', because: 'no policy matches this image', reasons: [] };
    case 'mode-off':
      return { action: 'allow', verification: 'skipped', because: `policy ${policy?.name} has mode off`, reasons: [] };
    case 'signature-artifact':
      return { action: 'allow', verification: 'skipped', because: 'a signature artifact, not an image', reasons: [] };
    case 'signature':
    case 'index': {
      const o = judged.outcome;
      if (o?.kind === 'verified') return { action: 'allow', verification: 'verified', signer: signersOf(o), reasons: o.quorum ? quorumReasons(o.quorum) : [] };
      const wording = `${summary(o)} (policy ${policy?.name})`;
      const unverified = { verification: 'unverified' as const, because: `${describe(o)} (policy ${policy?.name}, ${policy?.mode})`, reasons: o ? reasonsOf(o) : [], wording };
      if (policy?.mode !== 'enforce') return { ...unverified, action: 'warn', warning: `sigil: ${wording}` };
      return { ...unverified, action: 'deny', denial: denialDetail(policy, o, judged.manifest.digest), statusPhrase: `sigil: ${headline(o)} (policy ${policy.name})` };
    }
  }
}

/**
 * The store admission rule for what a judged manifest brings (itself, its tag, its signature
 * data, the blobs it names): enforce keeps only what verified, or a proven signature artifact.
 */
export function mayKeep(policy: Policy | undefined, judged: Judged): boolean {
  return policy?.mode !== 'enforce' || judged.basis === 'signature-artifact' || judged.outcome?.kind === 'verified';
}

/** May a blob that no manifest let through names be stored (or served from the store)? Not under enforce. */
export function admitsUnnamedBlob(policy: Policy | undefined): boolean {
  return policy?.mode !== 'enforce';
}

/** The outcome in a few words: a denial's status line; the start of every other wording. */
function headline(o: Outcome | undefined): string {
  switch (o?.kind) {
    case undefined:
      return 'not verified';
    case 'verified':
      return 'verified';
    case 'unsigned':
      return 'no signature found';
    case 'invalid':
      if (unmet(o).length > 0) return `${unmet(o).length === 1 ? 'attestation' : 'attestations'} ${unmet(o).map((a) => a.name).join(', ')} not met`;
      return o.quorum ? 'threshold not met' : 'no valid signature';
    case 'indeterminate':
      return 'could not verify';
  }
}

/** The outcome as serve words it (warnings, denials). */
function summary(o: Outcome | undefined): string {
  switch (o?.kind) {
    case 'verified':
      return `${headline(o)} (${signersOf(o)})`;
    case 'invalid':
      if (unmet(o).length > 0) return unmet(o).map(unmetWording).join('; ');
      if (o.quorum) return `${quorumShort(o.quorum)}: ${o.checks.length} signature(s) found`;
      return `${headline(o)}: ${o.checks.length} signature(s) found, none verified`;
    case 'indeterminate':
      return `${headline(o)}: ${o.cause}`;
    default:
      return headline(o);
  }
}

/** The outcome as `sigil mirror` and `import` word it: an invalid one with its first reason. */
function describe(o: Outcome | undefined): string {
  switch (o?.kind) {
    case 'invalid': {
      if (unmet(o).length > 0) return `signed, but ${unmet(o).map(unmetWording).join('; ')}`;
      if (o.quorum) return `${quorumShort(o.quorum)} (${o.checks.length} signature(s) found${o.quorum.met.length > 0 ? `; verified: ${o.quorum.met.map((m) => m.authority).join(', ')}` : ''})`;
      const first = o.checks.find((c) => !c.ok);
      return `${headline(o)} (${o.checks.length} found${first && !first.ok ? `; ${first.source}: ${first.reason}` : ''})`;
    }
    case 'indeterminate':
      return summary(o);
    default:
      return headline(o);
  }
}

/** The Sigil-Signer text: the signer, or every signer a threshold credited, in policy order. */
function signersOf(o: Extract<Outcome, { kind: 'verified' }>): string {
  return o.quorum ? o.quorum.met.map((m) => signerHeader(m.signer)).join(', ') : signerHeader(o.signer);
}

/** A threshold that was not met, in a few words. */
function quorumShort(q: Quorum): string {
  return `threshold not met: ${q.met.length} of ${q.threshold} required authorities verified by distinct signers`;
}

/** A threshold's count, then one line per authority: who verified it where, or why not. */
export function quorumReasons(q: Quorum): string[] {
  return [
    `threshold ${q.threshold} ${q.met.length >= q.threshold ? 'met' : 'not met'}: ${q.met.length} ${q.met.length === 1 ? 'authority' : 'authorities'} verified by distinct signers`,
    ...q.met.map((m) => `${m.authority}: verified, signer ${signerHeader(m.signer)} (${m.source})`),
    ...q.unmet.map((u) => `${u.authority}: not verified: ${u.why}`),
  ];
}

/** The attestation requirements an outcome did not meet. */
function unmet(o: Outcome): Extract<AttestationCheck, { ok: false }>[] {
  return o.kind === 'invalid' ? (o.attestations ?? []).filter((a): a is Extract<AttestationCheck, { ok: false }> => !a.ok) : [];
}

/** An unmet attestation requirement, named with its predicate type(s), and why. */
function unmetWording(a: Extract<AttestationCheck, { ok: false }>): string {
  return `attestation ${a.name} (${a.predicateTypes.join(' or ')}) not met: ${a.reason}`;
}

function reasonsOf(o: Outcome): string[] {
  const r = o.checks.flatMap((c) => (c.ok ? [] : [`${c.source}: ${c.reason}`]));
  if (o.kind === 'indeterminate') return [o.cause, ...r];
  return [...unmet(o).map(unmetWording), ...(o.kind === 'invalid' && o.quorum ? quorumReasons(o.quorum) : []), ...r];
}

/** An attestation requirement as a denial's detail lists it. */
function attestationDetail(a: AttestationCheck): Record<string, unknown> {
  const head = { name: a.name, predicateTypes: a.predicateTypes, condition: a.condition };
  return a.ok ? { ...head, result: 'met', source: a.source, signer: signerHeader(a.signer) } : { ...head, result: 'not met', reason: a.reason };
}

function denialDetail(policy: Policy, o: Outcome | undefined, digest: string): Record<string, unknown> {
  return {
    policy: policy.name,
    digest,
    outcome: o?.kind,
    signatures: o ? o.checks.map(checkDetail) : [],
    ...(o?.kind === 'indeterminate' ? { cause: o.cause } : {}),
    ...(o?.kind === 'invalid' && o.attestations !== undefined ? { attestations: o.attestations.map(attestationDetail) } : {}),
    ...(o?.kind === 'invalid' && o.quorum
      ? { threshold: { required: o.quorum.threshold, verified: o.quorum.met.map((m) => m.authority), notVerified: o.quorum.unmet.map((u) => u.authority) } }
      : {}),
  };
}

function checkDetail(c: SignatureCheck): Record<string, string> {
  return c.ok ? { source: c.source, result: 'verified', signer: signerHeader(c.signer) } : { source: c.source, result: 'failed', reason: c.reason };
}
