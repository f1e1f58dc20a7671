import { isSigilError } from '../errors.js';
import { attestationTag, isDigest, signatureTag, type Digest } from '../oci/digest.js';
import { MT } from '../oci/media-types.js';
import type { FetchedManifest, Registry } from '../oci/registry.js';
import type { CandidateSignature } from '../verify/types.js';
import {
  MAX_BUNDLE_REFERRERS,
  MAX_CANDIDATES,
  MAX_DISCOVERY_BYTES,
  MAX_LAYER_ANNOTATION_BYTES,
  MAX_SIGNATURE_BLOB_BYTES,
  MAX_SIGNATURE_LAYERS,
} from './limits.js';
import { listReferrers } from './referrers.js';
import { isObject, isSize, manifestObject, stringRecord } from '../oci/manifest.js';
import { abortable } from '../upstream/abortable.js';
import { readSignatureBlob } from './read-blob.js';
import { DSSE_ENVELOPE } from './artifact.js';

/** Where to look: the image's repository, or a policy's signatureRepository (same or another upstream). */
export interface SignatureLocation {
  readonly registry: Registry;
  readonly repository: string;
}

export interface Discovery {
  /** Signatures: legacy `.sig` layers and bundles (a bundle may also be an attestation). */
  readonly candidates: readonly CandidateSignature[];
  /** cosign's `.att` layers (DSSE envelopes), looked for only when asked (`attestations`). */
  readonly attestations: readonly CandidateSignature[];
  /** Signature data that was found but not usable, each with why ("layer 3: media type …"). */
  readonly rejected: readonly { readonly source: string; readonly reason: string }[];
  /** Lookups that failed (upstream trouble): with nothing verified, the outcome is indeterminate. */
  readonly failures: readonly string[];
}

interface Descriptor {
  mediaType?: unknown;
  digest?: unknown;
  size?: unknown;
  annotations?: unknown;
  artifactType?: unknown;
}

const SIG_ACCEPT = [MT.OCI_MANIFEST, MT.DOCKER_MANIFEST].join(', ');

/**
 * Finds the signatures of manifest `digest`: Sigstore bundles among its OCI 1.1 referrers
 * (or the referrers fallback tag), then cosign's legacy `sha256-<hex>.sig` tag (asked for at
 * the same time as the referrers), and with `attestations` (a policy that requires some) cosign's
 * `sha256-<hex>.att` tag too, asked for at the same time. Only what
 * names the digest is returned; verification decides whether it counts. Upstream failures
 * (other than "no such tag") propagate: the caller turns them into an indeterminate outcome.
 * When `signal` aborts (the decision's deadline), discovery rejects with its reason at once:
 * the blob being read is destroyed and answers still on their way are closed when they come.
 */
export async function discoverSignatures(
  where: SignatureLocation,
  digest: Digest,
  opts: { signal?: AbortSignal; attestations?: boolean } = {},
): Promise<Discovery> {
  opts.signal?.throwIfAborted();
  const found: Found = { candidates: [], attestations: [], rejected: [], bytes: 0, signal: opts.signal };
  const failures: string[] = [];
  // The `.sig` tag is asked for at once, beside the referrers: the two first lookups wait for
  // the upstream side by side, not one after the other (with a content store, a failing
  // upstream then costs a decision one STALE_DEADLINE_MS cut-off, not two). What they lead to
  // is read in order: bundles first, then the legacy layers.
  const lookup = (tag: string): Promise<FetchedManifest> => {
    const answer = where.registry.fetchManifest(where.repository, tag, { accept: SIG_ACCEPT });
    answer.catch(() => undefined); // its failure is discoverTagged's, or nobody's past the deadline
    return answer;
  };
  const sigTag = lookup(signatureTag(digest));
  const attTag = opts.attestations === true ? lookup(attestationTag(digest)) : undefined;
  const steps: Array<readonly [string, () => Promise<void>]> = [
    ['referrers', () => discoverBundles(where, digest, found)],
    ['.sig tag', () => discoverTagged(where, found, signatureTag(digest), sigTag, SIGNATURES)],
  ];
  if (attTag !== undefined) steps.push(['.att tag', () => discoverTagged(where, found, attestationTag(digest), attTag, ATTESTATIONS)]);
  // Each source is looked at even when the other failed: a signature found in one can still
  // verify. A failed lookup is reported, so that "nothing verified" becomes "could not verify".
  for (const [what, step] of steps) {
    try {
      await step();
    } catch (e) {
      // Past the deadline nothing more is looked at: the whole decision is indeterminate.
      if (found.signal?.aborted === true) throw found.signal.reason;
      if (!isSigilError(e)) throw e;
      failures.push(`${what} lookup failed: ${e.code}: ${e.message}`);
    }
  }
  return { candidates: found.candidates, attestations: found.attestations, rejected: found.rejected, failures };
}

