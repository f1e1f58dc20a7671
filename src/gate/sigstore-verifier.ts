import type { Policy } from '../config/types.js';
import { verifyImage, type TrustBundle } from '../verify/index.js';
import type { CandidateSignature, Outcome, Subject } from '../verify/types.js';
import type { SignatureVerifier } from './verifier.js';

/** The gate's verifier over trust material loaded once at start (never fetched at run time). */
export class TrustedVerifier implements SignatureVerifier {
  readonly #trust: TrustBundle;
  readonly trustFingerprint: string;

  constructor(trust: TrustBundle) {
    this.#trust = trust;
    this.trustFingerprint = trust.fingerprint;
  }

  get sources(): readonly string[] {
    return this.#trust.sources;
  }

  async verify(candidates: readonly CandidateSignature[], subject: Subject, policy: Policy): Promise<Outcome> {
    return verifyImage(candidates, subject, policy, this.#trust);
  }
}
