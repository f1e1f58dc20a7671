/**
 * HTTP byte ranges of blobs (RFC 9110 §14): what a client's `Range` asks of a blob of known size,
 * and whether an upstream's `206` is the part that was asked for. Pure; no I/O. The content
 * store's Range answers and the upstream client's check of partial answers both read ranges here.
 */
import { SigilError } from '../errors.js';

/** One byte range, first and last byte inclusive. */
export interface ByteRange {
  readonly start: number;
  readonly end: number;
}

/** A single byte range: bytes=a-b, bytes=a- or bytes=-n. A list of ranges is not one. */
const RANGE_RE = /^bytes=(\d*)-(\d*)$/;

/** `bytes a-b/n` with a known complete length (an upstream always knows a blob's size). */
const CONTENT_RANGE_RE = /^bytes (\d{1,15})-(\d{1,15})\/(\d{1,15})$/;

/**
 * The bytes of a `size`-byte blob a `Range` header asks for (a last byte past the end is cut to
 * the end, as RFC 9110 says); undefined when it is not one byte range or asks for none of the
 * blob's bytes (a 416 then).
 */
export function resolveRange(header: string, size: number): ByteRange | undefined {
  const m = RANGE_RE.exec(header.trim());
  if (!m) return undefined;
  const [, a, b] = m;
  let range: ByteRange;
  if (a !== '') range = { start: Number(a), end: b === '' ? size - 1 : Math.min(Number(b), size - 1) };
  else if (b !== '') range = { start: Math.max(0, size - Number(b)), end: size - 1 };
  else return undefined;
  return range.start > range.end || range.start >= size ? undefined : range;
}

/** Whether `range` is every byte of a `size`-byte blob (then it can be, and is, checked against the digest). */
export function coversWhole(range: ByteRange, size: number): boolean {
  return range.start === 0 && range.end === size - 1;
}

/**
 * Judges an upstream's `206 Partial Content` to a blob request that sent `requested` as its Range
 * (undefined: no Range). A 206 is only an answer to the one range asked for: it must start where
 * that range starts and end no later (RFC 9110 lets a server send less of an open-ended range,
 * never other bytes). A 206 to a request without Range, without a `bytes a-b/n` Content-Range,
 * with other bytes than asked, or with a Content-Length other than its range's length is
 * UPSTREAM_BAD_RESPONSE (else a whole wrong blob could pass as "a part", unhashed).
 * `whole`: the part is every byte of the blob (hash it like a 200).
 */
export function checkPartialAnswer(
  requested: string | undefined,
  contentRange: string | undefined,
  contentLength: number | undefined,
  describe: string,
): { readonly whole: boolean; readonly length: number } {
  const bad = (why: string): SigilError => new SigilError({ code: 'UPSTREAM_BAD_RESPONSE', message: `${describe}: ${why}` });
  if (requested === undefined) throw bad('answered 206 Partial Content to a request without Range');
  const m = contentRange === undefined ? null : CONTENT_RANGE_RE.exec(contentRange.trim());
  if (!m) throw bad(`answered 206 with Content-Range ${JSON.stringify(contentRange ?? null)}, not one byte range of a known length`);
  const [start, end, size] = [Number(m[1]), Number(m[2]), Number(m[3])];
  const asked = resolveRange(requested, size);
  if (asked === undefined || start !== asked.start || end > asked.end || end < start) {
    throw bad(`answered 206 with Content-Range ${contentRange} to Range ${requested}`);
  }
  const length = end - start + 1;
  if (contentLength !== undefined && contentLength !== length) {
    throw bad(`answered 206 with Content-Range ${contentRange} and Content-Length ${contentLength}`);
  }
  return { whole: coversWhole({ start, end }, size), length };
}
