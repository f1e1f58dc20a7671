import { open, stat } from 'node:fs/promises';
import { pipeline } from 'node:stream/promises';
import { createLogger } from '../audit/logger.js';
import { Metrics } from '../audit/metrics.js';
import type { Config } from '../config/types.js';
import { SigilError, isSigilError } from '../errors.js';
import { ManifestGate } from '../gate/manifest-gate.js';
import type { Evaluation } from '../policy/evaluation.js';
import type { SignatureVerifier } from '../gate/verifier.js';
import { digestOf, type Digest } from '../oci/digest.js';
import { storeOnly } from '../registry/compose.js';
import type { Catalog, RecordSnapshot } from '../store/catalog.js';
import { recordId, type ObjectRef, type RecordRef, type RepositoryRef } from '../store/catalog-keys.js';
import type { ContentStore } from '../store/content-store.js';
import { MANIFEST_MAX_BYTES } from '../upstream/limits.js';
import type { Registry } from '../oci/registry.js';
import { MAX_INDEX_DEPTH } from './limits.js';
import { descriptor, parseManifest, referrerDescriptor, type Descriptor } from '../oci/manifest.js';
import { NOFOLLOW_READ, REF_NAME, blobPath, checkLayoutFile, parseRefName, readIndex, type IndexDescriptor, type RefName } from './oci-layout.js';
import { judge } from './run.js';
import { SignatureHomes, referrersIndexProblem, signatureTagOf, type SignatureTag } from './signature-data.js';

/**
 * verified / unverified / skipped / failed as `sigil mirror` reports them (run.ts MirrorStatus);
 * signature data (cosign and referrers tags, bundle referrers) is `unverified` when its content
 * proves it is signature data, and follows the image it signs: skipped when that image is
 * neither imported nor stored and passing (signature-data.ts).
 */
export type ImportStatus = 'verified' | 'unverified' | 'skipped' | 'failed';

export interface ImportResult {
  /** The ref name as written in index.json (or `index.json manifests[i]` without one). */
  readonly ref: string;
  readonly status: ImportStatus;
  readonly digest?: string;
  readonly policy?: string;
  readonly signer?: string;
  /** Why not verified / skipped / failed. */
  readonly reason?: string;
  /** Objects the entry reaches and bytes new to the store (0 when not imported). */
  readonly objects: number;
  readonly newBytes: number;
}

export interface ImportDeps {
  readonly content: ContentStore;
  readonly catalog: Catalog;
  readonly config: Config;
  /** serve's trust material (app.ts loadVerifier): verification reads nothing but the store. */
  readonly verifier: SignatureVerifier;
  readonly now?: () => number;
}

/** What importing one index.json entry touched. */
interface Tally {
  readonly id: number;
  /** Every object the entry reaches, stored before or by this import. */
  readonly objects: Set<Digest>;
  /** The manifests among them (the entry's own and its children). */
  readonly manifests: Set<Digest>;
  /** Catalog records it wrote (recordId). */
  readonly records: Set<string>;
  /** Objects this import stored for it (absent before). */
  readonly created: Set<Digest>;
  newBytes: number;
  /** The `subject` of the entry's manifest (a referrer). */
  subject?: Digest;
}

interface Decision {
  readonly status: ImportStatus;
  readonly reason?: string;
  readonly policy?: string;
  readonly signer?: string;
  readonly ev?: Evaluation;
}

interface Entry {
  readonly label: string;
  readonly ref: RefName;
  readonly desc: Descriptor;
  readonly tally: Tally;
  /** What its tag claims it is: a cosign signature or a referrers fallback index, of that digest. */
  readonly tagged?: SignatureTag;
  /** Kept as signature data of this digest (its tag names it, or it is a referrer): only with it. */
  sigOf?: Digest;
  decision?: Decision;
}

const isKept = (e: Entry): boolean => e.decision?.status === 'verified' || e.decision?.status === 'unverified';