/** What one decision has collected so far, and how many signature bytes it has read. */
interface Found {
  readonly candidates: CandidateSignature[];
  readonly attestations: CandidateSignature[];
  readonly rejected: Array<{ source: string; reason: string }>;
  bytes: number;
  /** The decision's deadline: every upstream wait of discovery ends when it aborts. */
  readonly signal: AbortSignal | undefined;
}

/** Whether another candidate may be read; records why not, once. */
function room(found: Found, source: string): boolean {
  if (found.candidates.length + found.attestations.length < MAX_CANDIDATES) return true;
  if (!found.rejected.some((r) => r.source === 'all')) {
    found.rejected.push({ source: 'all', reason: `more than ${MAX_CANDIDATES} signatures; only the first ${MAX_CANDIDATES} considered (next: ${source})` });
  }
  return false;
}

async function discoverBundles(where: SignatureLocation, digest: Digest, found: Found): Promise<void> {
  const { rejected } = found;
  const list = await abortable(listReferrers(where.registry, where.repository, digest, MT.SIGSTORE_BUNDLE_V03), found.signal);
  const refs = list.manifests.slice(0, MAX_BUNDLE_REFERRERS);
  if (list.manifests.length > refs.length) {
    rejected.push({ source: 'referrers', reason: `${list.manifests.length} bundle referrers, only ${MAX_BUNDLE_REFERRERS} considered` });
  }
  for (const ref of refs) {
    const source = `referrer ${String(ref.digest)}`;
    if (!room(found, source)) return;
    if (typeof ref.digest !== 'string' || !isDigest(ref.digest)) {
      rejected.push({ source, reason: 'descriptor without a valid digest' });
      continue;
    }
    const m = await abortable(where.registry.fetchManifest(where.repository, ref.digest, { accept: MT.OCI_MANIFEST }), found.signal);
    const doc = manifestObject(m.bytes);
    const subject = isObject(doc?.subject) ? doc.subject.digest : undefined;
    // The referrer must itself point at this digest: an index entry alone proves nothing.
    if (doc === undefined || subject !== digest) {
      rejected.push({ source, reason: `its subject is ${String(subject)}, not ${digest}` });
      continue;
    }
    const layers = Array.isArray(doc.layers) ? (doc.layers as Descriptor[]) : [];
    const layer = layers.find((l) => l?.mediaType === MT.SIGSTORE_BUNDLE_V03);
    if (!layer) {
      rejected.push({ source, reason: `no layer of media type ${MT.SIGSTORE_BUNDLE_V03}` });
      continue;
    }
    const bundle = await readSmallBlob(where, layer, source, found);
    if (bundle) found.candidates.push({ format: 'bundle', source, bundle });
  }
}

/** The layers of a cosign tag: their media type, and the candidate each one becomes. */
interface TagLayout {
  readonly mediaType: string;
  readonly into: (found: Found) => CandidateSignature[];
  readonly candidate: (source: string, blob: Buffer, annotations: Record<string, string>) => CandidateSignature;
}

