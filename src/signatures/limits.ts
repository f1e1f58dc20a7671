/**
 * Bounds on signature data, so that hostile signature artifacts cannot exhaust memory
 * or time (cosign advisories GHSA-vfp6-jrw2-99g9 — unbounded layers in a .sig manifest —
 * and GHSA-88jx-383q-w4qc — unbounded attestation sizes).
 */

/** Signature layers read from one `.sig` manifest; cosign writes one per `cosign sign`. */
export const MAX_SIGNATURE_LAYERS = 32;

/** Sigstore-bundle referrers considered for one digest. */
export const MAX_BUNDLE_REFERRERS = 32;

/** Candidates verified for one decision, all sources together. */
export const MAX_CANDIDATES = 48;

/**
 * A simple-signing payload is ~300 bytes; a Sigstore bundle with a certificate chain
 * and inclusion proof ~10 KiB. 1 MiB leaves room for generous annotations, no more.
 */
export const MAX_SIGNATURE_BLOB_BYTES = 1024 * 1024;

/** Certificate, chain and Rekor bundle annotations on a `.sig` layer, together. */
export const MAX_LAYER_ANNOTATION_BYTES = 256 * 1024;

/** Signature blob bytes read for one decision, all candidates together (bounds memory per decision). */
export const MAX_DISCOVERY_BYTES = 8 * 1024 * 1024;