/**
 * Reads an OCI layout written by `sigil mirror --export` (or any layout whose ref names are
 * `<upstream>/<repository>:<tag>` or `…@<digest>`) into the content store, then judges each
 * entry with serve's gate reading only the store, as `serve --offline` will:
 *
 * 1. every manifest and blob checked against its digest (and size) before it is stored, with
 *    its catalog records; cosign `.sig` and referrers fallback tags, and referrers records
 *    (from the `subject` of the imported manifests), so that verification can find them;
 * 2. each entry evaluated by digest (ManifestGate over the store alone) and judged as `mirror`
 *    judges (enforce and warn: only what verifies). What its tag or `subject` calls signature
 *    data passes unverified only when its content proves it (the gate's signature-artifact
 *    basis; a referrers fallback index: an index whose imported entries are such referrers of
 *    its subject), else it is judged like any image; and it is kept only while the image it
 *    signs is kept by this import or already stored and passing where its signatures are read;
 * 3. the tags of what passed, last, so that a tag never names an unverified or incomplete
 *    image; what did not pass is taken out again: the records and objects this import wrote
 *    for it that nothing imported and kept reaches (what the store held before stays).
 *
 * Child manifests missing from the layout (a platform-filtered mirror) are left out; a missing
 * blob fails its entry.
 */
