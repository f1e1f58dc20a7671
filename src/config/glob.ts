/**
 * Pattern helpers for the config: policy `match` globs, exact identity values
 * turned into anchored RegExps, and the "is this regexp anchored?" check.
 *
 * Glob grammar (sigil.example.yaml): `*` matches within one path segment,
 * `**` (a whole segment) matches any number of segments including zero,
 * everything else is literal. Globs are matched against
 * "<upstream name>/<repository>", e.g. "ghcr.io/acme/app".
 */

/** Escapes every RegExp metacharacter so `text` matches only itself. */
export function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

/** Why a glob is malformed, or undefined when it is fine. */
export function globProblem(glob: string): string | undefined {
  if (glob.length === 0) return 'empty pattern';
  if (/\s/.test(glob)) return 'pattern contains whitespace';
  const segments = glob.split('/');
  if (segments.some((s) => s.length === 0)) return 'empty path segment (leading, trailing or double "/")';
  if (segments.some((s) => s.includes('**') && s !== '**')) return '"**" must be a whole path segment (write "a/**", not "a**")';
  return undefined;
}

const ONE_SEGMENT = '[^/]*';

function segmentSource(segment: string): string {
  return segment.split('*').map(escapeRegExp).join(ONE_SEGMENT);
}

/**
 * Compiles a glob (already checked with `globProblem`) to an anchored RegExp.
 * `a/**` matches `a`, `a/b`, `a/b/c`; `**\/b` matches `b`, `x/b`; `a/**\/b`
 * matches `a/b`, `a/x/y/b`; `ghcr.io/acme/*` matches `ghcr.io/acme/x` but not
 * `ghcr.io/acme/x/y`.
 */
export function compileGlob(glob: string): RegExp {
  // Consecutive `**` segments mean the same as one.
  const segments = glob.split('/').filter((s, i, all) => !(s === '**' && all[i - 1] === '**'));
  if (segments.length === 1 && segments[0] === '**') return /^.*$/;
  let source = '';
  let separatorPending = false;
  segments.forEach((segment, i) => {
    if (segment === '**') {
      if (i === 0) {
        source += '(?:[^/]+/)*'; // zero or more leading segments, each with its "/"
        separatorPending = false;
      } else {
        source += '(?:/[^/]+)*'; // zero or more further segments, each after a "/"
        separatorPending = true;
      }
      return;
    }
    if (separatorPending) source += '/';
    source += segmentSource(segment);
    separatorPending = true;
  });
  return new RegExp(`^${source}$`);
}

/** The first segment of a glob when it is a literal (names an upstream), else undefined. */
export function globLiteralHost(glob: string): string | undefined {
  const first = glob.split('/')[0] ?? '';
  return first.includes('*') ? undefined : first;
}

/** An exact identity value (OIDC issuer, certificate subject) as an anchored RegExp. */
export function exactRegExp(text: string): RegExp {
  return new RegExp(`^${escapeRegExp(text)}$`);
}

/**
 * True when a regexp source begins with `^`, ends with an unescaped `$`, and
 * has no top-level `|` (which would make `^a|b$` match anything containing
 * "b" at the end, or starting with "a").
 */
export function isFullyAnchored(source: string): boolean {
  if (!source.startsWith('^') || !source.endsWith('$')) return false;
  let depth = 0;
  let inClass = false;
  for (let i = 0; i < source.length; i++) {
    const c = source[i];
    if (c === '\\') {
      if (i === source.length - 2) return false; // the final "$" is escaped: a literal dollar
      i++;
      continue;
    }
    if (inClass) {
      if (c === ']') inClass = false;
      continue;
    }
    if (c === '[') inClass = true;
    else if (c === '(') depth++;
    else if (c === ')') depth--;
    else if (c === '|' && depth === 0) return false;
  }
  return true;
}
