import { defaultDeps, type AppDeps } from '../app.js';
import { BUILT_IN_SOURCE } from '../config/defaults.js';
import { formatProblems, loadConfig } from '../config/load.js';
import type { Config } from '../config/types.js';
import { isSigilError, messageOf, type SigilErrorCode } from '../errors.js';
import { ManifestGate } from '../gate/manifest-gate.js';
import { decide } from '../policy/decide.js';
import { indexChildDigests } from '../oci/manifest.js';
import { INDEX_MEDIA_TYPES } from '../oci/media-types.js';
import { resolveImageName, splitReference } from '../oci/image-name.js';
import { isReference } from '../oci/reference.js';
import { createLogger } from '../audit/logger.js';
import type { CliIo } from './io.js';
import { CommandError, parseArgs, UsageError } from './args.js';
import { registryBaseUrl } from '../upstream/scheme-probe.js';
import { AUTHORITY_BOOLEAN_FLAGS, AUTHORITY_VALUE_FLAGS, authorityFlags, configForFlags, type AuthorityFlags } from './verify-authority.js';
import { report, text, type Checked, type ImageRef } from './verify-report.js';
import { VERIFY_USAGE } from './usage.js';

export type { ImageRef } from './verify-report.js';

/** CONTRACT "Command line": the exit status of `sigil verify`. */
export const VERIFY_EXIT = { verified: 0, notVerified: 1, usage: 2, couldNotCheck: 3 } as const;

/**
 * Errors that mean the registry could not be asked, or did not answer as a registry does: the
 * image was not judged ("could not check", exit 3). A missing manifest or repository, or bytes
 * that do not match their digest, are answers about the image: not verified (exit 1).
 */
const COULD_NOT_CHECK: ReadonlySet<SigilErrorCode> = new Set([
  'UPSTREAM_UNREACHABLE',
  'UPSTREAM_TIMEOUT',
  'UPSTREAM_BAD_RESPONSE',
  'UPSTREAM_TOOMANYREQUESTS',
  'UPSTREAM_DENIED',
  'UPSTREAM_ERROR',
  'INTERNAL',
]);

/**
 * `host/repo:tag`, `host/repo@sha256:…`, `host/repo:tag@sha256:…`, or without a host for the
 * default upstream. The host must be a configured upstream's name or alias: `sigil verify`
 * contacts nothing else (without a config, the flags made IMAGE's registry the one upstream).
 */
export function parseImage(config: Config, image: string): ImageRef {
  const split = splitReference(image);
  if ('problem' in split) throw new UsageError(`'${image}': '${split.reference}' is not a digest`);
  let name = split.name;
  let indexTag: string | undefined;
  if (split.digest !== undefined) {
    // docker's grammar allows a tag before the digest: here it names the index the digest is a platform of
    const tagged = splitReference(name);
    if ('tag' in tagged && tagged.tag !== undefined) [name, indexTag] = [tagged.name, tagged.tag];
  }
  const reference = split.digest ?? split.tag ?? 'latest';
  const r = resolveImageName(config, name);
  if ('problem' in r) {
    switch (r.problem) {
      case 'unknown-registry':
        throw new CommandError(`'${image}': registry '${r.registry}' is not a configured upstream in ${config.source}`);
      case 'no-registry':
        throw new CommandError(`'${image}': no registry named and no defaultUpstream in ${config.source}`);
      case 'invalid-repository':
        throw new UsageError(`'${image}' is not a valid image reference`);
    }
  }
  if (!isReference(reference) || (indexTag !== undefined && !isReference(indexTag))) throw new UsageError(`'${image}' is not a valid image reference`);
  return { upstream: r.upstream.name, repository: r.repository, reference, ...(indexTag !== undefined ? { indexTag } : {}) };
}

/** `sigil verify IMAGE [flags]`; `argv` is what follows `verify`. */
export async function verifyCli(io: CliIo, argv: readonly string[]): Promise<number> {
  const a = parseArgs(argv, { values: ['config', ...AUTHORITY_VALUE_FLAGS], booleans: ['json', 'help', ...AUTHORITY_BOOLEAN_FLAGS] });
  if (a.flags.has('help')) return (io.stdout(VERIFY_USAGE), 0);
  if (a.positionals.length !== 1) throw new UsageError('expected exactly one IMAGE');
  const flags = authorityFlags(a);
  return verifyCommand(io, { image: a.positionals[0], config: a.flags.get('config') as string | undefined, json: a.flags.has('json'), ...(flags ? { flags } : {}) });
}

