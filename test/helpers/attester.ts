import { toLegacyBundleAnnotation } from './private-sigstore.js';
import type { PrivateSigstore, RekorEntry } from './private-sigstore.js';
import { sha256Hex } from './digest.js';
import { ANNOTATION, MEDIA, bundleFor, cosignTagManifest, pemOf, preAuthEncoding, signWith, type Signer } from './signer.js';

// The project's own cosign-format attester, for tests of sigil's attestation policies: in-toto
// statements in DSSE envelopes, as `cosign attest` writes them — a layer of the legacy
// `sha256-<hex>.att` manifest (with the certificate, chain and the Rekor SET of an intoto 0.0.2
// entry in its annotations) — and as cosign v3 attaches them, a Sigstore bundle referrer. Like
// signer.ts it shares no code with src/.

export const PREDICATE = Object.freeze({
  SLSA_V1: 'https://slsa.dev/provenance/v1',
  SPDX: 'https://spdx.dev/Document',
  CYCLONEDX: 'https://cyclonedx.org/bom',
});
export const DSSE_ENVELOPE = 'application/vnd.dsse.envelope.v1+json';
/** The layer annotation cosign writes with the statement's predicate type. */
export const PREDICATE_TYPE_ANNOTATION = 'predicateType';
/** `cosign attest` writes in-toto v0.1 statements; cosign v3 bundles v1. */
const STATEMENT_V01 = 'https://in-toto.io/Statement/v0.1';
const STATEMENT_V1 = 'https://in-toto.io/Statement/v1';

export interface StatementOptions {
  /** Statement version: 'v0.1' (cosign attest, the default) or 'v1'. */
  version?: 'v0.1' | 'v1';
  /** Further subjects besides the digest (or instead of it, with `digest` undefined). */
  subjects?: Array<{ name: string; digest: Record<string, string> }>;
}

/** An in-toto statement about `digest` (undefined: only `opts.subjects`). */
export function statement(digest: string | undefined, predicateType: string, predicate: unknown, opts: StatementOptions = {}): Buffer {
  const subject = [...(digest === undefined ? [] : [{ name: 'registry.sigil.test/image', digest: { [digest.split(':')[0]]: digest.split(':')[1] } }]), ...(opts.subjects ?? [])];
  return Buffer.from(JSON.stringify({ _type: opts.version === 'v1' ? STATEMENT_V1 : STATEMENT_V01, subject, predicateType, predicate }), 'utf8');
}

/** A SLSA provenance v1 predicate as GitHub's slsa-github-generator writes one (the fields conditions look at). */
export function slsaProvenance(opts: { builderId: string; repository: string; ref?: string }): Record<string, unknown> {
  return {
    buildDefinition: {
      buildType: 'https://actions.github.io/buildtypes/workflow/v1',
      externalParameters: { workflow: { ref: opts.ref ?? 'refs/heads/main', repository: opts.repository, path: '.github/workflows/release.yml' } },
      internalParameters: { github: { event_name: 'push' } },
      resolvedDependencies: [{ uri: `git+${opts.repository}@${opts.ref ?? 'refs/heads/main'}`, digest: { gitCommit: 'a'.repeat(40) } }],
    },
    runDetails: { builder: { id: opts.builderId }, metadata: { invocationId: `${opts.repository}/actions/runs/1/attempts/1` } },
  };
}

export interface AttestationLayer {
  /** The layer blob: the DSSE envelope JSON. */
  envelope: Buffer;
  annotations: Record<string, string>;
  rekorEntry?: RekorEntry;
}

export interface AttestOptions {
  /** Log an intoto 0.0.2 entry and add its SET as the `dev.sigstore.cosign/bundle` annotation. */
  rekor?: PrivateSigstore;
  /** Unix seconds for the Rekor entry (default now). */
  integratedTime?: number;
  /** The DSSE payload type signed (default in-toto's). */
  payloadType?: string;
  /** Break it after signing and logging: 'payload' swaps in another statement, 'signature' flips a bit. */
  tamper?: { payload: Buffer } | 'signature';
}

