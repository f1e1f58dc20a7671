import { createLogger } from '../audit/logger.js';
import { Metrics } from '../audit/metrics.js';
import type { Config } from '../config/types.js';
import { messageOf } from '../errors.js';
import { ManifestGate } from '../gate/manifest-gate.js';
import type { SignatureVerifier } from '../gate/verifier.js';
import type { Digest } from '../oci/digest.js';
import type { Descriptor } from '../oci/manifest.js';
import type { Registry } from '../oci/registry.js';
import type { Evaluation } from '../policy/evaluation.js';
import { storeOnly } from '../registry/compose.js';
import type { Catalog } from '../store/catalog.js';
import type { ObjectRef, RepositoryRef } from '../store/catalog-keys.js';
import type { ContentStore } from '../store/content-store.js';
import type { LayoutWriter, Tally } from './import-writer.js';
import type { RefName } from './oci-layout.js';
import { isCopied, judge, type MirrorStatus } from './run.js';
import { SignatureHomes, referrersIndexProblem, type SignatureTag } from './signature-data.js';

/**
 * verified / unverified / signature / denied / failed as `sigil mirror` reports them (run.ts
 * MirrorStatus); signature data (cosign and referrers tags, bundle referrers) is `signature` when
 * its content proves it is signature data, and follows the image it signs: denied when that image
 * is neither imported nor stored and passing (signature-data.ts).
 */
export type ImportStatus = MirrorStatus;

/**
 * The judging half of `sigil mirror --import` (import.ts): each imported entry judged by serve's
 * gate over the store alone, and signature data kept only with the image it signs.
 */

/** What judging an import reads: the store, the config and serve's trust material (verification reads nothing but the store). */
export interface JudgeDeps {
  readonly content: ContentStore;
  readonly catalog: Catalog;
  readonly config: Config;
  readonly verifier: SignatureVerifier;
  readonly now?: (() => number) | undefined;
}

export interface Decision {
  readonly status: ImportStatus;
  readonly reason?: string;
  readonly policy?: string;
  readonly signer?: string;
  readonly ev?: Evaluation;
}

export interface Entry {
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

export const isKept = (e: Entry): boolean => e.decision !== undefined && isCopied(e.decision.status);

/** The serve gate over the store alone: every configured upstream, and any other the layout names. */
export function storeGate(deps: JudgeDeps, entries: readonly Entry[]): ManifestGate {
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
export async function judgeEntries(gate: ManifestGate, entries: readonly Entry[]): Promise<void> {
  for (const e of entries) {
    if (e.decision !== undefined) continue; // failed while reading
    try {
      // By digest: the very bytes imported, whatever tag will name them.
      const target = { upstream: e.ref.upstream, repository: e.ref.repository, reference: e.desc.digest };
      const ev = await gate.evaluate(target);
      let j: Decision = judge(ev);
      let asReferrersIndex = false;
      const t = e.tagged;
      if (t !== undefined && !isCopied(j.status)) {
        if (t.as === 'referrers') {
          const problem = await referrersIndexProblem(gate, target, ev, t.subject, e.tally.manifests);
          asReferrersIndex = problem === undefined;
          if (problem !== undefined) j = { status: 'denied', reason: `tagged as the referrers index of ${t.subject}, but ${problem}` };
        } else {
          j = { status: 'denied', reason: `tagged as signature data of ${t.subject}, but not signature data${ev.notArtifact ? ` (${ev.notArtifact})` : ''}: ${j.reason}` };
        }
      }
      const subject = t?.subject ?? e.tally.subject;
      if (subject !== undefined && (j.status === 'signature' || j.status === 'unverified' || asReferrersIndex)) {
        e.sigOf = subject;
        const why = ev.basis === 'signature-artifact' || asReferrersIndex ? '' : ` (${j.reason})`;
        j = { status: 'signature', reason: `signature data of ${subject}${why}` };
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
export async function keepSignatureDataWithSubjects(entries: readonly Entry[], subjects: Subjects): Promise<void> {
  for (let changed = true; changed; ) {
    changed = false;
    const reachedBy = new Map<Digest, Entry[]>();
    for (const k of entries.filter(isKept)) {
      for (const d of new Set([k.desc.digest, ...k.tally.manifests])) reachedBy.set(d, [...(reachedBy.get(d) ?? []), k]);
    }
    for (const e of entries) {
      if (e.sigOf === undefined || !isKept(e)) continue;
      if (subjects.keptByImport(e, reachedBy.get(e.sigOf) ?? []) || (await subjects.storedAndPassing(e))) continue;
      e.decision = { status: 'denied', reason: `signature data of ${e.sigOf}, which is not imported, nor stored and passing, for ${e.ref.upstream}/${e.ref.repository}` };
      changed = true;
    }
  }
}

/** Where the subject of signature data is: among the kept entries, or stored before this import. */
export class Subjects {
  readonly #gate: ManifestGate;
  readonly #writer: LayoutWriter;
  readonly #homes: SignatureHomes;
  readonly #catalog: Catalog;
  /** Objects this import stored: not stored before it, whatever records say. */
  readonly #created: ReadonlySet<Digest>;
  readonly #passing = new Map<string, Promise<boolean>>();
  #manifestRecords: Promise<ObjectRef[]> | undefined;

  constructor(deps: JudgeDeps, gate: ManifestGate, writer: LayoutWriter, entries: readonly Entry[]) {
    this.#gate = gate;
    this.#writer = writer;
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
      if (!(await this.#writer.storedBefore(upstream, repository, subject))) continue;
      try {
        const ev = await this.#gate.evaluate({ upstream, repository, reference: subject });
        if (isCopied(judge(ev).status)) return true;
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
