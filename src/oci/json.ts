/**
 * The one way sigil reads JSON it did not write in this process: upstream answers (manifests,
 * indexes, referrers, tag lists, tokens, errors), signature payloads, bundles and Rekor entries,
 * OCI layouts and the content store's metadata files.
 *
 * `JSON.parse` itself copes with any nesting, but what is done with the value afterwards does
 * not: `JSON.stringify` (re-serialising a referrers list, an error detail, a stored record) and
 * recursive walks overflow the stack at a few thousand levels, which is a crash of the request
 * (500) at best. So the nesting is measured on the text before it is parsed, and refused above a
 * bound no legitimate document comes near.
 */

/**
 * Deepest nesting of arrays and objects accepted. OCI manifests and indexes nest 4 levels
 * (index → manifests → descriptor → annotations/platform); a Sigstore bundle about 8; an
 * in-toto statement with a SLSA provenance predicate about 12. 64 leaves ample room and stays
 * three orders of magnitude below where V8's recursive JSON.stringify overflows.
 */
export const MAX_JSON_DEPTH = 64;

/** Why a text was refused: not JSON, or nested too deep. */
export class JsonRefused extends Error {
  override readonly name = 'JsonRefused';
}

/**
 * The nesting depth of a JSON text, or `Infinity` once it exceeds `max` (the scan stops there).
 * Brackets inside strings do not count; escapes inside strings are skipped. Works on the bytes:
 * every character that matters is ASCII.
 */
export function jsonDepth(input: Uint8Array | string, max = MAX_JSON_DEPTH): number {
  const bytes = typeof input === 'string' ? Buffer.from(input, 'utf8') : input;
  let depth = 0;
  let deepest = 0;
  let inString = false;
  for (let i = 0; i < bytes.length; i++) {
    const c = bytes[i];
    if (inString) {
      if (c === 0x5c /* \ */) i++;
      else if (c === 0x22 /* " */) inString = false;
      continue;
    }
    if (c === 0x22) inString = true;
    else if (c === 0x5b /* [ */ || c === 0x7b /* { */) {
      depth++;
      if (depth > deepest) {
        deepest = depth;
        if (deepest > max) return Infinity;
      }
    } else if (c === 0x5d /* ] */ || c === 0x7d /* } */) depth--;
  }
  return deepest;
}

/**
 * Parses JSON from outside, refusing nesting deeper than MAX_JSON_DEPTH. Throws JsonRefused
 * with a message that starts with `what` ("the referrers tag sha256-… is nested deeper than …").
 */
export function parseJson(input: Uint8Array | string, what: string): unknown {
  if (jsonDepth(input) > MAX_JSON_DEPTH) throw new JsonRefused(`${what} is nested deeper than ${MAX_JSON_DEPTH} levels (MAX_JSON_DEPTH)`);
  const text = typeof input === 'string' ? input : Buffer.from(input.buffer, input.byteOffset, input.byteLength).toString('utf8');
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new JsonRefused(`${what} is not JSON: ${(e as Error).message}`);
  }
}

/** parseJson for callers to whom "not usable JSON" simply means "not this": undefined instead of a throw. */
export function tryParseJson(input: Uint8Array | string): unknown {
  try {
    return parseJson(input, 'input');
  } catch {
    return undefined;
  }
}

/**
 * The first key that an object of this JSON text repeats, as Go's encoding/json matches keys
 * (case-insensitively, with its Unicode folding: "Config" and "config", "ſ" and "s", "K" and
 * "k" are one key), or undefined. JSON.parse keeps only the last of them; Go decodes each in
 * turn into the same field, and decoding `{}` or `null` into a struct leaves what the first one
 * set: `"config":{"Cmd":["sh"]},"config":{}` runs `sh` for containerd and podman. So a document
 * whose meaning sigil vouches for by reading it with JSON.parse must not repeat a key.
 * Expects a text JSON.parse accepts (call it after parsing).
 */
export function repeatedKey(input: Uint8Array | string): string | undefined {
  const text = typeof input === 'string' ? input : Buffer.from(input.buffer, input.byteOffset, input.byteLength).toString('utf8');
  // One entry per open array (null) or object (the keys seen so far, folded).
  const open: Array<Set<string> | null> = [];
  let expectKey = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (c === '"') {
      let j = i + 1;
      while (j < text.length && text[j] !== '"') j += text[j] === '\\' ? 2 : 1;
      if (j >= text.length) return undefined; // unterminated: not JSON, refused by the parse
      const keys = open.at(-1);
      if (expectKey && keys) {
        const key = JSON.parse(text.slice(i, j + 1)) as string;
        const folded = key.toUpperCase().toLowerCase();
        if (keys.has(folded)) return key;
        keys.add(folded);
        expectKey = false;
      }
      i = j;
    } else if (c === '{') {
      open.push(new Set());
      expectKey = true;
    } else if (c === '[') {
      open.push(null);
      expectKey = false;
    } else if (c === '}' || c === ']') {
      open.pop();
      expectKey = false;
    } else if (c === ',') {
      expectKey = open.at(-1) instanceof Set;
    }
  }
  return undefined;
}