function flipLastBit(b: Buffer): Buffer {
  const out = Buffer.from(b);
  out[out.length - 1] ^= 0x01;
  return out;
}

/** An intoto v0.0.2 entry body, as Rekor stores cosign attest's upload (the payload itself left out). */
function intotoBody(signer: Signer, envelope: Buffer, payloadType: string, payload: Buffer, sig: Buffer): Record<string, unknown> {
  return {
    apiVersion: '0.0.2',
    kind: 'intoto',
    spec: {
      content: {
        envelope: {
          payloadType,
          signatures: [{ publicKey: Buffer.from(pemOf(signer), 'utf8').toString('base64'), sig: Buffer.from(sig.toString('base64'), 'utf8').toString('base64') }],
        },
        hash: { algorithm: 'sha256', value: sha256Hex(envelope) },
        payloadHash: { algorithm: 'sha256', value: sha256Hex(payload) },
      },
    },
  };
}

/** One layer of a legacy `.att` manifest: `statement` signed in a DSSE envelope, with cosign's annotations. */
export function attestationLayer(signer: Signer, stmt: Buffer, opts: AttestOptions = {}): AttestationLayer {
  const payloadType = opts.payloadType ?? MEDIA.IN_TOTO;
  let sig = signWith(signer, preAuthEncoding(payloadType, stmt));
  const envelopeOf = (payload: Buffer, s: Buffer): Buffer =>
    Buffer.from(JSON.stringify({ payloadType, payload: payload.toString('base64'), signatures: [{ keyid: '', sig: s.toString('base64') }] }), 'utf8');
  const annotations: Record<string, string> = { [ANNOTATION.SIGNATURE]: '' };
  try {
    annotations[PREDICATE_TYPE_ANNOTATION] = (JSON.parse(stmt.toString('utf8')) as { predicateType?: string }).predicateType ?? '';
  } catch {
    annotations[PREDICATE_TYPE_ANNOTATION] = '';
  }
  if ('certPem' in signer) {
    annotations[ANNOTATION.CERTIFICATE] = signer.certPem;
    annotations[ANNOTATION.CHAIN] = signer.chainPem;
  }
  let rekorEntry: RekorEntry | undefined;
  if (opts.rekor) {
    rekorEntry = opts.rekor.rekorEntry(intotoBody(signer, envelopeOf(stmt, sig), payloadType, stmt, sig), { integratedTime: opts.integratedTime });
    annotations[ANNOTATION.BUNDLE] = toLegacyBundleAnnotation(rekorEntry);
  }
  let payload = stmt;
  if (opts.tamper === 'signature') sig = flipLastBit(sig);
  else if (opts.tamper !== undefined) payload = opts.tamper.payload;
  return { envelope: envelopeOf(payload, sig), annotations, ...(rekorEntry ? { rekorEntry } : {}) };
}

/** The `.att` manifest and its blobs, ready to push (blobs[0] is the config, then one envelope per layer). */
export function attManifest(layers: AttestationLayer[]): { manifest: Buffer; mediaType: string; blobs: Buffer[] } {
  return cosignTagManifest(layers.map((l) => ({ blob: l.envelope, mediaType: DSSE_ENVELOPE, annotations: l.annotations })));
}

/** cosign's legacy tag for the attestations of `digest`: `sha256-<hex>.att`. */
export function attTag(digest: string): string {
  return `${digest.replace(':', '-')}.att`;
}

/** A v0.3 Sigstore bundle holding `statement` signed in a DSSE envelope, as cosign v3 attests (attach it with publish.ts pushBundleReferrer). */
export function attestationBundle(signer: Signer, digest: string, stmt: Buffer, opts: { rekor?: PrivateSigstore; tamper?: 'signature' } = {}): Buffer {
  return bundleFor(signer, digest, { statement: stmt, rekor: opts.rekor, tamper: opts.tamper });
}
