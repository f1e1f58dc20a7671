/**
 * N-of-M: which authorities a policy's signatures meet when `threshold` distinct authorities
 * must verify (two-person release signing). A signer counts for one authority at most, however
 * many signatures it made and however many authorities it fits: the signatures are grouped by
 * signer — the same signature, the same signing key (in any encoding), or the same keyless
 * identity (subject and issuer) — and the signers are matched to the authorities they verified
 * under by a maximum bipartite matching, so that a signer fitting two authorities never takes
 * the only one another signer fits. Pure.
 */
import type { Quorum, Signer } from './types.js';

/** A signature that verified under one authority. */
export interface Pass {
  /** Where the signature was found ("sha256-<hex>.sig layer 0", "referrer sha256:…"). */
  readonly source: string;
  /** The authority's index in the policy. */
  readonly authority: number;
  readonly signer: Signer;
  /** The key that made the signature (the authority's key, or the certificate's) by its material (`keyMaterialId`), not its encoding. */
  readonly signingKey: string;
}

/**
 * What identifies a signer: the signature itself (one signature is one signer's, whatever
 * authorities it verified under), its signing key and, keyless, its identity (ephemeral keys
 * differ per signature).
 */
function signerTokens(p: Pass): string[] {
  const tokens = [`signature ${p.source}`, `key ${p.signingKey}`];
  if (p.signer.kind === 'keyless') tokens.push(`identity ${p.signer.subject}\n${p.signer.issuer}`);
  return tokens;
}

/** The passes grouped by signer: passes sharing any token are one signer's (union-find). */
function groupBySigner(passes: readonly Pass[]): Pass[][] {
  const parent = passes.map((_, i) => i);
  const root = (i: number): number => (parent[i] === i ? i : (parent[i] = root(parent[i])));
  const firstWith = new Map<string, number>();
  passes.forEach((p, i) => {
    for (const t of signerTokens(p)) {
      const j = firstWith.get(t);
      if (j === undefined) firstWith.set(t, i);
      else parent[root(i)] = root(j);
    }
  });
  const groups = new Map<number, Pass[]>();
  passes.forEach((p, i) => {
    const r = root(i);
    const group = groups.get(r);
    if (group) group.push(p);
    else groups.set(r, [p]);
  });
  return [...groups.values()];
}

/**
 * Counts `passes` against the policy's authorities (`labels`, one per authority, in policy
 * order). `met` lists every authority credited, in policy order; the threshold is met when it
 * has at least `threshold` entries.
 */
export function countQuorum(passes: readonly Pass[], labels: readonly string[], threshold: number): Quorum {
  const signers = groupBySigner(passes);
  const fits = signers.map((s) => [...new Set(s.map((p) => p.authority))].sort((a, b) => a - b));
  /** owner[a]: the signer credited for authority a, or -1. */
  const owner = labels.map(() => -1);
  const augment = (signer: number, seen: Set<number>): boolean => {
    for (const a of fits[signer]) {
      if (seen.has(a) || a >= owner.length) continue;
      seen.add(a);
      if (owner[a] === -1 || augment(owner[a], seen)) {
        owner[a] = signer;
        return true;
      }
    }
    return false;
  };
  signers.forEach((_, s) => augment(s, new Set()));

  const met: Quorum['met'][number][] = [];
  const unmet: Quorum['unmet'][number][] = [];
  labels.forEach((authority, a) => {
    const credited = owner[a] === -1 ? undefined : signers[owner[a]].find((p) => p.authority === a);
    if (credited) met.push({ authority, signer: credited.signer, source: credited.source });
    else unmet.push({ authority, why: passes.some((p) => p.authority === a) ? 'only signers counted for another authority verified' : 'no signature verified' });
  });
  return { threshold, met, unmet };
}
