import type { Config, Policy } from '../config/types.js';
import { SigilError, isSigilError } from '../errors.js';
import type { ManifestGate } from '../gate/manifest-gate.js';
import type { Digest } from '../oci/digest.js';
import type { Catalog } from '../store/catalog.js';
import type { Registry } from '../oci/registry.js';
import { decide } from '../policy/decide.js';
import type { Evaluation } from '../policy/evaluation.js';
import type { ContentStore } from '../store/content-store.js';
import { Copier, CopyRecord, unmatchedPlatforms, type Location } from './copy.js';
import { parseManifest } from '../oci/manifest.js';
import { listAllTags, selectTags, type SelectedTag } from './select.js';
import type { MirrorImage } from './spec.js';

/**
 * verified: mirrored, its signature verified under the policy;
 * unverified: mirrored without verification (no policy, or mode off);
 * signature: mirrored as signature data (a signature artifact, proven by its content);
 * denied: not mirrored, it does not verify under an enforce or warn policy;
 * failed: not mirrored, something went wrong (missing tag, upstream error, signatures that could
 * not be read, store too small, a platforms filter that selects nothing).
 * (Not `skipped`: in the Sigil-Verification header that means "not judged".)
 */
export type MirrorStatus = 'verified' | 'unverified' | 'signature' | 'denied' | 'failed';

/** The statuses of what was copied (mirrored or imported). */
export function isCopied(status: MirrorStatus): boolean {
  return status === 'verified' || status === 'unverified' || status === 'signature';
}

export interface MirrorResult {
  /** `<upstream>/<repository>` */
  readonly image: string;
  readonly upstream: string;
  readonly repository: string;
  readonly tag: string;
  readonly status: MirrorStatus;
  readonly digest?: Digest;
  readonly policy?: string;
  readonly signer?: string;
  /** Why not verified / skipped / failed. */
  readonly reason?: string;
  /** Sizes of the image and its signature data (all objects), and of what was new to the store. */
  readonly bytes: number;
  readonly newBytes: number;
  readonly objects: number;
  /** What was stored (mirrored images only): for `--export`. */
  readonly record?: CopyRecord;
}

export interface MirrorProgress {
  /** An entry's tags were selected (or listing them failed: `error`). */
  selected(entry: MirrorImage, tags: readonly SelectedTag[], error?: string): void;
  tagStarted(entry: MirrorImage, tag: string, index: number, total: number): void;
  /** Blob bytes received from the upstream. */
  bytes(n: number): void;
  tagDone(result: MirrorResult, index: number, total: number): void;
}

export interface MirrorDeps {
  readonly config: Config;
  readonly clients: ReadonlyMap<string, Registry>;
  /** The gate `serve` uses: the same fetch, discovery, verification and verdict. */
  readonly gate: ManifestGate;
  readonly content: ContentStore;
  readonly catalog: Catalog;
  readonly now?: () => number;
}

/**
 * `sigil mirror`: for every selected tag, resolve and judge it with the serve gate, then copy
 * what may be copied (the manifest bytes that were verified, children, blobs, signature data)
 * into the content store with its catalog records. Sequential: one upstream, one disk, and a
 * progress line that means something.
 */
export async function runMirror(deps: MirrorDeps, images: readonly MirrorImage[], progress: MirrorProgress): Promise<MirrorResult[]> {
  const work: Array<{ entry: MirrorImage; tag: string }> = [];
  const results: MirrorResult[] = [];
  for (const entry of images) {
    const client = deps.clients.get(entry.upstream);
    if (!client) throw new SigilError({ code: 'INTERNAL', message: `upstream ${entry.upstream} has no client` });
    let available: string[] = [];
    let listError: string | undefined;
    if (entry.semver !== undefined || entry.latest !== undefined) {
      try {
        available = await listAllTags(client, entry.repository);
      } catch (e) {
        listError = `listing tags: ${message(e)}`;
        results.push(failed(entry, '(tags/list)', listError));
      }
    }
    const selected = selectTags(entry, available);
    progress.selected(entry, selected, listError);
    for (const s of selected) work.push({ entry, tag: s.tag });
  }
  const copier = new Copier(deps, (n) => progress.bytes(n));
  for (const [i, { entry, tag }] of work.entries()) {
    progress.tagStarted(entry, tag, i, work.length);
    const r = await mirrorTag(deps, copier, entry, tag);
    results.push(r);
    progress.tagDone(r, i, work.length);
  }
  return recheck(deps, results);
}

/**
 * Eviction (cache.store.maxBytes) may remove what an earlier image of this run stored: such an
 * image is failed after all, and its tag record is removed, so that the store does not claim it.
 */
async function recheck(store: { readonly content: ContentStore; readonly catalog: Catalog }, results: MirrorResult[]): Promise<MirrorResult[]> {
  await store.content.evict(); // runs after the evictions the writes started, so they are over
  const out: MirrorResult[] = [];
  for (const r of results) {
    const missing = r.record ? await missingObjects(store.content, r.record) : 0;
    if (missing === 0) {
      out.push(r);
      continue;
    }
    await store.catalog.deleteTag(r.upstream, r.repository, r.tag);
    const { record: _dropped, signer: _s, ...rest } = r;
    out.push({ ...rest, status: 'failed', reason: evicted(missing) });
  }
  return out;
}

