import type { Policy } from '../config/types.js';
import type { Digest } from '../oci/digest.js';
import type { FetchedManifest } from '../oci/registry.js';
import type { Outcome } from '../verify/types.js';

// What a manifest's judgement is made of: the gate produces it; decide.ts, the keeper, `mirror`
// and `sigil verify` read it without importing the gate.

export type Verification = 'verified' | 'unverified' | 'skipped';

/** A blob of a signature artifact whose bytes were checked to be signature data. */
export interface SignatureBlob {
  readonly digest: Digest;
  readonly size: number;
  readonly bytes?: Buffer;
}

/** How a manifest's verdict was reached, for logs and `sigil verify`. */
export type Basis = 'no-policy' | 'mode-off' | 'signature-artifact' | 'signature' | 'index';

/** Everything known about one manifest: the bytes, the policy, and the outcome of verifying them. */
export interface Evaluation {
  readonly manifest: FetchedManifest;
  readonly policy?: Policy;
  readonly outcome?: Outcome;
  readonly basis: Basis;
  /** The verified index through which a child passed. */
  readonly index?: string;
  /**
   * basis 'signature-artifact': its config and layers, judged on their bytes (the bytes only the
   * first time; a memoised verdict gives digests and sizes).
   */
  readonly signatureBlobs?: readonly SignatureBlob[];
  /** Shaped like a signature artifact but its content is not signature data: why (verified as an image instead). */
  readonly notArtifact?: string;
  readonly cached: boolean;
}

/** What the gate decided: the bytes to serve and how they were judged. */
export interface ManifestDecision extends Evaluation {
  readonly verification: Verification;
  readonly signer?: string;
  /** A `Warning: 299` text for warn mode. */
  readonly warning?: string;
}

export interface ManifestTarget {
  readonly upstream: string;
  readonly repository: string;
  readonly reference: string;
  readonly accept?: string;
}
