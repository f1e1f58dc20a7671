import type { Digest } from '../oci/digest.js';

/**
 * A signature found for a manifest, as discovery (signatures/) hands it to verification.
 * `source` says where it was found, for messages: "sha256-<hex>.sig layer 0", "referrer sha256:…".
 */
export type CandidateSignature =
  | {
      readonly format: 'legacy';
      readonly source: string;
      /** The layer blob: cosign's simple-signing JSON payload, exactly as stored. */
      readonly payload: Buffer;
      /**
       * The layer's annotations: dev.cosignproject.cosign/signature (base64),
       * dev.sigstore.cosign/certificate, dev.sigstore.cosign/chain (PEM),
       * dev.sigstore.cosign/bundle (Rekor SET JSON), dev.sigstore.cosign/rfc3161timestamp.
       */
      readonly annotations: Readonly<Record<string, string>>;
    }
  | {
      readonly format: 'bundle';
      readonly source: string;
      /** The Sigstore bundle JSON (application/vnd.dev.sigstore.bundle.v0.3+json), exactly as stored. */
      readonly bundle: Buffer;
    }
  | {
      /** An attestation of cosign's legacy layout (`sha256-<hex>.att`): not a signature of the image. */
      readonly format: 'attestation';
      readonly source: string;
      /** The layer blob: a DSSE envelope (application/vnd.dsse.envelope.v1+json), exactly as stored. */
      readonly envelope: Buffer;
      /** The layer's annotations: the certificate and chain, and the Rekor SET of an intoto entry. */
      readonly annotations: Readonly<Record<string, string>>;
    };

/** Who signed: a key (by the sha256 of its SPKI DER) or a keyless identity. */
export type Signer =
  | { readonly kind: 'key'; readonly keyId: string }
  | { readonly kind: 'keyless'; readonly subject: string; readonly issuer: string };

/** The verdict on one candidate signature, with its reason when it failed. */
export type SignatureCheck =
  | { readonly source: string; readonly ok: true; readonly signer: Signer; readonly authority: number }
  | { readonly source: string; readonly ok: false; readonly reason: string };

/**
 * The verdict on one attestation requirement of a policy (`attestations[]`): met by an
 * attestation (where, who signed it, its predicate type), or not, with what each attestation of
 * the predicate type failed on (its signature, or the condition) and a one-line reason.
 */
export type AttestationCheck = {
  readonly name: string;
  readonly predicateTypes: readonly string[];
  /** The condition's text (`true` when none was written). */
  readonly condition: string;
} & (
  | { readonly ok: true; readonly source: string; readonly signer: Signer; readonly predicateType: string }
  | { readonly ok: false; readonly reason: string; readonly tried: readonly { readonly source: string; readonly reason: string }[] }
);

/**
 * How a policy with a `threshold` above 1 was counted: each authority credited with a signature
 * of its own signer (no signer counts for two authorities), and the authorities left without one.
 * Authorities are named as in reasons: "authority 0 (key sha256:…)".
 */
export interface Quorum {
  readonly threshold: number;
  readonly met: readonly { readonly authority: string; readonly signer: Signer; readonly source: string }[];
  /** `why`: no signature verified under it, or only signers already counted for another authority did. */
  readonly unmet: readonly { readonly authority: string; readonly why: string }[];
}

/**
 * The closed union every decision is made from. Enforce allows only `verified`. A policy with a
 * threshold above 1 adds its `quorum` to `verified` (`signer`: the first one credited) and to
 * `invalid` (signatures found, too few authorities met). A policy with attestations is verified
 * only when every requirement is met (`attestations`, all ok); a signed image whose attestations
 * fall short is `invalid`, its checks and `attestations` saying why.
 */
export type Outcome =
  | { readonly kind: 'verified'; readonly signer: Signer; readonly checks: readonly SignatureCheck[]; readonly quorum?: Quorum; readonly attestations?: readonly AttestationCheck[] }
  | { readonly kind: 'unsigned'; readonly checks: readonly SignatureCheck[] }
  | { readonly kind: 'invalid'; readonly checks: readonly SignatureCheck[]; readonly quorum?: Quorum; readonly attestations?: readonly AttestationCheck[] }
  | { readonly kind: 'indeterminate'; readonly cause: string; readonly checks: readonly SignatureCheck[] };

/** What the manifest is: the digest that signatures must name. */
export interface Subject {
  readonly digest: Digest;
}

/** The contract's Sigil-Signer header text for a signer. */
export function signerHeader(s: Signer): string {
  if (s.kind === 'key') return s.keyId;
  // A private-PKI certificate carries no OIDC issuer: then the subject alone names the signer.
  return s.issuer === '' ? s.subject : `${s.subject} (issuer ${s.issuer})`;
}
