import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { getManifest, pushBlob, pushManifest, type PushTarget } from './push.js';
import { bundleReferrer, sigManifest, sigTag, type LegacySignatureLayer } from './signer.js';
import { attManifest, attTag, type AttestationLayer } from './attester.js';

const OCI_INDEX = 'application/vnd.oci.image.index.v1+json';
const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json';

/** Pushes a cosign `.sig` artifact (config, payload blobs, manifest tagged sha256-<hex>.sig). */
export async function pushLegacySignature(t: PushTarget, repo: string, digest: string, layers: LegacySignatureLayer[]): Promise<string> {
  const sig = sigManifest(layers);
  for (const b of sig.blobs) await pushBlob(t, repo, b);
  return pushManifest(t, repo, sigTag(digest), sig.manifest, sig.mediaType);
}

/** Pushes a cosign `.att` artifact (config, envelope blobs, manifest tagged sha256-<hex>.att). */
export async function pushLegacyAttestation(t: PushTarget, repo: string, digest: string, layers: AttestationLayer[]): Promise<string> {
  const att = attManifest(layers);
  for (const b of att.blobs) await pushBlob(t, repo, b);
  return pushManifest(t, repo, attTag(digest), att.manifest, att.mediaType);
}

/**
 * Attaches a Sigstore bundle as an OCI 1.1 referrer the way cosign v3 does against a registry
 * without the referrers API: the referrer manifest by digest, plus the referrers fallback tag
 * `sha256-<hex>` (an index listing every referrer) updated.
 */
export async function pushBundleReferrer(
  t: PushTarget,
  repo: string,
  subject: { digest: string; size: number; mediaType: string },
  bundle: Buffer,
): Promise<string> {
  const ref = bundleReferrer(bundle, subject);
  for (const b of ref.blobs) await pushBlob(t, repo, b);
  const digest = await pushManifest(t, repo, digestTag(ref.manifest), ref.manifest, ref.mediaType);
  await addToFallbackIndex(t, repo, subject.digest, {
    mediaType: ref.mediaType,
    artifactType: ref.artifactType,
    digest,
    size: ref.manifest.length,
  });
  return digest;
}

/** Appends a descriptor to the referrers fallback index of `subject` (creating it). */
export async function addToFallbackIndex(t: PushTarget, repo: string, subject: string, d: Record<string, unknown>): Promise<void> {
  const tag = subject.replace(':', '-');
  const current = await getManifest(t, repo, tag, OCI_INDEX);
  const manifests: unknown[] = current.status === 200 ? (JSON.parse(current.body.toString()) as { manifests: unknown[] }).manifests : [];
  manifests.push(d);
  await pushManifest(t, repo, tag, Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: OCI_INDEX, manifests })), OCI_INDEX);
}

// A throwaway tag so the registry keeps the referrer manifest (pushing by digest works too, but
// some registries garbage-collect untagged manifests).
function digestTag(manifest: Buffer): string {
  return `ref-${manifest.length}-${Date.now()}-${Math.floor(Math.random() * 1e9)}`;
}

/** A real `signature-1` fixture file (containers/image): `\0sigstore-json\n` + JSON. */
export async function readFixtureSignature(dir: string): Promise<LegacySignatureLayer> {
  const raw = await readFile(join(dir, 'signature-1'));
  const prefix = Buffer.from('\0sigstore-json\n');
  if (!raw.subarray(0, prefix.length).equals(prefix)) throw new Error(`${dir}/signature-1: not a sigstore-json signature`);
  const doc = JSON.parse(raw.subarray(prefix.length).toString('utf8')) as { payload: string; annotations: Record<string, string> };
  return { payload: Buffer.from(doc.payload, 'base64'), annotations: doc.annotations };
}

export { OCI_MANIFEST };
