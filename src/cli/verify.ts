import { defaultDeps, type AppDeps } from '../app.js';
import { formatProblems, loadConfig } from '../config/load.js';
import type { Config } from '../config/types.js';
import { isSigilError } from '../errors.js';
import { ManifestGate } from '../gate/manifest-gate.js';
import { decide, quorumReasons } from '../policy/decide.js';
import type { Evaluation } from '../policy/evaluation.js';
import { resolveImageName, splitReference } from '../oci/image-name.js';
import { isReference } from '../oci/reference.js';
import { signerHeader } from '../verify/types.js';
import { createLogger } from '../audit/logger.js';
import type { CliIo } from './io.js';
import { UsageError } from './args.js';

export interface ImageRef {
  readonly upstream: string;
  readonly repository: string;
  readonly reference: string;
}

/**
 * `host/repo:tag`, `host/repo@sha256:…`, or without a host for the default upstream.
 * The host must be a configured upstream's name: `sigil verify` contacts nothing else.
 */
export function parseImage(config: Config, image: string): ImageRef {
  const split = splitReference(image);
  if ('problem' in split) throw new UsageError(`'${image}': '${split.reference}' is not a digest`);
  const reference = split.digest ?? split.tag ?? 'latest';
  const r = resolveImageName(config, split.name);
  if ('problem' in r) {
    switch (r.problem) {
      case 'unknown-registry':
        throw new UsageError(`'${image}': registry '${r.registry}' is not a configured upstream`);
      case 'no-registry':
        throw new UsageError(`'${image}': no registry named and no defaultUpstream configured`);
      case 'invalid-repository':
        throw new UsageError(`'${image}' is not a valid image reference`);
    }
  }
  if (!isReference(reference)) throw new UsageError(`'${image}' is not a valid image reference`);
  return { upstream: r.upstream.name, repository: r.repository, reference };
}

/** `sigil verify IMAGE`: the gate `serve` uses, without a server. 0 verified, 1 not, 2 usage/config. */
export async function verifyCommand(io: CliIo, opts: { image: string; config?: string; json: boolean }): Promise<number> {
  const res = await loadConfig({ path: opts.config, env: io.env, cwd: io.cwd });
  if (!res.ok) {
    io.stderr(formatProblems(res.problems, res.source) + '\n');
    return 2;
  }
  const config = res.config;
  const ref = parseImage(config, opts.image);
  let deps: AppDeps;
  try {
    deps = await defaultDeps(config, { logger: createLogger('silent') });
  } catch (err) {
    io.stderr(`sigil: ${config.source}: ${(err as Error).message}\n`);
    return 2;
  }
  const gate = new ManifestGate({ config, clients: deps.clients, metrics: deps.metrics, logger: deps.logger, verifier: deps.verifier });
  try {
    const ev = await gate.evaluate(ref);
    const verified = decide(ev.policy, ev).verification === 'verified';
    io.stdout(opts.json ? `${JSON.stringify(report(ref, ev))}\n` : text(ref, ev));
    return verified ? 0 : 1;
  } catch (e) {
    const message = isSigilError(e) ? `${e.code}: ${e.message}` : String(e);
    if (opts.json) io.stdout(`${JSON.stringify({ image: opts.image, verified: false, error: message })}\n`);
    else io.stderr(`sigil: ${opts.image}: ${message}\n`);
    return 1;
  } finally {
    await Promise.all([...deps.clients.values()].map((c) => c.close()));
    await deps.store?.content.close();
    await deps.hashes.close();
  }
}

function report(ref: ImageRef, ev: Evaluation) {
  const o = ev.outcome;
  const d = decide(ev.policy, ev);
  return {
    image: `${ref.upstream}/${ref.repository}`,
    reference: ref.reference,
    digest: ev.manifest.digest,
    policy: ev.policy?.name ?? null,
    mode: ev.policy?.mode ?? null,
    verified: d.verification === 'verified',
    outcome: o?.kind ?? (ev.basis === 'no-policy' ? 'no-policy' : 'skipped'),
    signer: d.signer ?? null,
    viaIndex: ev.index ?? null,
    cause: o?.kind === 'indeterminate' ? o.cause : null,
    signatures: (o?.checks ?? []).map((c) => (c.ok ? { source: c.source, ok: true, signer: signerHeader(c.signer) } : { source: c.source, ok: false, reason: c.reason })),
  };
}

function text(ref: ImageRef, ev: Evaluation): string {
  const r = report(ref, ev);
  const head = `${r.image}@${r.digest} (${ref.reference})`;
  const quorum = ev.outcome?.kind === 'verified' || ev.outcome?.kind === 'invalid' ? ev.outcome.quorum : undefined;
  const counted = quorum ? quorumReasons(quorum).map((q) => `\n  ${q}`).join('') : '';
  if (r.verified) return `verified: ${head}\n  policy: ${r.policy}\n  signer: ${r.signer}${r.viaIndex ? `\n  via index: ${r.viaIndex}` : ''}${counted}\n`;
  const lines = [`NOT verified: ${head}`];
  const d = decide(ev.policy, ev);
  if (d.verification === 'skipped') lines.push(`  ${ev.basis === 'signature-artifact' ? 'this is ' : ''}${d.because}`);
  else lines.push(`  policy: ${r.policy} (${r.mode})`, `  outcome: ${r.outcome}${r.cause ? `: ${r.cause}` : ''}${counted}`);
  if (r.outcome === 'unsigned') lines.push('  no signature found');
  for (const s of r.signatures) lines.push(`  ${s.source}: ${s.ok ? `verified by ${s.signer}` : s.reason}`);
  return `${lines.join('\n')}\n`;
}
