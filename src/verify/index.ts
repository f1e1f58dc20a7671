/**
 * sigil's signature verification core: trust material, key and keyless
 * verification through @sigstore/verify, and the binding of signed payloads to
 * the served digest. A pure library: no HTTP, no registry access.
 */
export { verifyCandidates, type VerifyOptions } from './candidates.js';
export { verifyImage, type ImageVerifyOptions } from './image.js';
export { defaultPublicGoodPath, loadTrust, mergeTrust, parseTrustedRoot, PUBLIC_GOOD, readTrustedRoots, type CaProfile, type LoadedRoot, type LoadTrustOptions, type TrustBundle } from './trust.js';
export { keyIdOf, parsePublicKey, verifyWithKey, type PublicKey } from './key-signature.js';
export { certificateIdentity, matchesWhole, matchIdentity, type CertificateIdentity, type IdentityMatch } from './identity.js';
export { COSIGN_SIGNATURE_TYPE, IN_TOTO_PAYLOAD_TYPE, legacyBindingProblem, statementBindingProblem } from './binding.js';
export { CERTIFICATE_ANNOTATION, CHAIN_ANNOTATION, REKOR_BUNDLE_ANNOTATION, SIGNATURE_ANNOTATION } from './legacy.js';
export { RFC3161_TIMESTAMP_ANNOTATION } from './rfc3161.js';
export { ANNOTATION_MAX_BYTES, BUNDLE_MAX_BYTES, CERT_CHAIN_MAX_LENGTH, LEGACY_PAYLOAD_MAX_BYTES } from './limits.js';
export { signerHeader, type AttestationCheck, type CandidateSignature, type Outcome, type SignatureCheck, type Signer, type Subject } from './types.js';
