import semver from 'semver';
import { parseDocument } from 'yaml';
import { join } from '../config/schema.js';
import type { Config, ConfigProblem } from '../config/types.js';
import { resolveImageName, splitReference } from '../oci/image-name.js';
import { isTag } from '../oci/reference.js';
import { parsePlatform, type Platform } from '../oci/platform.js';

/** One `images[]` entry of a mirror FILE, resolved against the config's upstreams. */
export interface MirrorImage {
  /** As written, for messages. */
  readonly image: string;
  /** Where in the FILE: `images[2]`. */
  readonly path: string;
  readonly upstream: string;
  readonly repository: string;
  readonly tags: readonly string[];
  /** The range as written, and compiled. */
  readonly semver?: { readonly text: string; readonly range: semver.Range };
  readonly latest?: number;
  readonly platforms?: readonly Platform[];
}

export type MirrorSpecResult = { ok: true; images: MirrorImage[] } | { ok: false; problems: ConfigProblem[] };

/** YAML anchors/aliases beyond this are refused ("billion laughs"); a mirror list uses a handful. */
const MAX_YAML_ALIASES = 100;
const IMAGE_KEYS = ['image', 'tags', 'semver', 'latest', 'platforms'] as const;

function describe(v: unknown): string {
  if (v === null || v === undefined) return 'nothing';
  if (Array.isArray(v)) return 'a list';
  if (typeof v === 'object') return 'a mapping';
  return typeof v === 'string' ? `the string ${JSON.stringify(v)}` : `the ${typeof v} ${String(v)}`;
}

function isMapping(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/**
 * `host/repo` (host a configured upstream's name), or `repo` on the default upstream;
 * docker.io's one-segment names get `library/`. A tag or digest is refused: tags are chosen
 * with `tags`, `semver` and `latest`.
 */
export function resolveImage(config: Config, image: string): { upstream: string; repository: string } | string {
  const split = splitReference(image);
  if ('problem' in split || split.digest !== undefined) return 'must name a repository, not a digest (list tags under `tags`)';
  if (split.tag !== undefined) return 'must name a repository without a tag (list tags under `tags`)';
  const r = resolveImageName(config, split.name);
  if (!('problem' in r)) return { upstream: r.upstream.name, repository: r.repository };
  switch (r.problem) {
    case 'unknown-registry':
      return `registry '${r.registry}' is not a configured upstream`;
    case 'no-registry':
      return 'names no registry and the config has no defaultUpstream';
    case 'invalid-repository':
      return `'${r.repository}' is not a valid repository name`;
  }
}

/**
 * Parses and validates a mirror FILE:
 * `images: [{ image, tags?, semver?, latest?, platforms? }]`, each entry selecting at least one
 * way. Every problem names its YAML path (`images[1].semver`).
 */
export function parseMirrorSpec(text: string, config: Config): MirrorSpecResult {
  const problems: ConfigProblem[] = [];
  const error = (path: string, message: string): void => void problems.push({ path, message, severity: 'error' });
  const doc = parseDocument(text, { uniqueKeys: true });
  for (const e of doc.errors) {
    const pos = e.linePos?.[0];
    error(pos ? `line ${pos.line}, column ${pos.col}` : '', e.message.split('\n')[0] ?? 'invalid YAML');
  }
  if (problems.length > 0) return { ok: false, problems };
  let root: unknown;
  try {
    root = doc.toJS({ maxAliasCount: MAX_YAML_ALIASES });
  } catch (e) {
    return { ok: false, problems: [{ path: '', message: (e as Error).message, severity: 'error' }] };
  }
  if (!isMapping(root)) return { ok: false, problems: [{ path: '', message: `must be a mapping with an 'images' list, got ${describe(root)}`, severity: 'error' }] };
  for (const k of Object.keys(root)) if (k !== 'images') error(join('', k), 'unknown key (expected images)');
  if (!Array.isArray(root.images) || root.images.length === 0) {
    error('images', root.images === undefined ? 'is required' : `must be a non-empty list, got ${describe(root.images)}`);
    return { ok: false, problems };
  }
  const images: MirrorImage[] = [];
  root.images.forEach((raw: unknown, i: number) => {
    const at = join('images', i);
    if (!isMapping(raw)) return error(at, `must be a mapping, got ${describe(raw)}`);
    for (const k of Object.keys(raw)) if (!(IMAGE_KEYS as readonly string[]).includes(k)) error(join(at, k), `unknown key (expected one of ${IMAGE_KEYS.join(', ')})`);
    let where: { upstream: string; repository: string } | undefined;
    const image = raw.image;
    if (typeof image !== 'string' || image === '') error(join(at, 'image'), image === undefined ? 'is required' : `must be a string like ghcr.io/acme/app, got ${describe(image)}`);
    else {
      const r = resolveImage(config, image);
      if (typeof r === 'string') error(join(at, 'image'), r);
      else where = r;
    }
    const tags: string[] = [];
    if (raw.tags !== undefined) {
      if (!Array.isArray(raw.tags)) error(join(at, 'tags'), `must be a list, got ${describe(raw.tags)}`);
      else
        raw.tags.forEach((t: unknown, j: number) => {
          // YAML reads 1.10 as the number 1.1: insist on quotes rather than guess
          if (typeof t !== 'string') error(join(join(at, 'tags'), j), `must be a string, got ${describe(t)}${typeof t === 'number' ? ' (quote it)' : ''}`);
          else if (!isTag(t)) error(join(join(at, 'tags'), j), `'${t}' is not a valid tag`);
          else if (!tags.includes(t)) tags.push(t);
        });
    }
    let range: MirrorImage['semver'];
    if (raw.semver !== undefined) {
      const text = raw.semver;
      const r = typeof text === 'string' ? semver.validRange(text) : null;
      if (typeof text !== 'string' || text.trim() === '') error(join(at, 'semver'), `must be a range like ">=1.2 <2", got ${describe(text)}`);
      else if (r === null) error(join(at, 'semver'), `'${text}' is not a valid semver range`);
      else range = { text, range: new semver.Range(text) };
    }
    let latest: number | undefined;
    if (raw.latest !== undefined) {
      if (typeof raw.latest !== 'number' || !Number.isSafeInteger(raw.latest) || raw.latest < 1) error(join(at, 'latest'), `must be a positive integer, got ${describe(raw.latest)}`);
      else latest = raw.latest;
    }
    let platforms: Platform[] | undefined;
    if (raw.platforms !== undefined) {
      if (!Array.isArray(raw.platforms) || raw.platforms.length === 0) error(join(at, 'platforms'), `must be a non-empty list like [linux/amd64], got ${describe(raw.platforms)}`);
      else {
        platforms = [];
        raw.platforms.forEach((p: unknown, j: number) => {
          const parsed = typeof p === 'string' ? parsePlatform(p) : undefined;
          if (parsed === undefined) error(join(join(at, 'platforms'), j), `must be os/arch[/variant] like linux/amd64, got ${describe(p)}`);
          else platforms?.push(parsed);
        });
      }
    }
    if (raw.tags === undefined && raw.semver === undefined && raw.latest === undefined) {
      error(at, 'selects no tags: give tags, semver or latest');
    }
    if (where) {
      images.push({
        image: image as string,
        path: at,
        ...where,
        tags,
        ...(range ? { semver: range } : {}),
        ...(latest !== undefined ? { latest } : {}),
        ...(platforms ? { platforms } : {}),
      });
    }
  });
  return problems.length > 0 ? { ok: false, problems } : { ok: true, images };
}
