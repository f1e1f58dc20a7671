import { isDigest } from './digest.js';

// distribution-spec "Pulling manifests": <name> and <reference> grammar.
const NAME_COMPONENT = '[a-z0-9]+(?:(?:\\.|_|__|-+)[a-z0-9]+)*';
const NAME_RE = new RegExp(`^${NAME_COMPONENT}(?:/${NAME_COMPONENT})*$`);
const TAG_RE = /^[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}$/;
/** distribution-spec: names may be longer, but 255 is what registries accept in practice. */
export const NAME_MAX_LENGTH = 255;

export function isRepositoryName(s: string): boolean {
  return s.length > 0 && s.length <= NAME_MAX_LENGTH && NAME_RE.test(s);
}

export function isTag(s: string): boolean {
  return TAG_RE.test(s);
}

export function isReference(s: string): boolean {
  return isTag(s) || isDigest(s);
}
