import type { Digest } from '../oci/digest.js';
import { repeatedKey, tryParseJson } from '../oci/json.js';
import { isObject, manifestObject, tryDescriptor, type Descriptor } from '../oci/manifest.js';
import { MT } from '../oci/media-types.js';
import type { Registry } from '../oci/registry.js';
import { DSSE_ENVELOPE } from './artifact.js';
import { readSignatureBlob } from './read-blob.js';
import { MAX_DISCOVERY_BYTES, MAX_SIGNATURE_BLOB_BYTES } from './limits.js';

/**
 * A signature artifact's config is cosign's go-containerregistry config (a few hundred bytes per
 * layer) or OCI's empty `{}`: 64 KiB is room for MAX_SIGNATURE_LAYERS layers and no more.
 */
export const MAX_ARTIFACT_CONFIG_BYTES = 64 * 1024;

/** One blob of a signature artifact, read and judged on its bytes. */
export interface CheckedBlob {
  readonly digest: Digest;
  readonly mediaType: string;
  readonly bytes: Buffer;
}

export type ArtifactContent = { readonly ok: true; readonly blobs: readonly CheckedBlob[] } | { readonly ok: false; readonly reason: string };

// The top-level keys each kind of signature data may have (cosign's simple signing payload,
// DSSE's envelope, Sigstore's bundle): anything else is not that kind of document.
const SIMPLE_SIGNING_KEYS: ReadonlySet<string> = new Set(['critical', 'optional']);
const DSSE_KEYS: ReadonlySet<string> = new Set(['payloadType', 'payload', 'signatures']);
const BUNDLE_KEYS: ReadonlySet<string> = new Set(['mediaType', 'verificationMaterial', 'messageSignature', 'dsseEnvelope']);
/** go-containerregistry's ConfigFile keys that cosign writes (all empty but rootfs/history). */
const COSIGN_CONFIG_KEYS: ReadonlySet<string> = new Set(['architecture', 'created', 'history', 'os', 'rootfs', 'config', 'os.version', 'variant']);
const BUNDLE_MEDIA_TYPE = /^application\/vnd\.dev\.sigstore\.bundle(\.v0\.[0-9]+)?\+json(;version=[0-9.]+)?$/;

function onlyKeys(v: Record<string, unknown>, allowed: ReadonlySet<string>): boolean {
  return Object.keys(v).every((k) => allowed.has(k));
}

/**
 * Does the first 512-byte block carry a valid tar header checksum, as the clients' readers
 * judge it? A JSON document can be crafted to be both; no signature payload, envelope or bundle
 * ever is, so such bytes are not signature data whatever else they parse as. Go's archive/tar
 * (containers/image, containerd) and GNU tar accept the sum of the bytes taken as signed (old
 * Sun tar's) as well as unsigned, and read the field as octal once spaces and NULs are trimmed
 * from both ends and it is cut at its first NUL (an empty field is 0).
 */
export function hasTarHeader(bytes: Buffer): boolean {
  if (bytes.length < 512) return false;
  const field = bytes.subarray(148, 156).toString('latin1').replace(/^[\0 ]+|[\0 ]+$/g, '').split('\0')[0];
  if (!/^[0-7]*$/.test(field)) return false;
  const stored = field === '' ? 0 : parseInt(field, 8);
  let unsigned = 0;
  let signed = 0;
  for (let i = 0; i < 512; i++) {
    const b = i >= 148 && i < 156 ? 0x20 : bytes[i];
    unsigned += b;
    signed += b >= 0x80 ? b - 0x100 : b;
  }
  return stored === unsigned || stored === signed;
}

/**
 * Why these bytes are not the signature data their media type names, or undefined when they
 * are: a JSON object of that kind (not a tar, not compressed — such bytes cannot be JSON), so
 * that nothing a runtime could unpack passes as one.
 */
export function signatureLayerProblem(mediaType: string, bytes: Buffer): string | undefined {
  if (bytes.length > MAX_SIGNATURE_BLOB_BYTES) return `${bytes.length} bytes, more than signature data may have (${MAX_SIGNATURE_BLOB_BYTES})`;
  if (hasTarHeader(bytes)) return 'its bytes carry a tar header';
  const doc = tryParseJson(bytes);
  if (!isObject(doc)) return 'its bytes are not a JSON object';
  switch (mediaType) {
    case MT.COSIGN_SIMPLESIGNING: {
      const critical = doc.critical;
      if (!onlyKeys(doc, SIMPLE_SIGNING_KEYS) || !isObject(critical)) return 'not a simple signing payload (no "critical" object)';
      const image = critical.image;
      if (!isObject(image) || typeof image['docker-manifest-digest'] !== 'string' || typeof critical.type !== 'string') {
        return 'not a simple signing payload (no critical.image.docker-manifest-digest or critical.type)';
      }
      return undefined;
    }
    case DSSE_ENVELOPE:
      if (!onlyKeys(doc, DSSE_KEYS) || typeof doc.payloadType !== 'string' || typeof doc.payload !== 'string' || !Array.isArray(doc.signatures)) {
        return 'not a DSSE envelope (payloadType, payload, signatures)';
      }
      return undefined;
    case MT.SIGSTORE_BUNDLE_V03:
      if (!onlyKeys(doc, BUNDLE_KEYS) || typeof doc.mediaType !== 'string' || !BUNDLE_MEDIA_TYPE.test(doc.mediaType)) {
        return 'not a Sigstore bundle (no bundle mediaType)';
      }
      return undefined;
    default:
      return `media type ${mediaType} is not signature data`;
  }
}

