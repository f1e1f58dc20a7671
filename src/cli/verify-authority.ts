import { compileConfig } from '../config/compile.js';
import { REGISTRY_HOST, validateConfig } from '../config/schema.js';
import type { Config, ConfigProblem } from '../config/types.js';
import { looksLikeHost, splitReference } from '../oci/image-name.js';
import { CommandError, UsageError, type ParsedArgs } from './args.js';

/**
 * The cosign-style flags of `sigil verify` (CONTRACT "Command line"): `--key FILE`, or
 * `--certificate-identity[-regexp]` with `--certificate-oidc-issuer[-regexp]`, with
 * `--trusted-root FILE`, `--allow-http-registry` and cosign's `--insecure-ignore-tlog`. They are
 * the one authority of the check: a policy of their own (mode enforce, every image) replaces the
 * config's policies; without a config, IMAGE's registry becomes the one upstream. The policy and
 * the upstream go through the config's own validation and compilation (schema.ts, compile.ts),
 * so a key or a regexp is checked as it would be in a config file.
 */

export const AUTHORITY_VALUE_FLAGS = [
  'key',
  'certificate-identity',
  'certificate-identity-regexp',
  'certificate-oidc-issuer',
  'certificate-oidc-issuer-regexp',
  'trusted-root',
] as const;
export const AUTHORITY_BOOLEAN_FLAGS = ['allow-http-registry', 'insecure-ignore-tlog'] as const;

/** The name of the policy the flags make: shown as the policy in the report. */
export const FLAGS_POLICY = 'command-line';
/** Docker Hub's registry API host, for an IMAGE without a host (or `docker.io/…`) and no config. */
const DOCKER_HUB = { name: 'docker.io', url: 'https://registry-1.docker.io' };

export interface AuthorityFlags {
  /** The authority as a config's `policies[].authorities[]` entry. */
  readonly authority: Record<string, unknown>;
  readonly trustedRoot?: string;
  readonly allowHttpRegistry: boolean;
}

/** The authority the flags name, or undefined when none is given; a contradictory set is a UsageError. */
export function authorityFlags(a: ParsedArgs): AuthorityFlags | undefined {
  const v = (name: (typeof AUTHORITY_VALUE_FLAGS)[number]): string | undefined => a.flags.get(name) as string | undefined;
  const [key, id, idRe, issuer, issuerRe] = [v('key'), v('certificate-identity'), v('certificate-identity-regexp'), v('certificate-oidc-issuer'), v('certificate-oidc-issuer-regexp')];
  const keyless = [id, idRe, issuer, issuerRe].some((x) => x !== undefined);
  const ignoreTlog = a.flags.has('insecure-ignore-tlog');
  if (key === undefined && !keyless) {
    const stray = ['trusted-root', ...AUTHORITY_BOOLEAN_FLAGS].find((f) => a.flags.has(f));
    if (stray !== undefined) throw new UsageError(`--${stray} goes with --key or --certificate-identity[-regexp]`);
    return undefined;
  }
  if (key !== undefined && keyless) throw new UsageError('give either --key or the --certificate-* flags, not both');
  const common = { ...(v('trusted-root') !== undefined ? { trustedRoot: v('trusted-root') } : {}), allowHttpRegistry: a.flags.has('allow-http-registry') };
  if (key !== undefined) return { authority: { key, tlog: ignoreTlog ? 'ignore' : 'require' }, ...common };
  if (ignoreTlog) throw new UsageError('--insecure-ignore-tlog goes with --key (a keyless certificate needs its transparency log entry)');
  if ((id === undefined) === (idRe === undefined)) throw new UsageError('keyless verification needs one of --certificate-identity or --certificate-identity-regexp');
  if ((issuer === undefined) === (issuerRe === undefined)) throw new UsageError('keyless verification needs one of --certificate-oidc-issuer or --certificate-oidc-issuer-regexp');
  const subject = id !== undefined ? { subject: id } : { subjectRegExp: idRe };
  const iss = issuer !== undefined ? { issuer } : { issuerRegExp: issuerRe };
  return { authority: { keyless: { ...iss, ...subject } }, ...common };
}

/** Which flag (or IMAGE) a problem of the config made from the flags is about. */
function flagOf(path: string): string {
  if (path.startsWith('trust.')) return '--trusted-root';
  if (path.startsWith('upstreams')) return "IMAGE's registry";
  if (path.endsWith('.key')) return '--key';
  const keyless: Record<string, string> = { subject: '--certificate-identity', subjectRegExp: '--certificate-identity-regexp', issuer: '--certificate-oidc-issuer', issuerRegExp: '--certificate-oidc-issuer-regexp' };
  return keyless[path.slice(path.lastIndexOf('.') + 1)] ?? path;
}

/**
 * The policy (and trust) of the flags over `base` (a config found by the lookup order), or, with
 * no config (`base` undefined), a config of their own whose one upstream is IMAGE's registry at
 * `registryUrl`. Problems (an unreadable key, a bad regexp) are a CommandError naming the flag.
 */
export async function configForFlags(f: AuthorityFlags, image: string, cwd: string, base: Config | undefined, registryUrl: (host: string) => Promise<string>): Promise<Config> {
  // With a config only the policy (and trust) are taken: its upstream is the schema's placeholder.
  let upstream: { name: string; url: string } = DOCKER_HUB;
  if (base === undefined) {
    const host = registryOf(image);
    if (!REGISTRY_HOST.test(host)) throw new CommandError(`'${image}': '${host}' is not a registry host (lowercase, with an optional port)`);
    upstream = host === DOCKER_HUB.name ? DOCKER_HUB : { name: host, url: `https://${host}` };
  }
  let own = await compileFlags(f, upstream, cwd);
  if (base !== undefined) return { ...base, policies: own.policies, trust: f.trustedRoot !== undefined ? own.trust : base.trust };
  // Contacted only once the flags checked out (--allow-http-registry probes it).
  const url = upstream === DOCKER_HUB ? DOCKER_HUB.url : await registryUrl(upstream.name);
  if (url !== upstream.url) own = await compileFlags(f, { ...upstream, url }, cwd);
  return own;
}

/** The flags' config, through the config's validation and compilation; problems name the flag. */
async function compileFlags(f: AuthorityFlags, upstream: { name: string; url: string }, cwd: string): Promise<Config> {
  const doc = {
    upstreams: [upstream],
    defaultUpstream: upstream.name,
    trust: { trustedRoot: [f.trustedRoot ?? 'public-good'] },
    policies: [{ name: FLAGS_POLICY, match: ['**'], mode: 'enforce', authorities: [f.authority] }],
  };
  const { spec, problems } = validateConfig(doc);
  const compiled = await compileConfig(spec, { source: 'the command line', baseDir: cwd });
  // The regexps are the user's as written: anchoring warnings are about configs other tools read.
  const errors = [...problems, ...compiled.problems].filter((p) => p.severity === 'error');
  if (errors.length > 0 || compiled.config === undefined) throw new CommandError(errors.map(flagProblem).join('\n'));
  return compiled.config;
}

function flagProblem(p: ConfigProblem): string {
  return `${flagOf(p.path)}: ${p.message}`;
}

/** The registry host of an image reference, as docker reads it: a first component that looks like a host, else docker.io. */
export function registryOf(image: string): string {
  const split = splitReference(image);
  const name = 'problem' in split ? image : split.name;
  const slash = name.indexOf('/');
  const first = slash > 0 ? name.slice(0, slash) : '';
  return looksLikeHost(first) ? first : DOCKER_HUB.name;
}