async function missingObjects(content: ContentStore, rec: CopyRecord): Promise<number> {
  let n = 0;
  for (const d of rec.objects.keys()) if (!(await content.has(d))) n++;
  return n;
}

function evicted(n: number): string {
  return `${n} object(s) evicted while mirroring: cache.store.maxBytes is too small for this mirror`;
}

async function mirrorTag(deps: MirrorDeps, copier: Copier, entry: MirrorImage, tag: string): Promise<MirrorResult> {
  const base = { image: `${entry.upstream}/${entry.repository}`, upstream: entry.upstream, repository: entry.repository, tag };
  let ev: Evaluation;
  try {
    ev = await deps.gate.evaluate({ upstream: entry.upstream, repository: entry.repository, reference: tag });
  } catch (e) {
    return failed(entry, tag, message(e));
  }
  const digest = ev.manifest.digest;
  const judged = judge(ev);
  const policy = ev.policy?.name;
  const common = { ...base, digest, ...(policy !== undefined ? { policy } : {}) };
  if (!isCopied(judged.status)) return { ...common, status: judged.status, reason: judged.reason, bytes: 0, newBytes: 0, objects: 0 };
  const none = platformsMiss(ev, entry);
  if (none !== undefined) return { ...common, status: 'failed', reason: none, bytes: 0, newBytes: 0, objects: 0 };

  const loc: Location = { upstream: entry.upstream, repository: entry.repository, client: deps.clients.get(entry.upstream) as Registry };
  const rec = new CopyRecord();
  try {
    await copier.copyManifest(loc, ev.manifest, rec, entry.platforms);
    const sigLoc = signatureLocation(deps, loc, ev.policy);
    await copier.copySignatures(sigLoc, digest, rec, { attestations: (ev.policy?.attestations ?? []).length > 0 });
    if (ev.policy && ev.outcome) {
      // The record serve's keeper writes (registry/keep.ts).
      await deps.catalog.putVerdict(entry.upstream, entry.repository, digest, ev.policy.fingerprint, { outcome: ev.outcome, decidedAt: (deps.now ?? Date.now)() });
    }
    // Eviction (cache.store.maxBytes) may have removed part of it while it was copied.
    await deps.content.evict();
    const missing = await missingObjects(deps.content, rec);
    if (missing > 0) return { ...common, status: 'failed', reason: evicted(missing), bytes: rec.bytes, newBytes: rec.newBytes, objects: rec.objects.size };
    // The tag last: it never points at an incomplete image.
    await copier.putTag(loc, tag, ev.manifest, rec);
  } catch (e) {
    return { ...common, status: 'failed', reason: message(e), bytes: rec.bytes, newBytes: rec.newBytes, objects: rec.objects.size };
  }
  return {
    ...common,
    status: judged.status,
    ...(judged.signer !== undefined ? { signer: judged.signer } : {}),
    ...(judged.reason !== undefined ? { reason: judged.reason } : {}),
    bytes: rec.bytes,
    newBytes: rec.newBytes,
    objects: rec.objects.size,
    record: rec,
  };
}

/**
 * Enforce and warn policies mirror (and import) only what verifies (what serve lets through
 * unmarked); `off` and no policy are copied unverified, signature artifacts as signature data.
 * What could not be checked (an `indeterminate` outcome) failed rather than was denied.
 */
export function judge(ev: Evaluation): { status: MirrorStatus; signer?: string; reason?: string } {
  const d = decide(ev.policy, ev);
  if (d.verification === 'verified') return { status: 'verified', ...(d.signer !== undefined ? { signer: d.signer } : {}) };
  const reason = d.because !== undefined ? { reason: d.because } : {};
  if (ev.basis === 'signature-artifact') return { status: 'signature', ...reason };
  if (d.action === 'allow') return { status: 'unverified', ...reason };
  return { status: ev.outcome?.kind === 'indeterminate' ? 'failed' : 'denied', ...reason };
}

/** A `platforms:` filter that selects none of an index's children: why nothing is mirrored. */
function platformsMiss(ev: Evaluation, entry: MirrorImage): string | undefined {
  if (entry.platforms === undefined) return undefined;
  try {
    const parsed = parseManifest(ev.manifest.bytes, ev.manifest.mediaType, `${entry.upstream}/${entry.repository}@${ev.manifest.digest}`);
    return parsed.kind === 'index' ? unmatchedPlatforms(parsed.children, entry.platforms) : undefined;
  } catch {
    return undefined; // not a manifest sigil can copy: the copy says so
  }
}

/** Where the gate looks for signatures: the image's repository, or the policy's signatureRepository. */
function signatureLocation(deps: MirrorDeps, image: Location, policy: Policy | undefined): Location {
  const sr = policy?.signatureRepository;
  if (sr === undefined) return image;
  const slash = sr.indexOf('/');
  const named = slash > 0 ? deps.clients.get(sr.slice(0, slash)) : undefined;
  if (named) return { upstream: sr.slice(0, slash), repository: sr.slice(slash + 1), client: named };
  return { ...image, repository: sr };
}

function failed(entry: MirrorImage, tag: string, reason: string): MirrorResult {
  return { image: `${entry.upstream}/${entry.repository}`, upstream: entry.upstream, repository: entry.repository, tag, status: 'failed', reason, bytes: 0, newBytes: 0, objects: 0 };
}

function message(e: unknown): string {
  return isSigilError(e) ? `${e.code}: ${e.message}` : e instanceof Error ? e.message : String(e);
}
