import { isKept, judgeEntries, keepSignatureDataWithSubjects, storeGate, Subjects, type Entry, type ImportStatus, type JudgeDeps } from './import-judge.js';
import { LayoutWriter, type Tally } from './import-writer.js';
import { SigilError, messageOf } from '../errors.js';
import { descriptor, type Descriptor } from '../oci/manifest.js';
import { REF_NAME, checkLayoutFile, parseRefName, readIndex, type IndexDescriptor, type RefName } from './oci-layout.js';
import { upstreamRoutedBy } from '../oci/image-name.js';
import { signatureTagOf } from './signature-data.js';

export type { ImportStatus } from './import-judge.js';

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

/** The content store, its catalog, the config, and serve's trust material (app.ts loadVerifier). */
export type ImportDeps = JudgeDeps;

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
  const writer = new LayoutWriter(deps, dir);
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
    const parsed = typeof ref === 'string' ? underUpstreamName(deps, parseRefName(ref)) : undefined;
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
      await writer.manifest(parsed.upstream, parsed.repository, desc, tally, 0);
      // Signature data's tags now: verification looks them up (taken out again unless kept). An image's tag only once it passed.
      if (tagged && 'tag' in parsed) await writer.putTag(parsed.upstream, parsed.repository, parsed.tag, desc, tally);
    } catch (e) {
      entry.decision = { status: 'failed', reason: messageOf(e) };
    }
    slots.push(entry);
    entries.push(entry);
  }
  await writer.writeReferrers(() => true);

  const gate = storeGate(deps, entries);
  await judgeEntries(gate, entries);
  const subjects = new Subjects(deps, gate, writer, entries);
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
  await writer.takeOut(entries.filter((e) => !isKept(e)).map((e) => e.tally), entries.filter(isKept).map((e) => e.tally));
  const kept = new Set(entries.filter(isKept).map((e) => e.tally.id));
  await writer.writeReferrers((owners) => [...owners].some((id) => kept.has(id)));

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

/** A ref name written with an upstream's alias is filed under the upstream's name, as serve files it. */
function underUpstreamName(deps: ImportDeps, ref: RefName | undefined): RefName | undefined {
  const upstream = ref && upstreamRoutedBy(deps.config, ref.upstream);
  return ref && upstream && upstream.name !== ref.upstream ? { ...ref, upstream: upstream.name } : ref;
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
