/**
 * The reason phrase of a status line (`HTTP/1.1 403 sigil: no signature found (policy prod)`).
 * Go clients — containerd, hence every kubelet pull — print a failed request's status line as
 * sent and nothing of the body, so a denial says why there in a few words (the contract); the
 * whole reason stays in the JSON body, the audit log and `sigil verify`.
 */

/**
 * Longest reason phrase sent, in characters (all ASCII). RFC 9112 sets no limit, but the phrase
 * is read as part of the response head and printed in one line of a client's error: a few words
 * with a policy name fit; a policy name long enough to pass this is cut, marked with `...`.
 */
export const MAX_REASON_PHRASE_CHARS = 120;

/** What a cut phrase ends with. */
const CUT_MARK = '...';

/**
 * `text` as a reason phrase: RFC 9112 allows HTAB, SP, VCHAR and obs-text; obs-text (bytes
 * 0x80-0xFF) is kept to printable ASCII here, since clients decode it differently, and node
 * throws on anything else. Each other character becomes `?`, runs of white space one space,
 * and the result is at most MAX_REASON_PHRASE_CHARS long. Empty input gives an empty phrase
 * (the caller then keeps the standard one).
 */
export function reasonPhrase(text: string): string {
  const clean = text
    .replace(/[\t\r\n\v\f]/g, ' ')
    .replace(/[^\x20-\x7e]/gu, '?')
    .replace(/ {2,}/g, ' ')
    .trim();
  return clean.length <= MAX_REASON_PHRASE_CHARS ? clean : `${clean.slice(0, MAX_REASON_PHRASE_CHARS - CUT_MARK.length).trimEnd()}${CUT_MARK}`;
}