/** `.sig`: simple-signing payloads, the signature in the annotations. */
const SIGNATURES: TagLayout = {
  mediaType: MT.COSIGN_SIMPLESIGNING,
  into: (found) => found.candidates,
  candidate: (source, payload, annotations) => ({ format: 'legacy', source, payload, annotations }),
};

/** `.att`: DSSE envelopes of in-toto statements, the signature in the envelope. */
const ATTESTATIONS: TagLayout = {
  mediaType: DSSE_ENVELOPE,
  into: (found) => found.attestations,
  candidate: (source, envelope, annotations) => ({ format: 'attestation', source, envelope, annotations }),
};

/** `manifest`: the lookup of `tag` (`.sig` or `.att`), started by discoverSignatures. */
async function discoverTagged(where: SignatureLocation, found: Found, tag: string, manifest: Promise<FetchedManifest>, layout: TagLayout): Promise<void> {
  const { rejected } = found;
  let bytes: Buffer;
  try {
    bytes = (await abortable(manifest, found.signal)).bytes;
  } catch (e) {
    if (isSigilError(e) && (e.code === 'MANIFEST_UNKNOWN' || e.code === 'NAME_UNKNOWN')) return;
    throw e;
  }
  const doc = manifestObject(bytes);
  if (doc === undefined || !Array.isArray(doc.layers)) {
    rejected.push({ source: tag, reason: 'not an image manifest with layers' });
    return;
  }
  const layers = doc.layers as Descriptor[];
  if (layers.length > MAX_SIGNATURE_LAYERS) {
    rejected.push({ source: tag, reason: `${layers.length} layers, only the first ${MAX_SIGNATURE_LAYERS} considered` });
  }
  for (const [i, layer] of layers.slice(0, MAX_SIGNATURE_LAYERS).entries()) {
    const source = `${tag} layer ${i}`;
    if (!room(found, source)) return;
    if (layer?.mediaType !== layout.mediaType) {
      rejected.push({ source, reason: `media type ${String(layer?.mediaType)} is not ${layout.mediaType}` });
      continue;
    }
    const annotations = stringRecord(layer.annotations);
    if (!annotations) {
      rejected.push({ source, reason: 'annotations missing or not strings' });
      continue;
    }
    const annotationBytes = Object.entries(annotations).reduce((n, [k, v]) => n + k.length + v.length, 0);
    if (annotationBytes > MAX_LAYER_ANNOTATION_BYTES) {
      rejected.push({ source, reason: `annotations of ${annotationBytes} bytes exceed ${MAX_LAYER_ANNOTATION_BYTES}` });
      continue;
    }
    const blob = await readSmallBlob(where, layer, source, found);
    if (blob) layout.into(found).push(layout.candidate(source, blob, annotations));
  }
}

/** Reads a signature blob whose descriptor promises at most MAX_SIGNATURE_BLOB_BYTES. */
async function readSmallBlob(where: SignatureLocation, d: Descriptor, source: string, found: Found): Promise<Buffer | undefined> {
  const { rejected } = found;
  if (typeof d.digest !== 'string' || !isDigest(d.digest)) {
    rejected.push({ source, reason: 'layer without a valid digest' });
    return undefined;
  }
  if (!isSize(d.size) || d.size > MAX_SIGNATURE_BLOB_BYTES) {
    rejected.push({ source, reason: `layer size ${String(d.size)} is not within 0..${MAX_SIGNATURE_BLOB_BYTES}` });
    return undefined;
  }
  if (found.bytes + d.size > MAX_DISCOVERY_BYTES) {
    rejected.push({ source, reason: `not read: the signatures of this manifest exceed ${MAX_DISCOVERY_BYTES} bytes in all` });
    return undefined;
  }
  found.bytes += d.size;
  const read = await readSignatureBlob(where.registry, where.repository, d.digest, d.size, source, found.signal);
  if ('problem' in read) {
    // Bytes that are not the descriptor's are this signature's failure, not the upstream's outage.
    rejected.push({ source, reason: read.problem });
    return undefined;
  }
  return read.bytes;
}
