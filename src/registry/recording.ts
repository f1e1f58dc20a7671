import { PassThrough } from 'node:stream';
import type { Digest } from '../oci/digest.js';
import { tryIndexEntries } from '../oci/manifest.js';
import type { BlobRequest, BlobResponse, FetchedManifest, ReferrersAnswer, Registry } from '../oci/registry.js';
import { MAX_SIGNATURE_BLOB_BYTES } from '../signatures/limits.js';
import { Layer } from './layer.js';

/** What a signature lookup read, to be stored with the image it signs once the image may be stored. */
export interface Recording {
  readonly upstream: string;
  readonly manifests: Array<{ repository: string; reference: string; manifest: FetchedManifest }>;
  readonly blobs: Array<{ repository: string; digest: Digest; bytes: Buffer }>;
  readonly referrers: Array<{ repository: string; digest: Digest; manifests: unknown[] }>;
}

/**
 * Recording of signature data: a layer put in front of a registry for one verification (a scope,
 * not part of the serving stack), remembering the manifests, whole blobs (up to
 * MAX_SIGNATURE_BLOB_BYTES) and referrers lists signature discovery read through it, so that the
 * keeper can store them with the image they sign (keep.ts keepSignatures): a restarted or offline
 * sigil re-verifies from the store.
 */
export class Recorder extends Layer {
  readonly recording: Recording;

  constructor(below: Registry) {
    super(below);
    this.recording = { upstream: below.name, manifests: [], blobs: [], referrers: [] };
  }

  override async fetchManifest(repository: string, reference: string, opts?: { accept?: string }): Promise<FetchedManifest> {
    const manifest = await this.below.fetchManifest(repository, reference, opts);
    this.recording.manifests.push({ repository, reference, manifest });
    return manifest;
  }

  override async openBlob(repository: string, digest: Digest, req: BlobRequest): Promise<BlobResponse> {
    const res = await this.below.openBlob(repository, digest, req);
    if (res.body === null || req.range !== undefined) return res;
    const chunks: Buffer[] = [];
    let size = 0;
    const tee = new PassThrough();
    tee.on('data', (c: Buffer) => {
      size += c.length;
      if (size <= MAX_SIGNATURE_BLOB_BYTES) chunks.push(c);
    });
    tee.on('end', () => {
      if (size <= MAX_SIGNATURE_BLOB_BYTES) this.recording.blobs.push({ repository, digest, bytes: Buffer.concat(chunks) });
    });
    const body = res.body;
    body.on('error', (e) => tee.destroy(e));
    // A reader that stops (discovery's deadline, an over-long blob) closes the upstream body too.
    tee.once('close', () => body.destroy());
    body.pipe(tee);
    return { ...res, body: tee };
  }

  override async referrers(repository: string, digest: Digest, artifactType?: string): Promise<ReferrersAnswer> {
    const a = await this.below.referrers(repository, digest, artifactType);
    if (a.kind === 'api') {
      // not JSON (or too deep): not recorded; discovery reports the bad answer itself
      const list = tryIndexEntries(a.body);
      if (Array.isArray(list)) this.recording.referrers.push({ repository, digest, manifests: list });
    }
    return a;
  }
}

/** `registry` recorded for one verification: read through `registry`, then keep `recording`. */
export function recording(registry: Registry): { registry: Registry; recording: Recording } {
  const r = new Recorder(registry);
  return { registry: r, recording: r.recording };
}
