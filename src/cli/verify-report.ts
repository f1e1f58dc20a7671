import { configMediaType } from '../oci/manifest.js';
import { IMAGE_CONFIG_MEDIA_TYPES } from '../oci/media-types.js';
import { decide, quorumReasons } from '../policy/decide.js';
import type { Evaluation } from '../policy/evaluation.js';
import { signerHeader, type AttestationCheck, type Outcome } from '../verify/types.js';

/** What `sigil verify` checked: the resolved IMAGE. */
export interface ImageRef {
  readonly upstream: string;
  readonly repository: string;
  /** The tag or digest asked for. */
  readonly reference: string;
  /** `repo:tag@digest`: the tag whose index may vouch for the digest (a platform manifest). */
  readonly indexTag?: string;
}

/** The verdict on IMAGE, and how an index came into it. */
export interface Checked {
  readonly ev: Evaluation;
  /** The digest's own outcome when it did not verify on its own and `ev` is its verdict through the tag's index. */
  readonly own?: Outcome;
  /** Why the tag's index did not vouch for the digest. */
  readonly indexNote?: string;
}

/** The `--json` report. */
export function report(ref: ImageRef, c: Checked) {
  const { ev } = c;
  const o = ev.outcome;
  const d = decide(ev.policy, ev);
  return {
    image: `${ref.upstream}/${ref.repository}`,
    reference: ref.indexTag !== undefined ? `${ref.indexTag}@${ref.reference}` : ref.reference,
    digest: ev.manifest.digest,
    policy: ev.policy?.name ?? null,
    mode: ev.policy?.mode ?? null,
    verified: d.verification === 'verified',
    outcome: o?.kind ?? (ev.basis === 'no-policy' ? 'no-policy' : 'skipped'),
    signer: d.signer ?? null,
    viaIndex: ev.index ?? null,
    ...(c.own !== undefined ? { ownOutcome: c.own.kind } : {}),
    ...(c.indexNote !== undefined ? { indexNote: c.indexNote } : {}),
    cause: o?.kind === 'indeterminate' ? o.cause : null,
    signatures: (o?.checks ?? []).map((s) => (s.ok ? { source: s.source, ok: true, signer: signerHeader(s.signer) } : { source: s.source, ok: false, reason: s.reason })),
    ...(attestationsOf(o) !== undefined ? { attestations: attestationsOf(o)?.map(attestationReport) } : {}),
  };
}

/** The attestation requirements checked for an outcome (a policy that has some, once a signature verified). */
function attestationsOf(o: Outcome | undefined): readonly AttestationCheck[] | undefined {
  return o?.kind === 'verified' || o?.kind === 'invalid' ? o.attestations : undefined;
}

/** One requirement: met (where, by whom, its condition passed) or not (why, and what each attestation failed on). */
function attestationReport(a: AttestationCheck) {
  const head = { name: a.name, predicateTypes: a.predicateTypes, condition: a.condition, met: a.ok };
  return a.ok ? { ...head, source: a.source, predicateType: a.predicateType, signer: signerHeader(a.signer) } : { ...head, reason: a.reason, tried: a.tried };
}

/** The lines of the attestation requirements: which were met and which conditions passed. */
function attestationLines(o: Outcome | undefined): string[] {
  return (attestationsOf(o) ?? []).flatMap((a) => {
    const head = `  attestation ${JSON.stringify(a.name)} (${a.ok ? a.predicateType : a.predicateTypes.join(' or ')})`;
    if (a.ok) return [`${head}: met by ${a.source}, signer ${signerHeader(a.signer)}`, `    condition passed: ${a.condition}`];
    if (a.tried.length === 0) return [`${head}: NOT met: ${a.reason}`];
    return [`${head}: NOT met`, ...a.tried.map((t) => `    ${t.source}: ${t.reason}`)];
  });
}

/** The report for people. */
export function text(ref: ImageRef, c: Checked): string {
  const { ev } = c;
  const r = report(ref, c);
  const head = `${r.image}@${r.digest} (${r.reference})`;
  // a threshold policy: which authorities verified, by which signers (policy/decide.ts)
  const quorum = ev.outcome?.kind === 'verified' || ev.outcome?.kind === 'invalid' ? ev.outcome.quorum : undefined;
  const counted = quorum ? quorumReasons(quorum).map((q) => `  ${q}`) : [];
  if (r.verified) {
    const lines = [`verified: ${head}`, `  policy: ${r.policy}`, `  signer: ${r.signer}`];
    if (r.viaIndex) lines.push(`  via index: ${r.viaIndex}${ref.indexTag !== undefined ? ` (${ref.indexTag})` : ''}`);
    lines.push(...counted);
    if (c.own !== undefined) lines.push(`  this platform manifest has no valid signature of its own (${c.own.kind}): it passes as a child of the verified index that lists it`);
    lines.push(...attestationLines(ev.outcome));
    return `${lines.join('\n')}\n`;
  }
  const lines = [`NOT verified: ${head}`];
  const d = decide(ev.policy, ev);
  if (d.verification === 'skipped') lines.push(`  ${ev.basis === 'signature-artifact' ? 'this is ' : ''}${d.because}`);
  else lines.push(`  policy: ${r.policy} (${r.mode})`, `  outcome: ${r.outcome}${r.cause ? `: ${r.cause}` : ''}`, ...counted);
  if (r.outcome === 'unsigned') lines.push('  no signature found');
  for (const s of r.signatures) lines.push(`  ${s.source}: ${s.ok ? `verified by ${s.signer}` : s.reason}`);
  lines.push(...attestationLines(ev.outcome));
  if (c.indexNote !== undefined) lines.push(`  ${c.indexNote}`);
  else if (platformCandidate(ref, ev)) {
    lines.push(`  a platform manifest of an image index passes when the index that lists it verifies: check it through the index's tag, as ${r.image}:TAG@${r.digest}`);
  }
  return `${lines.join('\n')}\n`;
}

/**
 * Asked for by digest alone, an image manifest (a runtime's config: not an index, not an artifact
 * such as a Flux artifact or Helm chart) that carries no signature: maybe a platform of a signed index.
 */
function platformCandidate(ref: ImageRef, ev: Evaluation): boolean {
  const config = configMediaType(ev.manifest.bytes);
  return ref.reference.includes(':') && ref.indexTag === undefined && ev.outcome?.kind === 'unsigned' && config !== undefined && IMAGE_CONFIG_MEDIA_TYPES.has(config);
}
