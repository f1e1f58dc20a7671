import { createHash } from 'node:crypto';
import { constants, createWriteStream } from 'node:fs';
import { mkdir, open, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { SigilError, isSigilError } from '../errors.js';
import { digestAlgorithm, digestOf, isDigest, type Digest } from '../oci/digest.js';
import { MT } from '../oci/media-types.js';
import { isRepositoryName, isTag } from '../oci/reference.js';
import type { Catalog } from '../store/catalog.js';
import type { ContentStore } from '../store/content-store.js';
import { MANIFEST_MAX_BYTES } from '../upstream/limits.js';
import type { CopyRecord, LayoutEntry } from './copy.js';
import { LAYOUT_INDEX_MAX_BYTES, MAX_INDEX_DEPTH } from './limits.js';
import { descriptor, parseManifest, referrerDescriptor, type Descriptor } from './manifest.js';

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
const NOFOLLOW_READ = constants.O_RDONLY | constants.O_NOFOLLOW;

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

function blobPath(dir: string, d: Digest): string {
  return join(dir, 'blobs', digestAlgorithm(d), d.slice(d.indexOf(':') + 1));
}

interface IndexDescriptor {
  mediaType: string;
  digest: string;
  size: number;
  annotations?: Record<string, string>;
}

async function readIndex(dir: string): Promise<IndexDescriptor[] | null> {
  let text: string;
  try {
    const st = await stat(join(dir, 'index.json'));
    if (st.size > LAYOUT_INDEX_MAX_BYTES) throw new SigilError({ code: 'MANIFEST_INVALID', message: `${dir}/index.json: ${st.size} bytes exceed ${LAYOUT_INDEX_MAX_BYTES}` });
    text = await readFile(join(dir, 'index.json'), 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw e;
  }
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (cause) {
    throw new SigilError({ code: 'MANIFEST_INVALID', message: `${dir}/index.json: not JSON`, cause });
  }
  const list = (doc as { manifests?: unknown } | null)?.manifests;
  if (!Array.isArray(list)) throw new SigilError({ code: 'MANIFEST_INVALID', message: `${dir}/index.json: no manifests list` });
  return list as IndexDescriptor[];
}

async function checkLayoutFile(dir: string): Promise<boolean> {
  let text: string;
  try {
    text = await readFile(join(dir, 'oci-layout'), 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw e;
  }
  const v = (JSON.parse(text) as { imageLayoutVersion?: unknown } | null)?.imageLayoutVersion;
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

export interface ImportResult {
  /** The ref name as written in index.json (or `index.json manifests[i]` without one). */
  readonly ref: string;
  readonly status: 'imported' | 'failed';
  readonly digest?: string;
  readonly reason?: string;
  readonly objects: number;
  readonly newBytes: number;
}

/**
 * Reads an OCI layout written by `sigil mirror --export` (or any layout whose ref names are
 * `<upstream>/<repository>:<tag>` or `…@<digest>`) into the content store: every manifest and
 * blob checked against its digest (and size) before it is stored, the catalog records written
 * as `mirror` writes them (manifests, blobs, tags last, referrers from the `subject` of the
 * imported manifests). Child manifests missing from the layout (a platform-filtered mirror)
 * are left out; a missing blob fails its entry.
 */
export async function importLayout(catalog: Catalog, dir: string, onResult: (r: ImportResult) => void = () => {}): Promise<ImportResult[]> {
  if (!(await checkLayoutFile(dir))) throw new SigilError({ code: 'MANIFEST_INVALID', message: `${dir}: no oci-layout file: not an OCI image layout` });
  const index = await readIndex(dir);
  if (index === null) throw new SigilError({ code: 'MANIFEST_INVALID', message: `${dir}: no index.json` });
  const importer = new Importer(catalog, dir);
  const results: ImportResult[] = [];
  for (const [i, raw] of index.entries()) {
    const at = `index.json manifests[${i}]`;
    const ref = (raw as IndexDescriptor | null)?.annotations?.[REF_NAME];
    const label = typeof ref === 'string' ? ref : at;
    const fail = (reason: string, digest?: string): void => {
      const r: ImportResult = { ref: label, status: 'failed', reason, objects: 0, newBytes: 0, ...(digest ? { digest } : {}) };
      results.push(r);
      onResult(r);
    };
    let desc: Descriptor;
    try {
      desc = descriptor(raw, at);
    } catch (e) {
      fail(messageOf(e));
      continue;
    }
    const parsed = typeof ref === 'string' ? parseRefName(ref) : undefined;
    if (parsed === undefined) {
      fail(typeof ref === 'string' ? `ref name '${ref}' is not <upstream>/<repository>:<tag> or …@<digest>` : `no ${REF_NAME} annotation`, desc.digest);
      continue;
    }
    if ('digest' in parsed && parsed.digest !== desc.digest) {
      fail(`the ref name names ${parsed.digest}, the descriptor ${desc.digest}`, desc.digest);
      continue;
    }
    const tally = { objects: new Set<Digest>(), newBytes: 0 };
    try {
      await importer.manifest(parsed.upstream, parsed.repository, desc, tally, 0);
      if ('tag' in parsed) await catalog.putTag(parsed.upstream, parsed.repository, parsed.tag, { digest: desc.digest, mediaType: desc.mediaType });
    } catch (e) {
      fail(messageOf(e), desc.digest);
      continue;
    }
    const r: ImportResult = { ref: label, status: 'imported', digest: desc.digest, objects: tally.objects.size, newBytes: tally.newBytes };
    results.push(r);
    onResult(r);
  }
  await importer.writeReferrers();
  return results;
}

/** Imports manifests and blobs of one layout, collecting referrers by subject. */
class Importer {
  readonly #catalog: Catalog;
  readonly #dir: string;
  /** `<upstream>\0<repository>\0<subject>` → referrer descriptors by digest. */
  readonly #referrers = new Map<string, Map<Digest, Descriptor>>();

  constructor(catalog: Catalog, dir: string) {
    this.#catalog = catalog;
    this.#dir = dir;
  }

  async manifest(upstream: string, repository: string, desc: Descriptor, tally: { objects: Set<Digest>; newBytes: number }, depth: number): Promise<void> {
    const bytes = await this.#readManifest(desc);
    const parsed = parseManifest(bytes, desc.mediaType, `${upstream}/${repository}@${desc.digest}`);
    if (parsed.kind === 'index') {
      if (depth >= MAX_INDEX_DEPTH) throw new SigilError({ code: 'MANIFEST_INVALID', message: `${desc.digest}: indexes nested deeper than ${MAX_INDEX_DEPTH}` });
      for (const child of parsed.children) {
        const there = await stat(blobPath(this.#dir, child.digest)).then((st) => st.isFile(), () => false);
        if (there) await this.manifest(upstream, repository, child, tally, depth + 1);
      }
    } else {
      for (const b of parsed.blobs) await this.#blob(upstream, repository, b, tally);
      if (parsed.subject !== undefined) {
        const key = `${upstream}\0${repository}\0${parsed.subject.digest}`;
        const list = this.#referrers.get(key) ?? new Map<Digest, Descriptor>();
        list.set(desc.digest, referrerDescriptor(desc.digest, desc.mediaType, bytes.length, parsed));
        this.#referrers.set(key, list);
      }
    }
    if (!(await this.#catalog.store.has(desc.digest))) tally.newBytes += bytes.length;
    tally.objects.add(desc.digest);
    await this.#catalog.putManifest(upstream, repository, desc.digest, desc.mediaType, bytes);
  }

  /** Referrers records, merged with what the catalog already lists (by digest), sorted as `mirror` writes them. */
  async writeReferrers(): Promise<void> {
    for (const [key, found] of this.#referrers) {
      const [upstream, repository, subject] = key.split('\0') as [string, string, Digest];
      const merged = new Map<string, unknown>();
      for (const d of (await this.#catalog.getReferrers(upstream, repository, subject)) ?? []) {
        const digest = (d as { digest?: unknown } | null)?.digest;
        if (typeof digest === 'string') merged.set(digest, d);
      }
      for (const [digest, d] of found) merged.set(digest, d);
      const list = [...merged].sort((a, b) => (a[0] < b[0] ? -1 : 1)).map(([, d]) => d);
      await this.#catalog.putReferrers(upstream, repository, subject, list);
    }
  }

  async #readManifest(desc: Descriptor): Promise<Buffer> {
    if (desc.size > MANIFEST_MAX_BYTES) throw new SigilError({ code: 'MANIFEST_TOO_LARGE', message: `manifest ${desc.digest}: ${desc.size} bytes exceed ${MANIFEST_MAX_BYTES}` });
    let bytes: Buffer;
    try {
      const fh = await open(blobPath(this.#dir, desc.digest), NOFOLLOW_READ);
      try {
        const { size } = await fh.stat();
        if (size !== desc.size) throw new SigilError({ code: 'DIGEST_MISMATCH', message: `manifest ${desc.digest}: the layout's file has ${size} bytes, the descriptor says ${desc.size}` });
        bytes = await fh.readFile();
      } finally {
        await fh.close();
      }
    } catch (e) {
      if (isSigilError(e)) throw e;
      throw new SigilError({ code: 'MANIFEST_UNKNOWN', message: `manifest ${desc.digest}: not in the layout (${(e as NodeJS.ErrnoException).code ?? String(e)})` });
    }
    const got = digestOf(bytes, desc.digest);
    if (got !== desc.digest) throw new SigilError({ code: 'DIGEST_MISMATCH', message: `manifest ${desc.digest}: the layout's file hashes to ${got}` });
    return bytes;
  }

  async #blob(upstream: string, repository: string, d: Descriptor, tally: { objects: Set<Digest>; newBytes: number }): Promise<void> {
    const store = this.#catalog.store;
    tally.objects.add(d.digest);
    if (!(await store.has(d.digest))) {
      const path = blobPath(this.#dir, d.digest);
      let fh;
      try {
        fh = await open(path, NOFOLLOW_READ);
      } catch (e) {
        throw new SigilError({ code: 'BLOB_UNKNOWN', message: `blob ${d.digest}: not in the layout (${(e as NodeJS.ErrnoException).code ?? String(e)})` });
      }
      const w = store.beginWrite(d.digest, d.size);
      if (w.kind === 'follower') {
        await fh.close();
        w.stream.resume();
        await new Promise<void>((resolve, reject) => w.stream.once('end', resolve).once('error', reject));
      } else {
        w.done.catch(() => {});
        // The store hashes while writing: a wrong digest or size is DIGEST_MISMATCH, nothing stored.
        await pipeline(fh.createReadStream(), w.writer).catch(async (e: unknown) => {
          await w.done.catch(() => {});
          throw e;
        });
        try {
          await w.done;
        } catch (e) {
          throw new SigilError({ code: 'DIGEST_MISMATCH', message: `blob ${d.digest}: ${messageOf(e)}`, cause: e });
        }
        tally.newBytes += d.size;
      }
    }
    await this.#catalog.noteBlob(upstream, repository, d.digest);
  }
}

function messageOf(e: unknown): string {
  return isSigilError(e) ? `${e.code}: ${e.message}` : e instanceof Error ? e.message : String(e);
}