export async function importLayout(deps: ImportDeps, dir: string, onResult: (r: ImportResult) => void = () => {}): Promise<ImportResult[]> {
  if (!(await checkLayoutFile(dir))) throw new SigilError({ code: 'MANIFEST_INVALID', message: `${dir}: no oci-layout file: not an OCI image layout` });
  const index = await readIndex(dir);
  if (index === null) throw new SigilError({ code: 'MANIFEST_INVALID', message: `${dir}: no index.json` });
  const importer = new Importer(deps, dir);
  const slots: Array<ImportResult | Entry> = [];
  const entries: Entry[] = [];
  for (const [i, raw] of index.entries()) {
    const at = `index.json manifests[${i}]`;
    const ref = (raw as IndexDescriptor | null)?.annotations?.[REF_NAME];
    const label = typeof ref === 'string' ? ref : at;
    const fail = (reason: string, digest?: string): void => {
      const r: ImportResult = { ref: label, status: 'failed', reason, objects: 0, newBytes: 0, ...(digest ? { digest } : {}) };
      slots.push(r);
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
    const tagged = 'tag' in parsed ? signatureTagOf(parsed.tag) : undefined;
    const tally: Tally = { id: i, objects: new Set(), manifests: new Set(), records: new Set(), created: new Set(), newBytes: 0 };
    const entry: Entry = { label, ref: parsed, desc, tally, ...(tagged ? { tagged } : {}) };
    try {
      await importer.manifest(parsed.upstream, parsed.repository, desc, tally, 0);
      // Signature data's tags now: verification looks them up (taken out again unless kept). An image's tag only once it passed.
      if (tagged && 'tag' in parsed) await importer.putTag(parsed.upstream, parsed.repository, parsed.tag, desc, tally);
    } catch (e) {
      entry.decision = { status: 'failed', reason: messageOf(e) };
    }
    slots.push(entry);
    entries.push(entry);
  }
  await importer.writeReferrers(() => true);

  const gate = storeGate(deps, entries);
  await judgeEntries(gate, entries);
  const subjects = new Subjects(deps, gate, importer, entries);
  await keepSignatureDataWithSubjects(entries, subjects);
  for (const e of entries) {
    if (!isKept(e)) continue;
    try {
      if ('tag' in e.ref && e.tagged === undefined) await deps.catalog.putTag(e.ref.upstream, e.ref.repository, e.ref.tag, { digest: e.desc.digest, mediaType: e.desc.mediaType });
      const ev = e.decision?.ev;
      if (ev?.policy && ev.outcome && e.sigOf === undefined) {
        // The record serve's keeper writes (registry/keep.ts), for inspection.
        await deps.catalog.putVerdict(e.ref.upstream, e.ref.repository, e.desc.digest, ev.policy.fingerprint, { outcome: ev.outcome, decidedAt: (deps.now ?? Date.now)() });
      }
    } catch (err) {
      e.decision = { status: 'failed', reason: messageOf(err) };
    }
  }
  await keepSignatureDataWithSubjects(entries, subjects); // again, should a tag above have failed
  await importer.takeOut(entries.filter((e) => !isKept(e)), entries.filter(isKept));
  const kept = new Set(entries.filter(isKept).map((e) => e.tally.id));
  await importer.writeReferrers((owners) => [...owners].some((id) => kept.has(id)));

  const results: ImportResult[] = [];
  for (const s of slots) {
    if (!('tally' in s)) {
      results.push(s);
      continue;
    }
    const r = resultOf(s);
    results.push(r);
    onResult(r);
  }
  return results;
}

/** The serve gate over the store alone: every configured upstream, and any other the layout names. */
function storeGate(deps: ImportDeps, entries: readonly Entry[]): ManifestGate {
  const clients = new Map<string, Registry>();
  for (const name of new Set([...deps.config.upstreams.map((u) => u.name), ...entries.map((e) => e.ref.upstream)])) {
    clients.set(name, storeOnly(name, deps));
  }
  return new ManifestGate({
    config: deps.config,
    clients,
    metrics: new Metrics(),
    logger: createLogger('silent'),
    verifier: deps.verifier,
    ...(deps.now ? { now: deps.now } : {}),
  });
}

/**
 * Each entry as serve would judge its bytes. What is tagged as signature data and does not pass
 * as an image passes unverified only as what its content proves: a signature artifact (the
 * gate's basis), or for a referrers fallback tag an index whose imported entries are referrers
 * of its subject that are such artifacts or verified. What passes unverified with a subject (its
 * tag's, or a referrer's `subject`) is that subject's signature data.
 */
async function judgeEntries(gate: ManifestGate, entries: readonly Entry[]): Promise<void> {
  for (const e of entries) {
    if (e.decision !== undefined) continue; // failed while reading
    try {
      // By digest: the very bytes imported, whatever tag will name them.
      const target = { upstream: e.ref.upstream, repository: e.ref.repository, reference: e.desc.digest };
      const ev = await gate.evaluate(target);
      let j: Decision = judge(ev);
      let asReferrersIndex = false;
      const t = e.tagged;
      if (t !== undefined && j.status === 'skipped') {
        if (t.as === 'referrers') {
          const problem = await referrersIndexProblem(gate, target, ev, t.subject, e.tally.manifests);
          asReferrersIndex = problem === undefined;
          if (problem !== undefined) j = { status: 'skipped', reason: `tagged as the referrers index of ${t.subject}, but ${problem}` };
        } else {
          j = { status: 'skipped', reason: `tagged as signature data of ${t.subject}, but not signature data${ev.notArtifact ? ` (${ev.notArtifact})` : ''}: ${j.reason}` };
        }
      }
      const subject = t?.subject ?? e.tally.subject;
      if (subject !== undefined && (j.status === 'unverified' || asReferrersIndex)) {
        e.sigOf = subject;
        const why = ev.basis === 'signature-artifact' || asReferrersIndex ? '' : ` (${j.reason})`;
        j = { status: 'unverified', reason: `signature data of ${subject}${why}` };
      }
      e.decision = { ...j, ev, ...(ev.policy ? { policy: ev.policy.name } : {}) };
    } catch (err) {
      e.decision = { status: 'failed', reason: messageOf(err) };
    }
  }
}

/**
 * Signature data is kept only with the image it signs, where verification reads it: an image
 * kept by this import, or stored before it and passing now. Repeated: signature data may sign
 * signature data.
 */
async function keepSignatureDataWithSubjects(entries: readonly Entry[], subjects: Subjects): Promise<void> {
  for (let changed = true; changed; ) {
    changed = false;
    const reachedBy = new Map<Digest, Entry[]>();
    for (const k of entries.filter(isKept)) {
      for (const d of new Set([k.desc.digest, ...k.tally.manifests])) reachedBy.set(d, [...(reachedBy.get(d) ?? []), k]);
    }
    for (const e of entries) {
      if (e.sigOf === undefined || !isKept(e)) continue;
      if (subjects.keptByImport(e, reachedBy.get(e.sigOf) ?? []) || (await subjects.storedAndPassing(e))) continue;
      e.decision = { status: 'skipped', reason: `signature data of ${e.sigOf}, which is not imported, nor stored and passing, for ${e.ref.upstream}/${e.ref.repository}` };
      changed = true;
    }
  }
}

/** Where the subject of signature data is: among the kept entries, or stored before this import. */
class Subjects {
  readonly #gate: ManifestGate;
  readonly #importer: Importer;
  readonly #homes: SignatureHomes;
  readonly #catalog: Catalog;
  /** Objects this import stored: not stored before it, whatever records say. */
  readonly #created: ReadonlySet<Digest>;
  readonly #passing = new Map<string, Promise<boolean>>();
  #manifestRecords: Promise<ObjectRef[]> | undefined;

  constructor(deps: ImportDeps, gate: ManifestGate, importer: Importer, entries: readonly Entry[]) {
    this.#gate = gate;
    this.#importer = importer;
    this.#catalog = deps.catalog;
    this.#homes = new SignatureHomes(deps.config, new Set([...deps.config.upstreams.map((u) => u.name), ...entries.map((e) => e.ref.upstream)]));
    this.#created = new Set(entries.flatMap((e) => [...e.tally.created]));
  }

  /** One of the kept entries that reach the subject is where signature data of it is read from `sig`'s repository. */
  keptByImport(sig: Entry, keptReaching: readonly Entry[]): boolean {
    const at = `${sig.ref.upstream}/${sig.ref.repository}`;
    return keptReaching.some((k) => k !== sig && this.#homes.readFrom(k.ref.upstream, k.ref.repository).has(at));
  }

  /** The subject was stored before this import in a repository whose signatures `sig` holds, and passes the gate there now. */
  storedAndPassing(sig: Entry): Promise<boolean> {
    const subject = sig.sigOf as Digest;
    const at = `${sig.ref.upstream}/${sig.ref.repository}`;
    const key = `${at}\0${subject}`;
    let p = this.#passing.get(key);
    if (p === undefined) {
      p = this.#check(sig.ref, subject);
      this.#passing.set(key, p);
    }
    return p;
  }

  async #check(home: RepositoryRef, subject: Digest): Promise<boolean> {
    if (this.#created.has(subject)) return false;
    const at = `${home.upstream}/${home.repository}`;
    const elsewhere = (await this.#holding(subject)).filter((w) => w.upstream !== home.upstream || w.repository !== home.repository);
    for (const { upstream, repository } of [home, ...elsewhere]) {
      if (!this.#homes.readFrom(upstream, repository).has(at)) continue;
      if (!(await this.#importer.storedBefore(upstream, repository, subject))) continue;
      try {
        const ev = await this.#gate.evaluate({ upstream, repository, reference: subject });
        if (judge(ev).status !== 'skipped') return true;
      } catch {
        // cannot be judged from the store: it does not hold this signature data
      }
    }
    return false;
  }

  /** The repositories of every manifest record of `digest` (read once, only when needed). */
  async #holding(digest: Digest): Promise<ObjectRef[]> {
    this.#manifestRecords ??= this.#catalog.records('manifest').then((all) => all.map((r) => r.ref));
    return (await this.#manifestRecords).filter((r) => r.digest === digest);
  }
}

function resultOf(e: Entry): ImportResult {
  const d = e.decision ?? { status: 'failed', reason: 'not judged' };
  const kept = isKept(e);
  return {
    ref: e.label,
    status: d.status,
    digest: e.desc.digest,
    ...(d.policy !== undefined ? { policy: d.policy } : {}),
    ...(d.signer !== undefined ? { signer: d.signer } : {}),
    ...(d.reason !== undefined ? { reason: d.reason } : {}),
    objects: kept ? e.tally.objects.size : 0,
    newBytes: kept ? e.tally.newBytes : 0,
  };
}

/** Imports manifests and blobs of one layout, remembering what each record was before. */
class Importer {
  readonly #content: ContentStore;
  readonly #catalog: Catalog;
  readonly #dir: string;
  /** The referrers record of each subject (by recordId) → referrer descriptors by digest, with the entries that found them. */
  readonly #referrers = new Map<string, { ref: RecordRef & ObjectRef; found: Map<Digest, { desc: Descriptor; owners: Set<number> }> }>();
  /** recordId → the record, and what it was before this import wrote it. */
  readonly #prior = new Map<string, { ref: RecordRef; before: RecordSnapshot }>();

  constructor(store: { readonly content: ContentStore; readonly catalog: Catalog }, dir: string) {
    this.#content = store.content;
    this.#catalog = store.catalog;
    this.#dir = dir;
  }

  async manifest(upstream: string, repository: string, desc: Descriptor, tally: Tally, depth: number): Promise<void> {
    const bytes = await this.#readManifest(desc);
    const parsed = parseManifest(bytes, desc.mediaType, `${upstream}/${repository}@${desc.digest}`);
    if (parsed.kind === 'index') {
      if (depth >= MAX_INDEX_DEPTH) throw new SigilError({ code: 'MANIFEST_INVALID', message: `${desc.digest}: indexes nested deeper than ${MAX_INDEX_DEPTH}` });
      for (const child of parsed.children) {
        const there = await stat(blobPath(this.#dir, child.digest)).then((st) => st.isFile(), () => false);
        if (there) await this.manifest(upstream, repository, child, tally, depth + 1);
      }
    } else {
      for (const b of parsed.blobs) await this.#blob(upstream, repository, b, tally, desc.digest);
      if (parsed.subject !== undefined) {
        if (depth === 0) tally.subject = parsed.subject.digest;
        const ref = { kind: 'referrers', upstream, repository, digest: parsed.subject.digest } as const;
        const id = recordId(ref);
        const list = this.#referrers.get(id)?.found ?? new Map<Digest, { desc: Descriptor; owners: Set<number> }>();
        const found = list.get(desc.digest) ?? { desc: referrerDescriptor(desc.digest, desc.mediaType, bytes.length, parsed), owners: new Set<number>() };
        found.owners.add(tally.id);
        list.set(desc.digest, found);
        this.#referrers.set(id, { ref, found: list });
      }
    }
    if (!(await this.#content.has(desc.digest))) {
      tally.newBytes += bytes.length;
      tally.created.add(desc.digest);
    }
    tally.objects.add(desc.digest);
    tally.manifests.add(desc.digest);
    await this.#remember({ kind: 'manifest', upstream, repository, digest: desc.digest }, tally);
    await this.#catalog.putManifest(upstream, repository, desc.digest, desc.mediaType, bytes);
  }

  /** Did the store hold `digest` for this repository before this import (its manifest record, then)? */
  async storedBefore(upstream: string, repository: string, digest: Digest): Promise<boolean> {
    const prior = this.#prior.get(recordId({ kind: 'manifest', upstream, repository, digest }));
    if (prior !== undefined) return prior.before !== null && (await this.#content.has(digest));
    return (await this.#catalog.hasManifestRecord(upstream, repository, digest)) && (await this.#content.has(digest));
  }

  async putTag(upstream: string, repository: string, tag: string, desc: Descriptor, tally: Tally): Promise<void> {
    await this.#remember({ kind: 'tag', upstream, repository, tag }, tally);
    await this.#catalog.putTag(upstream, repository, tag, { digest: desc.digest, mediaType: desc.mediaType });
  }

  /**
   * Referrers records: what the catalog listed before this import (by digest) plus the referrers
   * found by entries `keep` accepts, sorted as `mirror` writes them; with none, as it was before.
   */
  async writeReferrers(keep: (owners: ReadonlySet<number>) => boolean): Promise<void> {
    for (const [id, { ref, found }] of this.#referrers) {
      if (!this.#prior.has(id)) this.#prior.set(id, { ref, before: await this.#catalog.snapshot(ref) });
      const prior = this.#prior.get(id)?.before;
      const wanted = [...found].filter(([, f]) => keep(f.owners));
      if (wanted.length === 0) {
        await this.#restore(id);
        continue;
      }
      const merged = new Map<string, unknown>();
      for (const d of Array.isArray(prior?.value) ? (prior.value as unknown[]) : []) {
        const digest = (d as { digest?: unknown } | null)?.digest;
        if (typeof digest === 'string') merged.set(digest, d);
      }
      for (const [digest, f] of wanted) merged.set(digest, f.desc);
      const list = [...merged].sort((a, b) => (a[0] < b[0] ? -1 : 1)).map(([, d]) => d);
      await this.#catalog.putReferrers(ref.upstream, ref.repository, ref.digest, list);
    }
  }

  /**
   * Takes out what was imported for `dropped` entries: catalog records set back to what they
   * were, objects this import stored removed; except what a `kept` entry reaches.
   */
  async takeOut(dropped: readonly Entry[], kept: readonly Entry[]): Promise<void> {
    const keptRecords = new Set(kept.flatMap((e) => [...e.tally.records]));
    const keptObjects = new Set(kept.flatMap((e) => [...e.tally.objects]));
    for (const r of new Set(dropped.flatMap((e) => [...e.tally.records]))) if (!keptRecords.has(r)) await this.#restore(r);
    for (const d of new Set(dropped.flatMap((e) => [...e.tally.created]))) if (!keptObjects.has(d)) await this.#content.remove(d);
  }

  async #remember(ref: RecordRef, tally: Tally): Promise<void> {
    const id = recordId(ref);
    tally.records.add(id);
    if (this.#prior.has(id)) return;
    this.#prior.set(id, { ref, before: await this.#catalog.snapshot(ref) });
  }

  async #restore(id: string): Promise<void> {
    const prior = this.#prior.get(id);
    if (prior !== undefined) await this.#catalog.restore(prior.ref, prior.before);
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

  async #blob(upstream: string, repository: string, d: Descriptor, tally: Tally, namedBy: Digest): Promise<void> {
    const store = this.#content;
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
        tally.created.add(d.digest);
      }
    }
    await this.#remember({ kind: 'blob', upstream, repository, digest: d.digest }, tally);
    await this.#catalog.noteBlob(upstream, repository, d.digest, namedBy);
  }
}

function messageOf(e: unknown): string {
  return isSigilError(e) ? `${e.code}: ${e.message}` : e instanceof Error ? e.message : String(e);
}