/** The gate `serve` uses, without a server; exit status per VERIFY_EXIT. */
export async function verifyCommand(io: CliIo, opts: { image: string; config?: string; json: boolean; flags?: AuthorityFlags }): Promise<number> {
  const res = await loadConfig({ path: opts.config, env: io.env, cwd: io.cwd });
  if (!res.ok) {
    io.stderr(formatProblems(res.problems, res.source) + '\n');
    return VERIFY_EXIT.usage;
  }
  let config = res.config;
  if (opts.flags !== undefined) {
    const found = config.source === BUILT_IN_SOURCE ? undefined : config;
    if (found !== undefined && opts.flags.allowHttpRegistry) throw new UsageError(`--allow-http-registry goes without a config (${found.source} says how each upstream is reached)`);
    const allowHttp = opts.flags.allowHttpRegistry;
    config = await configForFlags(opts.flags, opts.image, io.cwd, found, (host) => registryBaseUrl(host, allowHttp));
  }
  const ref = parseImage(config, opts.image);
  let deps: AppDeps;
  try {
    deps = await defaultDeps(config, { logger: createLogger('silent') });
  } catch (err) {
    io.stderr(`sigil: ${config.source}: ${(err as Error).message}\n`);
    return VERIFY_EXIT.usage;
  }
  const gate = new ManifestGate({ config, clients: deps.clients, metrics: deps.metrics, logger: deps.logger, verifier: deps.verifier });
  try {
    const checked = await check(gate, ref);
    io.stdout(opts.json ? `${JSON.stringify(report(ref, checked))}\n` : text(ref, checked));
    if (decide(checked.ev.policy, checked.ev).verification === 'verified') return VERIFY_EXIT.verified;
    return checked.ev.outcome?.kind === 'indeterminate' ? VERIFY_EXIT.couldNotCheck : VERIFY_EXIT.notVerified;
  } catch (e) {
    const code = isSigilError(e) && !COULD_NOT_CHECK.has(e.code) ? VERIFY_EXIT.notVerified : VERIFY_EXIT.couldNotCheck;
    const message = messageOf(e);
    if (opts.json) io.stdout(`${JSON.stringify({ image: opts.image, verified: false, checked: code !== VERIFY_EXIT.couldNotCheck, error: message })}\n`);
    else io.stderr(`sigil: ${opts.image}: ${code === VERIFY_EXIT.couldNotCheck ? 'could not check: ' : ''}${message}\n`);
    return code;
  } finally {
    deps.tuf?.close();
    await Promise.all([...deps.clients.values()].map((c) => c.close()));
    await deps.store?.content.close();
    await deps.hashes.close();
  }
}

/**
 * IMAGE judged as serve judges it. `repo:tag@digest` whose digest does not verify on its own:
 * the tag is judged too, and when it names a verified index listing the digest, the digest is
 * judged again — through that index, as serve lets a platform manifest through after its index.
 */
async function check(gate: ManifestGate, ref: ImageRef): Promise<Checked> {
  const target = { upstream: ref.upstream, repository: ref.repository, reference: ref.reference };
  const ev = await gate.evaluate(target);
  if (ref.indexTag === undefined || decide(ev.policy, ev).verification === 'verified') return { ev };
  const index = await gate.evaluate({ ...target, reference: ref.indexTag });
  const what = `the index of tag ${ref.indexTag} (${index.manifest.digest})`;
  if (!INDEX_MEDIA_TYPES.has(index.manifest.mediaType)) return { ev, indexNote: `tag ${ref.indexTag} names ${index.manifest.digest}, not an image index` };
  if (!indexChildDigests(index.manifest.bytes).includes(ev.manifest.digest)) return { ev, indexNote: `${what} does not list this manifest` };
  const d = decide(index.policy, index);
  if (d.verification !== 'verified') return { ev, indexNote: `${what} is not verified either: ${d.because ?? d.verification}` };
  const through = await gate.evaluate(target);
  if (decide(through.policy, through).verification !== 'verified') return { ev, indexNote: `${what} is verified, but does not vouch for this manifest under its policy` };
  return { ev: through, ...(ev.outcome !== undefined ? { own: ev.outcome } : {}) };
}
