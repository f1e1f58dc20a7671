/**
 * Limits on what one candidate signature may make the verifier parse. The
 * inputs come from the upstream registry, i.e. from whoever can push there.
 */

/** cosign's simple-signing payload is ~250 bytes plus the signer's `-a` annotations; it is JSON-parsed and hashed whole. */
export const LEGACY_PAYLOAD_MAX_BYTES = 256 * 1024;

/**
 * A cosign sign/v1 bundle is ~6 KiB (certificate, Rekor entry, proof); 4 MiB,
 * the manifest limit, leaves room for attestation predicates while bounding
 * the JSON parse and the base64 decoding of the envelope.
 */
export const BUNDLE_MAX_BYTES = 4 * 1024 * 1024;

/**
 * Certificates a candidate may carry (leaf + chain annotation, or a bundle's
 * x509CertificateChain). Fulcio chains are 2–3 certificates deep; each one
 * costs an ASN.1 parse.
 */
export const CERT_CHAIN_MAX_LENGTH = 10;

/**
 * RFC 3161 timestamps one bundle may carry: cosign v3 attaches one. Each costs a signature
 * verification (twice: sigil's reason check and sigstore-js's) and sigstore-js compares them
 * pairwise for duplicates.
 */
export const RFC3161_TIMESTAMPS_MAX = 4;

/**
 * Transparency-log entries one bundle may carry: cosign writes one. Every entry is verified
 * (a SET signature, or an inclusion proof and its checkpoint's signatures) before sigstore-js
 * looks for duplicates, so copies of one genuine entry would each cost a check. sigstore-go
 * refuses more than 32; sigil keeps the bound of RFC3161_TIMESTAMPS_MAX.
 */
export const TLOG_ENTRIES_MAX = 4;

/**
 * Signature lines one checkpoint (a Rekor v2 inclusion proof's signed note) may carry: the log's,
 * and witnesses' cosignatures. sigstore-js tries each line that names a trusted log until one
 * verifies, so a note of thousands of lines costs thousands of signature checks (seconds of CPU
 * in a 1 MiB bundle). Go's note parser, which cosign uses, refuses more than 100.
 */
export const CHECKPOINT_SIGNATURES_MAX = 100;

/**
 * Certificate identities matched against a keyless authority's patterns. The certificate is
 * whoever pushed it until its chain verifies, which comes after the match: an identity of 45 000
 * characters (what fits in ANNOTATION_MAX_BYTES) under a plausible pattern with three `.+` takes
 * a JavaScript RegExp minutes of backtracking on the event loop. Fulcio writes one SAN, and its
 * longest (a GitHub workflow URI with its ref) stays within a few hundred characters.
 */
export const IDENTITY_MAX_CHARS = 1024;
export const IDENTITY_MAX_SANS = 4;

/**
 * One annotation value (certificate, chain, Rekor bundle): a chain of
 * CERT_CHAIN_MAX_LENGTH RSA-4096 certificates in PEM is ~25 KiB.
 */
export const ANNOTATION_MAX_BYTES = 64 * 1024;

/**
 * An attestation's in-toto statement: what a policy's conditions are evaluated over, parsed whole.
 * A SLSA provenance is a few KiB; an SBOM predicate can be large, and one that does not fit is
 * refused (discovery reads at most MAX_SIGNATURE_BLOB_BYTES, 1 MiB, of one envelope anyway).
 */
export const STATEMENT_MAX_BYTES = 1024 * 1024;

/**
 * Time the attestation conditions of one verification may take together, in milliseconds.
 * @bufbuild/cel interprets at some microseconds per step: a condition over a provenance takes
 * well under a millisecond, one that searches the 5 000 packages of a 1 MiB SBOM 50-100 ms warm
 * and up to 300 ms in a fresh process. It has no cost limit of its own, and CEL's macros nest
 * (`a.all(x, a.all(y, …))` over a list of 100 000 elements never ends in practice), so
 * evaluation runs under node:vm's timeout, which interrupts it. Past the budget a condition is
 * not met: the image is denied, never let through unjudged.
 */
export const CONDITION_BUDGET_MS = 1000;
