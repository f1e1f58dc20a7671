import type { Config, UpstreamConfig } from '../config/types.js';
import { SigilError } from '../errors.js';
import { isDigest } from './digest.js';
import { isRepositoryName } from './reference.js';

/**
 * The one resolver of image names to a configured upstream and the repository there. Two
 * spellings reach it, and they differ on purpose in one point:
 * - an image reference (`sigil verify IMAGE`, a mirror FILE's `image`): `[host[:port]/]repo`
 *   with `:tag` or `@digest`; a first component that looks like a registry host (docker's
 *   reference grammar: it holds `.` or `:` or is `localhost`) names a registry, and one that is
 *   not a configured upstream is refused;
 * - a `/v2/<name>` path (CONTRACT "Routing of /v2/<path>"): `ns=` naming a configured upstream,
 *   else a first segment equal to an upstream's name (stripped), else `defaultUpstream`; the
 *   client chose the registry by talking to sigil, so an unconfigured host-looking first segment
 *   is part of the repository on the default upstream, never a host.
 * Both put Docker Hub's official images under `library/` the same way (`hubRepository`), and both
 * take an upstream's `aliases` as names of it (`upstreamRoutedBy`): what they resolve to is the
 * upstream itself, so policies, the store and answers see its `name` whatever the client wrote.
 */

/** Docker Hub's registry hosts: an upstream reached at one of them is Docker Hub whatever its name. */
export const DOCKER_HUB_HOSTS: ReadonlySet<string> = new Set(['registry-1.docker.io', 'index.docker.io']);

/** Is this upstream Docker Hub: named `docker.io`, or reached at one of DOCKER_HUB_HOSTS? */
export function isDockerHub(u: UpstreamConfig): boolean {
  return u.name === 'docker.io' || DOCKER_HUB_HOSTS.has(u.url.hostname);
}

/** CONTRACT: on Docker Hub a one-segment repository is an official image, under `library/`. */
export function hubRepository(u: UpstreamConfig, repository: string): string {
  return isDockerHub(u) && !repository.includes('/') ? `library/${repository}` : repository;
}

/** The configured upstream whose name (a host, with its port) is `name`. */
export function upstreamNamed(config: Config, name: string): UpstreamConfig | undefined {
  return config.upstreams.find((u) => u.name === name);
}

/** The configured upstream that `name` routes to: its name or one of its aliases (config validation keeps them unique). */
export function upstreamRoutedBy(config: Config, name: string): UpstreamConfig | undefined {
  return config.upstreams.find((u) => u.name === name || u.aliases.includes(name));
}

/** docker's reference grammar: a first component holding `.` or `:`, or `localhost`, is a registry host. */
export function looksLikeHost(component: string): boolean {
  return /[.:]/.test(component) || component === 'localhost';
}

/** An image reference split into its name and its tag or digest, as written (nothing checked but the digest). */
export type SplitReference =
  | { readonly name: string; readonly tag?: string; readonly digest?: string }
  | { readonly problem: 'not-a-digest'; readonly reference: string };

/** `name[:tag]` or `name@digest` (a tag before `@` stays part of the name). */
export function splitReference(image: string): SplitReference {
  const at = image.indexOf('@');
  if (at >= 0) {
    const digest = image.slice(at + 1);
    return isDigest(digest) ? { name: image.slice(0, at), digest } : { problem: 'not-a-digest', reference: digest };
  }
  const colon = image.lastIndexOf(':');
  if (colon > image.lastIndexOf('/')) return { name: image.slice(0, colon), tag: image.slice(colon + 1) };
  return { name: image };
}

export interface ResolvedName {
  readonly upstream: UpstreamConfig;
  /** The repository at the upstream: host stripped, `library/` added on Docker Hub. */
  readonly repository: string;
}

export type NameProblem =
  | { readonly problem: 'unknown-registry'; readonly registry: string }
  | { readonly problem: 'no-registry' }
  | { readonly problem: 'invalid-repository'; readonly upstream: UpstreamConfig; readonly repository: string };

/** The name of an image reference (without tag or digest): `host/repo` on a configured upstream, or `repo` on the default one. */
export function resolveImageName(config: Config, name: string): ResolvedName | NameProblem {
  const slash = name.indexOf('/');
  const first = slash > 0 ? name.slice(0, slash) : '';
  let upstream = upstreamRoutedBy(config, first);
  let repository = name;
  if (upstream !== undefined) repository = name.slice(slash + 1);
  else if (looksLikeHost(first)) return { problem: 'unknown-registry', registry: first };
  else if (config.defaultUpstream !== undefined) upstream = upstreamNamed(config, config.defaultUpstream);
  if (upstream === undefined) return { problem: 'no-registry' };
  repository = hubRepository(upstream, repository);
  if (!isRepositoryName(repository)) return { problem: 'invalid-repository', upstream, repository };
  return { upstream, repository };
}

/**
 * The name of a `/v2/<name>/…` path, with the `ns=` query parameter containerd sends. An `ns=`
 * naming a host that is not configured is refused (404 NAME_UNKNOWN) rather than falling through
 * to the default upstream: answering `quay.io/x/y` with docker.io's `x/y` would hand the client a
 * different image under the name it asked for.
 */
export function resolvePathName(config: Config, name: string, ns: string | undefined): ResolvedName {
  let upstream: UpstreamConfig | undefined;
  let repository = name;
  if (ns !== undefined && ns !== '') {
    upstream = upstreamRoutedBy(config, ns);
    if (!upstream) throw new SigilError({ code: 'NAME_UNKNOWN', message: `registry '${ns}' (from ns=) is not a configured upstream` });
  } else {
    const slash = name.indexOf('/');
    const first = slash > 0 ? upstreamRoutedBy(config, name.slice(0, slash)) : undefined;
    if (first) {
      upstream = first;
      repository = name.slice(slash + 1);
    } else if (config.defaultUpstream !== undefined) {
      upstream = upstreamNamed(config, config.defaultUpstream);
    }
    if (!upstream) throw new SigilError({ code: 'NAME_UNKNOWN', message: `no configured upstream for '${name}' and no defaultUpstream` });
  }
  repository = hubRepository(upstream, repository);
  if (!isRepositoryName(repository)) throw new SigilError({ code: 'NAME_INVALID', message: `invalid repository name '${repository}'` });
  return { upstream, repository };
}
