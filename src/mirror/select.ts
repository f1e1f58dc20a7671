import semver from 'semver';
import type { Registry } from '../oci/registry.js';
import { MAX_TAG_PAGES, TAG_PAGE_SIZE } from './limits.js';
import type { MirrorImage } from './spec.js';

/** Why a tag was selected, for the progress output. */
export type SelectedBy = 'tags' | 'semver' | 'latest';

export interface SelectedTag {
  readonly tag: string;
  readonly by: readonly SelectedBy[];
}

/**
 * The version a tag names: strict semver, with an optional leading `v` (v1.3.0); else null.
 * An OCI tag cannot hold `+`, so `helm push` tags chart version 0.2.0+build.7 as
 * 0.2.0_build.7, and helm (and Flux, for charts) reads `_` back as `+`: so does this.
 */
export function tagVersion(tag: string): semver.SemVer | null {
  return semver.parse(tag.replaceAll('_', '+'), { loose: false });
}

/**
 * The tags an entry selects from the upstream's `available` tags: the explicit ones (even
 * when not listed: a missing tag is then reported as failed), every semver tag in `semver`'s
 * range (prereleases only when the range names one, as npm does), and the `latest` N highest
 * release versions. Explicit tags first, then by descending version.
 */
export function selectTags(entry: Pick<MirrorImage, 'tags' | 'semver' | 'latest'>, available: readonly string[]): SelectedTag[] {
  const by = new Map<string, SelectedBy[]>();
  const add = (tag: string, why: SelectedBy): void => {
    const list = by.get(tag) ?? [];
    if (!list.includes(why)) list.push(why);
    by.set(tag, list);
  };
  for (const t of entry.tags) add(t, 'tags');
  const versioned = available
    .map((tag) => ({ tag, v: tagVersion(tag) }))
    .filter((x): x is { tag: string; v: semver.SemVer } => x.v !== null)
    // highest first; equal versions (1.3.0 and v1.3.0) in tag order, so the choice is stable
    .sort((a, b) => semver.rcompare(a.v, b.v) || (a.tag < b.tag ? -1 : a.tag > b.tag ? 1 : 0));
  if (entry.semver) {
    for (const { tag, v } of versioned) if (entry.semver.range.test(v)) add(tag, 'semver');
  }
  if (entry.latest !== undefined) {
    for (const { tag } of versioned.filter((x) => x.v.prerelease.length === 0).slice(0, entry.latest)) add(tag, 'latest');
  }
  const rank = new Map(versioned.map((x, i) => [x.tag, i]));
  return [...by]
    .map(([tag, why]) => ({ tag, by: why }))
    .sort((a, b) => {
      const ea = a.by.includes('tags') ? 0 : 1;
      const eb = b.by.includes('tags') ? 0 : 1;
      if (ea !== eb) return ea - eb;
      if (ea === 0) return entry.tags.indexOf(a.tag) - entry.tags.indexOf(b.tag);
      return (rank.get(a.tag) ?? 0) - (rank.get(b.tag) ?? 0);
    });
}

/** Every tag of a repository, following n/last pagination (distribution-spec "Listing Tags"). */
export async function listAllTags(client: Registry, repository: string): Promise<string[]> {
  const all: string[] = [];
  let last: string | undefined;
  for (let page = 0; page < MAX_TAG_PAGES; page++) {
    const res = await client.listTags(repository, { n: TAG_PAGE_SIZE, ...(last !== undefined ? { last } : {}) });
    all.push(...res.tags);
    // An upstream that ignored n/last sent everything at once.
    if (!res.upstreamPaginated || res.tags.length < TAG_PAGE_SIZE) break;
    const next = res.tags[res.tags.length - 1];
    if (next === undefined || next === last) break;
    last = next;
  }
  return [...new Set(all)];
}
