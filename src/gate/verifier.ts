import type { Policy } from '../config/types.js';
import type { CandidateSignature, Outcome, Subject } from '../verify/types.js';

/** What the gate needs of verification: a pure function of signatures, digest, policy and trust. */
export interface SignatureVerifier {
  /** Part of every verdict cache key: a changed trust root never reuses an old verdict. */
  readonly trustFingerprint: string;
  verify(candidates: readonly CandidateSignature[], subject: Subject, policy: Policy): Promise<Outcome>;
}
