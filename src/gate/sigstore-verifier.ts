import type { Policy } from '../config/types.js';
import type { CurrentTrust } from '../trust/trust-source.js';
import { verifyImage } from '../verify/index.js';
import type { CandidateSignature, Outcome, Subject } from '../verify/types.js';
import type { SignatureVerifier } from './verifier.js';

/**
 * The gate's verifier over the trust material of a TrustSource: the configured roots, read
 * once at start, plus the TUF repository's when `trust.tuf` is set (never fetched here). Each
 * verification runs under the bundle current when it starts.
 */
export class TrustedVerifier implements SignatureVerifier {
  readonly #trust: CurrentTrust;

  constructor(trust: CurrentTrust) {
    this.#trust = trust;
  }

  /**
   * The fingerprint of the trust in use now. The gate reads it for a verdict's key before the
   * verification reads the bundle, and trust only moves forward: a verdict is never made under
   * older trust than its key names.
   */
  get trustFingerprint(): string {
    return this.#trust.current().fingerprint;
  }

  get sources(): readonly string[] {
    return this.#trust.current().sources;
  }

  async verify(candidates: readonly CandidateSignature[], subject: Subject, policy: Policy): Promise<Outcome> {
    return verifyImage(candidates, subject, policy, this.#trust.current());
  }
}
