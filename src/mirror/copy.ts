import { Transform, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { SigilError, isSigilError } from '../errors.js';
import { attestationTag, referrersTag, signatureTag, type Digest } from '../oci/digest.js';
import { MT } from '../oci/media-types.js';
import { MAX_BUNDLE_REFERRERS } from '../signatures/limits.js';
import type { Catalog } from '../store/catalog.js';
import type { FetchedManifest, Registry } from '../oci/registry.js';
import type { ContentStore } from '../store/content-store.js';
import { MAX_INDEX_CHILDREN, MAX_INDEX_DEPTH } from './limits.js';
import { parseManifest, referrerDescriptor, tryDescriptor, tryIndexEntries, type Descriptor } from '../oci/manifest.js';
import { platformText, platformWanted, type Platform } from '../oci/platform.js';
import { isBundleReferrer } from '../signatures/referrers.js';

/** A repository on an upstream, and the client to read it. */
export interface Location {
  readonly upstream: string;
  readonly repository: string;
  readonly client: Registry;
}

/** A manifest to list in an OCI layout's index.json: tagged, or (a referrer) by digest only. */
export interface LayoutEntry {
  readonly upstream: string;
  readonly repository: string;
  readonly tag?: string;
  readonly digest: Digest;
  readonly mediaType: string;
  readonly size: number;
}

/** What one image's copy stored: for the summary, the presence check and `--export`. */
export class CopyRecord {
  readonly entries: LayoutEntry[] = [];
  /** Every object of the image and its signature data, with its size. */
  readonly objects = new Map<Digest, number>();
  newObjects = 0;
  newBytes = 0;

  get bytes(): number {
    let n = 0;
    for (const size of this.objects.values()) n += size;
    return n;
  }
}

const SIG_ACCEPT = [MT.OCI_MANIFEST, MT.DOCKER_MANIFEST].join(', ');

function notFound(e: unknown): boolean {
  return isSigilError(e) && (e.code === 'MANIFEST_UNKNOWN' || e.code === 'NAME_UNKNOWN');
}

/** When a `platforms:` filter selects none of an index's children: says so, naming what the index has. */
export function unmatchedPlatforms(children: readonly Descriptor[], platforms: readonly Platform[] | undefined): string | undefined {
  if (platforms === undefined || children.some((c) => platformWanted(c, platforms))) return undefined;
  const listed = [...new Set(children.map((c) => (c.platform ? platformText(c.platform) : 'no platform')))];
  return `platforms [${platforms.map(platformText).join(', ')}] match none of the ${children.length} manifest(s) of this index (${listed.join(', ')}): nothing to mirror`;
}

/**
 * Copies manifests, blobs and signature data from an upstream into the content store and
 * records them in the catalog, in an order that never leaves a record pointing at missing
 * content: blobs and children before the manifest that names them, the tag last.
 */
export class Copier {
  readonly #content: ContentStore;
  readonly #catalog: Catalog;
  readonly #onBytes: (n: number) => void;

  constructor(store: { readonly content: ContentStore; readonly catalog: Catalog }, onBytes: (n: number) => void = () => {}) {
    this.#content = store.content;
    this.#catalog = store.catalog;
    this.#onBytes = onBytes;
  }

  /** The manifest (bytes as verified), every child of an index (or those of `platforms`), every blob. */
  async copyManifest(loc: Location, m: FetchedManifest, rec: CopyRecord, platforms?: readonly Platform[], depth = 0): Promise<void> {
    const what = `${loc.upstream}/${loc.repository}@${m.digest}`;
    const parsed = parseManifest(m.bytes, m.mediaType, what);
    if (parsed.kind === 'index') {
      if (depth >= MAX_INDEX_DEPTH) throw new SigilError({ code: 'MANIFEST_INVALID', message: `${what}: indexes nested deeper than ${MAX_INDEX_DEPTH}` });
      const children = parsed.children.filter((c) => platformWanted(c, platforms));
      if (children.length > MAX_INDEX_CHILDREN) {
        throw new SigilError({ code: 'MANIFEST_INVALID', message: `${what}: ${children.length} child manifests, more than ${MAX_INDEX_CHILDREN}` });
      }
      const none = unmatchedPlatforms(parsed.children, platforms);
      if (none !== undefined) throw new SigilError({ code: 'MANIFEST_UNKNOWN', message: `${what}: ${none}` });
      for (const child of children) {
        const fetched = await loc.client.fetchManifest(loc.repository, child.digest, { accept: child.mediaType });
        if (fetched.bytes.length !== child.size) {
          throw new SigilError({ code: 'MANIFEST_INVALID', message: `${what}: child ${child.digest} has ${fetched.bytes.length} bytes, the index says ${child.size}` });
        }
        // A child is stored with the type its index names: that is what a client asks for.
        await this.copyManifest(loc, { ...fetched, mediaType: child.mediaType }, rec, platforms, depth + 1);
      }
    } else {
      for (const b of parsed.blobs) await this.copyBlob(loc, b, rec, m.digest);
    }
    await this.#putManifest(loc, m, rec);
  }

  /** Streams a blob into the store (digest and size checked by the store) unless it is there; `namedBy` is the manifest naming it. */
  async copyBlob(loc: Location, d: Descriptor, rec: CopyRecord, namedBy: Digest): Promise<void> {
    const store = this.#content;
    rec.objects.set(d.digest, d.size);
    if (await store.has(d.digest)) {
      await this.#catalog.noteBlob(loc.upstream, loc.repository, d.digest, namedBy);
      return;
    }
    const w = store.beginWrite(d.digest, d.size);
    if (w.kind === 'follower') {
      // Someone else is writing it: wait for the object by reading behind the writer.
      await pipeline(w.stream, new Writable({ write: (_c, _e, cb) => cb() }));
    } else {
      const done = w.done;
      done.catch(() => {});
      let body;
      try {
        const res = await loc.client.openBlob(loc.repository, d.digest, { method: 'GET' });
        if (res.status !== 200 || res.body === null) {
          res.body?.destroy();
          throw new SigilError({ code: 'UPSTREAM_BAD_RESPONSE', message: `blob ${d.digest} of ${loc.repository}: status ${res.status}` });
        }
        body = res.body;
      } catch (e) {
        w.writer.destroy(e as Error);
        await done.catch(() => {});
        throw e;
      }
      const count = new Transform({
        transform: (chunk: Buffer, _e, cb) => {
          this.#onBytes(chunk.length);
          cb(null, chunk);
        },
      });
      await pipeline(body, count, w.writer);
      await done;
      rec.newObjects++;
      rec.newBytes += d.size;
    }
    await this.#catalog.noteBlob(loc.upstream, loc.repository, d.digest, namedBy);
  }

  /**
   * The signature data of `digest` at `loc` (the image's repository, or the policy's
   * signatureRepository): cosign's `.sig` manifest and blobs (and its `.att` ones, when the
   * policy requires attestations), the Sigstore bundle referrers
   * and blobs, the referrers fallback index when the upstream has no referrers API, and the
   * catalog's referrers list. Returns what was found, for the summary.
   */
  async copySignatures(loc: Location, digest: Digest, rec: CopyRecord, opts: { attestations?: boolean } = {}): Promise<{ legacy: boolean; bundles: number }> {
    const legacy = await this.#copyTagged(loc, signatureTag(digest), rec);
    if (opts.attestations === true) await this.#copyTagged(loc, attestationTag(digest), rec);

    const listed = await this.#listReferrers(loc, digest, rec);
    const descriptors: Descriptor[] = [];
    for (const ref of listed.filter(isBundleReferrer).slice(0, MAX_BUNDLE_REFERRERS)) {
      const m = await loc.client.fetchManifest(loc.repository, ref.digest, { accept: MT.OCI_MANIFEST });
      const parsed = parseManifest(m.bytes, m.mediaType, `referrer ${ref.digest}`);
      // Only what points at this digest: signature discovery ignores anything else.
      if (parsed.kind !== 'image' || parsed.subject?.digest !== digest) continue;
      await this.copyManifest(loc, m, rec);
      rec.entries.push({ upstream: loc.upstream, repository: loc.repository, digest: m.digest, mediaType: m.mediaType, size: m.bytes.length });
      descriptors.push(referrerDescriptor(m.digest, m.mediaType, m.bytes.length, parsed));
    }
    if (descriptors.length > 0) {
      descriptors.sort((a, b) => (a.digest < b.digest ? -1 : 1));
      await this.#catalog.putReferrers(loc.upstream, loc.repository, digest, descriptors);
    }
    return { legacy, bundles: descriptors.length };
  }

  /** A cosign tag (`.sig`, `.att`) and what it names, when there is one; whether there was. */
  async #copyTagged(loc: Location, tag: string, rec: CopyRecord): Promise<boolean> {
    let m: FetchedManifest;
    try {
      m = await loc.client.fetchManifest(loc.repository, tag, { accept: SIG_ACCEPT });
    } catch (e) {
      if (notFound(e)) return false;
      throw e;
    }
    await this.copyManifest(loc, m, rec);
    await this.#putTag(loc, tag, m, rec);
    return true;
  }

  /** Referrers of `digest`: the API's answer, else the fallback tag's index (which is stored too). */
  async #listReferrers(loc: Location, digest: Digest, rec: CopyRecord): Promise<Descriptor[]> {
    const api = await loc.client.referrers(loc.repository, digest);
    let bytes: Buffer;
    if (api.kind === 'api') bytes = api.body;
    else {
      const tag = referrersTag(digest);
      let index: FetchedManifest;
      try {
        index = await loc.client.fetchManifest(loc.repository, tag, { accept: MT.OCI_INDEX });
      } catch (e) {
        if (notFound(e)) return [];
        throw e;
      }
      if (parseManifest(index.bytes, index.mediaType, `referrers tag ${tag}`).kind !== 'index') {
        throw new SigilError({ code: 'UPSTREAM_BAD_RESPONSE', message: `the referrers tag ${tag} is a ${index.mediaType}, not an image index` });
      }
      // Stored as it is (its children are referrers, copied below when they are bundles).
      await this.#putManifest(loc, index, rec);
      await this.#putTag(loc, tag, index, rec);
      bytes = index.bytes;
    }
    // Lenient like signature discovery: a malformed entry is skipped, not fatal.
    const list = tryIndexEntries(bytes);
    if (list === undefined) throw new SigilError({ code: 'UPSTREAM_BAD_RESPONSE', message: `referrers of ${loc.upstream}/${loc.repository}@${digest}: not an image index` });
    return list.flatMap((d) => tryDescriptor(d) ?? []);
  }

  async #putManifest(loc: Location, m: FetchedManifest, rec: CopyRecord): Promise<void> {
    if (!(await this.#content.has(m.digest))) {
      rec.newObjects++;
      rec.newBytes += m.bytes.length;
    }
    rec.objects.set(m.digest, m.bytes.length);
    await this.#catalog.putManifest(loc.upstream, loc.repository, m.digest, m.mediaType, m.bytes);
  }

  /** Points `tag` at a stored manifest: the last step of a copy. */
  async putTag(loc: Location, tag: string, m: FetchedManifest, rec: CopyRecord): Promise<void> {
    await this.#putTag(loc, tag, m, rec);
  }

  async #putTag(loc: Location, tag: string, m: FetchedManifest, rec: CopyRecord): Promise<void> {
    await this.#catalog.putTag(loc.upstream, loc.repository, tag, { digest: m.digest, mediaType: m.mediaType });
    rec.entries.push({ upstream: loc.upstream, repository: loc.repository, tag, digest: m.digest, mediaType: m.mediaType, size: m.bytes.length });
  }
}
