import type { Logger } from 'pino';
import type { Metrics } from '../audit/metrics.js';
import type { Policy } from '../config/types.js';
import { SigilError, causeOf, isSigilError } from '../errors.js';
import type { Digest } from '../oci/digest.js';
import type { Registry } from '../oci/registry.js';
import type { ManifestTarget } from '../policy/evaluation.js';
import type { Keep } from '../registry/keep.js';
import type { Recording } from '../registry/recording.js';
import { discoverSignatures, type SignatureLocation } from '../signatures/discover.js';
import type { Outcome, SignatureCheck } from '../verify/types.js';
import { DecisionDeadline } from './decision-deadline.js';
import type { SignatureVerifier } from './verifier.js';
import type { VerificationSlots } from './verification-slots.js';

/** The registry of a configured upstream; NAME_UNKNOWN for any other name. */
export function clientNamed(clients: ReadonlyMap<string, Registry>, name: string): Registry {
  const c = clients.get(name);
  if (!c) throw new SigilError({ code: 'NAME_UNKNOWN', message: `upstream '${name}' is not configured` });
  return c;
}

/**
 * One verification of a manifest's signatures under the decision's deadline: a slot of the
 * signatures' upstream first (waiting counts against the deadline), then discovery (recorded for
 * the store when there is one) and verification; past the deadline, `indeterminate`. Never
 * "verified" on trouble, never a crash.
 */
export class SignatureVerification {
  readonly #clients: ReadonlyMap<string, Registry>;
  readonly #verifier: SignatureVerifier;
  readonly #keeper: Keep | null;
  readonly #slots: VerificationSlots;
  readonly #metrics: Metrics;
  readonly #log: Logger;
  readonly #deadlineMs: number;

  constructor(deps: {
    clients: ReadonlyMap<string, Registry>;
    verifier: SignatureVerifier;
    keeper: Keep | null;
    slots: VerificationSlots;
    metrics: Metrics;
    logger: Logger;
    /** The deadline of a verification that does not continue a decision's own. */
    deadlineMs: number;
  }) {
    this.#clients = deps.clients;
    this.#verifier = deps.verifier;
    this.#keeper = deps.keeper;
    this.#slots = deps.slots;
    this.#metrics = deps.metrics;
    this.#log = deps.logger;
    this.#deadlineMs = deps.deadlineMs;
  }

  /** Verifies `digest`'s signatures under `started` (the decision's deadline) or a deadline of its own. */
  async verify(target: ManifestTarget, digest: Digest, policy: Policy, started: DecisionDeadline | undefined): Promise<Outcome> {
    const t0 = performance.now();
    let upstream = target.upstream;
    try {
      upstream = this.#signatureLocation(target, policy).registry.name;
    } catch {
      // #verifyNow reports it
    }
    const deadline = started ?? new DecisionDeadline(this.#deadlineMs, '');
    const indeterminate = (cause: string): Outcome => {
      const outcome: Outcome = { kind: 'indeterminate', cause, checks: [] };
      this.#counted(outcome, policy, t0);
      return outcome;
    };
    try {
      // The decision's deadline passed before it came to its signatures (reading an artifact's
      // blobs, or waiting for another process's verdict).
      if (deadline.signal.aborted) return indeterminate(causeOf(deadline.signal.reason));
      deadline.doing = `signatures of ${digest} (upstream ${upstream}) not verified`;
      let release: () => void;
      try {
        release = await this.#slots.acquire(upstream, deadline.signal);
      } catch (e) {
        return indeterminate(`${causeOf(e)}, waiting for a verification slot`);
      }
      try {
        return await this.#verifyNow(target, digest, policy, deadline.signal);
      } finally {
        release();
      }
    } finally {
      if (started === undefined) deadline.clear();
    }
  }

  async #verifyNow(target: ManifestTarget, digest: Digest, policy: Policy, signal: AbortSignal): Promise<Outcome> {
    const t0 = performance.now();
    let outcome: Outcome;
    let recording: Recording | undefined;
    try {
      const where = this.#signatureLocation(target, policy);
      const rec = this.#keeper?.record(where.registry);
      const attestations = (policy.attestations ?? []).length > 0;
      const found = await discoverSignatures(rec ? { ...where, registry: rec.registry } : where, digest, { signal, attestations });
      recording = rec?.recording;
      const rejected: SignatureCheck[] = found.rejected.map((r) => ({ source: r.source, ok: false, reason: r.reason }));
      if (found.candidates.length === 0) {
        outcome = rejected.length > 0 ? { kind: 'invalid', checks: rejected } : { kind: 'unsigned', checks: [] };
      } else {
        // Offline and CPU-bound (bounded by MAX_CANDIDATES): it ends on its own, holding its slot.
        const o = await this.#verifier.verify([...found.candidates, ...found.attestations], { digest }, policy);
        outcome = rejected.length > 0 ? { ...o, checks: [...o.checks, ...rejected] } : o;
      }
      // Past the deadline the outcome is indeterminate, whatever came of it.
      signal.throwIfAborted();
      if (outcome.kind !== 'verified' && found.failures.length > 0) {
        outcome = { kind: 'indeterminate', cause: found.failures.join('; '), checks: outcome.checks };
      }
    } catch (e) {
      // Could not look: upstream or trust trouble. Never "verified", never a crash.
      const cause = isSigilError(e) ? `${e.code}: ${e.message}` : `unexpected error: ${String(e)}`;
      if (!isSigilError(e)) this.#log.error({ err: e, digest }, 'verification failed unexpectedly');
      outcome = { kind: 'indeterminate', cause, checks: [] };
    }
    // Signature data is kept with the image it signs: when the image itself may be kept.
    if (recording && this.#keeper) await this.#keeper.keepSignatures(recording, digest, { policy, basis: 'signature', outcome });
    this.#counted(outcome, policy, t0);
    return outcome;
  }

  #counted(outcome: Outcome, policy: Policy, t0: number): void {
    this.#metrics.verifications.inc({ outcome: outcome.kind, policy: policy.name });
    this.#metrics.verificationDuration.observe({ outcome: outcome.kind }, (performance.now() - t0) / 1000);
  }

  /** The image's repository, or the policy's signatureRepository ("<upstream>/<repo>" or a repo on the same upstream). */
  #signatureLocation(target: ManifestTarget, policy: Policy): SignatureLocation {
    const sr = policy.signatureRepository;
    if (sr === undefined) return { registry: clientNamed(this.#clients, target.upstream), repository: target.repository };
    const slash = sr.indexOf('/');
    const named = slash > 0 ? this.#clients.get(sr.slice(0, slash)) : undefined;
    if (named) return { registry: named, repository: sr.slice(slash + 1) };
    return { registry: clientNamed(this.#clients, target.upstream), repository: sr };
  }
}