/**
 * Why a signature artifact's config is not one (cosign's empty go-containerregistry config, or
 * OCI's empty `{}`), or undefined: it must configure nothing to run.
 */
export function signatureConfigProblem(mediaType: string, bytes: Buffer): string | undefined {
  if (bytes.length > MAX_ARTIFACT_CONFIG_BYTES) return `config of ${bytes.length} bytes, more than a signature artifact's may have (${MAX_ARTIFACT_CONFIG_BYTES})`;
  const doc = tryParseJson(bytes);
  if (!isObject(doc)) return 'config is not a JSON object';
  const repeated = repeatedKey(bytes);
  if (repeated !== undefined) return `config repeats the key "${repeated}" (Go clients decode every occurrence)`;
  if (mediaType === MT.OCI_EMPTY) return Object.keys(doc).length === 0 ? undefined : 'an empty config (application/vnd.oci.empty.v1+json) that is not {}';
  if (!onlyKeys(doc, COSIGN_CONFIG_KEYS)) return 'config has keys a signature artifact does not write';
  const run = doc.config;
  if (run !== undefined && run !== null && !(isObject(run) && Object.keys(run).length === 0)) return 'config configures a process to run';
  return undefined;
}

/**
 * Reads every blob of a manifest that is shaped like a signature artifact (artifact.ts) and
 * judges it on its bytes: each layer must be the signature data its media type names, the config
 * must configure nothing. The bytes are digest-checked as they are read, whatever the upstream's
 * `verifyBlobDigests`, so the blobs served afterwards under these digests are these bytes.
 * Upstream failures propagate (the caller treats the manifest as an image then: fail closed).
 * When `signal` aborts (the decision's deadline), the check rejects with its reason at once and
 * the blob being read is destroyed: a blob that drips holds nothing past it.
 */
export async function checkSignatureArtifact(
  registry: Registry,
  repository: string,
  manifest: Buffer,
  opts: { signal?: AbortSignal } = {},
): Promise<ArtifactContent> {
  // artifact.ts has already checked the manifest's shape.
  const doc = manifestObject(manifest);
  if (doc === undefined || !Array.isArray(doc.layers)) return { ok: false, reason: 'not an image manifest with layers' };
  const config = tryDescriptor(doc.config);
  const layers = doc.layers.map(tryDescriptor);
  if (!config || layers.some((l) => l === undefined)) return { ok: false, reason: 'a descriptor without a media type, digest or size' };
  const all = [config, ...(layers as Descriptor[])];
  const total = all.reduce((n, d) => n + d.size, 0);
  if (total > MAX_DISCOVERY_BYTES) return { ok: false, reason: `its blobs add up to ${total} bytes, more than signature data may (${MAX_DISCOVERY_BYTES})` };
  const blobs: CheckedBlob[] = [];
  for (const [i, d] of all.entries()) {
    const what = i === 0 ? 'config' : `layer ${i - 1}`;
    const cap = i === 0 ? MAX_ARTIFACT_CONFIG_BYTES : MAX_SIGNATURE_BLOB_BYTES;
    if (d.size > cap) return { ok: false, reason: `${what}: ${d.size} bytes, more than ${cap}` };
    const read = await readSignatureBlob(registry, repository, d.digest, d.size, what, opts.signal);
    const bytes = 'bytes' in read && read.bytes.length === d.size ? read.bytes : undefined;
    if (bytes === undefined) return { ok: false, reason: `${what}: not the bytes of ${d.digest} (${d.size} bytes)` };
    const problem = i === 0 ? signatureConfigProblem(d.mediaType, bytes) : signatureLayerProblem(d.mediaType, bytes);
    if (problem !== undefined) return { ok: false, reason: `${what}: ${problem}` };
    blobs.push({ digest: d.digest, mediaType: d.mediaType, bytes });
  }
  return { ok: true, blobs };
}
