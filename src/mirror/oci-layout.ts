import { createHash } from 'node:crypto';
import { constants, createWriteStream } from 'node:fs';
import { mkdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { SigilError } from '../errors.js';
import { digestAlgorithm, isDigest, type Digest } from '../oci/digest.js';
import { MT } from '../oci/media-types.js';
import { isRepositoryName, isTag } from '../oci/reference.js';
import type { ContentStore } from '../store/content-store.js';
import type { CopyRecord, LayoutEntry } from './copy.js';
import { LAYOUT_INDEX_MAX_BYTES } from './limits.js';
import { tryParseJson } from '../oci/json.js';
import { indexEntries } from '../oci/manifest.js';

/**
 * OCI image layouts (image-spec `image-layout.md`) for air-gapped transfer: `oci-layout`,
 * `index.json`, `blobs/<alg>/<hex>`. Each manifest sigil lists in index.json carries the
 * annotation `org.opencontainers.image.ref.name` = `<upstream>/<repository>:<tag>` for a tag
 * (images, cosign `.sig` tags, referrers fallback tags) or `<upstream>/<repository>@<digest>`
 * for an untagged referrer (a Sigstore bundle). Both forms fit the annotation's grammar
 * (components joined by `/`, separators `-._:@+`), and skopeo 1.9 addresses a tagged one as
 * `oci:DIR:<upstream>/<repository>:<tag>` — it splits at the first `:` only, so an upstream
 * with a port (`registry.internal:5000/app:1.0`) works too. skopeo refuses a tag its grammar
 * lacks (a leading `_`, or `__` inside): such entries are still written, and imported by sigil.
 */
export const REF_NAME = 'org.opencontainers.image.ref.name';
export const LAYOUT_VERSION = '1.0.0';

// A registry host as config names it: lowercase labels, optional port (upstreams[].name).
const HOST_RE = /^[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*(:\d{1,5})?$/;
/** Layout files are opened without following a symlink: a layout is untrusted input. */
export const NOFOLLOW_READ = constants.O_RDONLY | constants.O_NOFOLLOW;

export type RefName =
  | { readonly upstream: string; readonly repository: string; readonly tag: string }
  | { readonly upstream: string; readonly repository: string; readonly digest: Digest };

export function refName(e: Pick<LayoutEntry, 'upstream' | 'repository' | 'tag' | 'digest'>): string {
  return e.tag !== undefined ? `${e.upstream}/${e.repository}:${e.tag}` : `${e.upstream}/${e.repository}@${e.digest}`;
}

/** The inverse of refName; undefined when the name is not one sigil writes. */
export function parseRefName(ref: string): RefName | undefined {
  let name: string;
  let tag: string | undefined;
  let digest: string | undefined;
  const at = ref.indexOf('@');
  if (at >= 0) {
    name = ref.slice(0, at);
    digest = ref.slice(at + 1);
    if (!isDigest(digest)) return undefined;
  } else {
    const colon = ref.lastIndexOf(':');
    if (colon <= ref.lastIndexOf('/')) return undefined;
    name = ref.slice(0, colon);
    tag = ref.slice(colon + 1);
    if (!isTag(tag)) return undefined;
  }
  const slash = name.indexOf('/');
  if (slash <= 0) return undefined;
  const upstream = name.slice(0, slash);
  const repository = name.slice(slash + 1);
  if (!HOST_RE.test(upstream) || !isRepositoryName(repository)) return undefined;
  return tag !== undefined ? { upstream, repository, tag } : { upstream, repository, digest: digest as Digest };
}

export function blobPath(dir: string, d: Digest): string {
  return join(dir, 'blobs', digestAlgorithm(d), d.slice(d.indexOf(':') + 1));
}

export interface IndexDescriptor {
  mediaType: string;
  digest: string;
  size: number;
  annotations?: Record<string, string>;
}

/** index.json's manifests list; null when there is no index.json. */
export async function readIndex(dir: string): Promise<IndexDescriptor[] | null> {
  let text: string;
  try {
    const st = await stat(join(dir, 'index.json'));
    if (st.size > LAYOUT_INDEX_MAX_BYTES) throw new SigilError({ code: 'MANIFEST_INVALID', message: `${dir}/index.json: ${st.size} bytes exceed ${LAYOUT_INDEX_MAX_BYTES}` });
    text = await readFile(join(dir, 'index.json'), 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw e;
  }
  let list: unknown[] | undefined;
  try {
    list = indexEntries(text, `${dir}/index.json`);
  } catch (cause) {
    throw new SigilError({ code: 'MANIFEST_INVALID', message: (cause as Error).message, cause });
  }
  if (list === undefined) throw new SigilError({ code: 'MANIFEST_INVALID', message: `${dir}/index.json: no manifests list` });
  return list as IndexDescriptor[];
}

/** Is there an `oci-layout` file (of version 1.x, else MANIFEST_INVALID)? */
export async function checkLayoutFile(dir: string): Promise<boolean> {
  let text: string;
  try {
    text = await readFile(join(dir, 'oci-layout'), 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw e;
  }
  const v = (tryParseJson(text) as { imageLayoutVersion?: unknown } | null | undefined)?.imageLayoutVersion;
  if (typeof v !== 'string' || !v.startsWith('1.')) {
    throw new SigilError({ code: 'MANIFEST_INVALID', message: `${dir}/oci-layout: imageLayoutVersion ${JSON.stringify(v)} is not 1.x` });
  }
  return true;
}

async function writeAtomic(path: string, text: string): Promise<void> {
  const tmp = `${path}.${process.pid}.tmp`;
  await writeFile(tmp, text, { mode: 0o644 });
  await rename(tmp, path);
}

export interface ExportSummary {
  readonly entries: number;
  readonly blobsWritten: number;
  readonly bytesWritten: number;
}

/**
 * Writes (or adds to) an OCI layout at `dir` with everything the records stored: every object
 * copied from the store, hashed again on the way, and one index.json descriptor per tag and
 * referrer. An entry with the same ref name as one already there replaces it.
 */
export async function exportLayout(store: ContentStore, dir: string, records: readonly CopyRecord[]): Promise<ExportSummary> {
  await mkdir(dir, { recursive: true });
  if (!(await checkLayoutFile(dir))) await writeAtomic(join(dir, 'oci-layout'), `${JSON.stringify({ imageLayoutVersion: LAYOUT_VERSION })}\n`);
  const existing = (await readIndex(dir)) ?? [];
  const byRef = new Map<string, IndexDescriptor>();
  const unnamed: IndexDescriptor[] = [];
  for (const d of existing) {
    const ref = d?.annotations?.[REF_NAME];
    if (typeof ref === 'string') byRef.set(ref, d);
    else unnamed.push(d);
  }
  let blobsWritten = 0;
  let bytesWritten = 0;
  const objects = new Map<Digest, number>();
  for (const r of records) for (const [d, size] of r.objects) objects.set(d, size);
  for (const [digest, size] of objects) {
    const path = blobPath(dir, digest);
    const present = await stat(path).then((st) => st.isFile() && st.size === size, () => false);
    if (present) continue;
    await mkdir(join(dir, 'blobs', digestAlgorithm(digest)), { recursive: true });
    const src = await store.openRead(digest);
    if (src === null) throw new SigilError({ code: 'BLOB_UNKNOWN', message: `${digest} is no longer in the content store` });
    const hash = createHash(digestAlgorithm(digest));
    const tmp = `${path}.${process.pid}.tmp`;
    try {
      await pipeline(
        src,
        new Transform({
          transform: (chunk: Buffer, _e, cb) => {
            hash.update(chunk);
            cb(null, chunk);
          },
        }),
        createWriteStream(tmp, { mode: 0o644 }),
      );
      const got = `${digestAlgorithm(digest)}:${hash.digest('hex')}`;
      if (got !== digest) throw new SigilError({ code: 'DIGEST_MISMATCH', message: `content store: ${digest} reads back as ${got}` });
      await rename(tmp, path);
    } catch (e) {
      await rm(tmp, { force: true });
      throw e;
    }
    blobsWritten++;
    bytesWritten += size;
  }
  for (const r of records) {
    for (const e of r.entries) {
      const ref = refName(e);
      byRef.set(ref, { mediaType: e.mediaType, digest: e.digest, size: e.size, annotations: { [REF_NAME]: ref } });
    }
  }
  const manifests = [...unnamed, ...[...byRef.values()].sort((a, b) => (a.annotations?.[REF_NAME] ?? '').localeCompare(b.annotations?.[REF_NAME] ?? ''))];
  await writeAtomic(join(dir, 'index.json'), `${JSON.stringify({ schemaVersion: 2, mediaType: MT.OCI_INDEX, manifests }, null, 1)}\n`);
  return { entries: byRef.size, blobsWritten, bytesWritten };
}
