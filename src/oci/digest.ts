import { createHash } from 'node:crypto';

// distribution-spec: a digest is algorithm ":" encoded; sigil accepts the
// registered sha256 and sha512 algorithms with their exact hex lengths.
const DIGEST_RE = /^(sha256:[a-f0-9]{64}|sha512:[a-f0-9]{128})$/;

export type Digest = `sha256:${string}` | `sha512:${string}`;

export function isDigest(s: string): s is Digest {
  return DIGEST_RE.test(s);
}

export function digestAlgorithm(d: Digest): 'sha256' | 'sha512' {
  return d.startsWith('sha512:') ? 'sha512' : 'sha256';
}

export function sha256Digest(bytes: Uint8Array): Digest {
  return `sha256:${createHash('sha256').update(bytes).digest('hex')}`;
}

/** Digest of `bytes` with the same algorithm as `like` (defaults to sha256). */
export function digestOf(bytes: Uint8Array, like?: Digest): Digest {
  const alg = like ? digestAlgorithm(like) : 'sha256';
  return `${alg}:${createHash(alg).update(bytes).digest('hex')}` as Digest;
}

/** cosign's tag for the signature of a digest: sha256-<hex>.sig */
export function signatureTag(d: Digest): string {
  return `${d.replace(':', '-')}.sig`;
}

/** cosign's tag for the attestations of a digest: sha256-<hex>.att */
export function attestationTag(d: Digest): string {
  return `${d.replace(':', '-')}.att`;
}

/** OCI 1.1 referrers fallback tag: <alg>-<hex> */
export function referrersTag(d: Digest): string {
  return d.replace(':', '-');
}
