import { SigilError, isSigilError } from '../errors.js';
import type { SigilErrorCode } from '../errors.js';
import { ERROR_MESSAGE_MAX_CHARS } from './limits.js';
import { tryParseJson } from '../oci/json.js';

/**
 * Turning what goes wrong upstream into SigilErrors: network failures (by
 * error code, never by message text) and HTTP answers with their distribution
 * error bodies. Messages name the upstream and what failed; never a token.
 */

// Timeouts: undici's own, plus the kernel's.
const TIMEOUT_CODES: ReadonlySet<string> = new Set([
  'UND_ERR_CONNECT_TIMEOUT',
  'UND_ERR_HEADERS_TIMEOUT',
  'UND_ERR_BODY_TIMEOUT',
  'ETIMEDOUT',
]);

// Nothing answered at all.
const UNREACHABLE_CODES: ReadonlySet<string> = new Set([
  'ECONNREFUSED',
  'ENOTFOUND',
  'EAI_AGAIN',
  'EAI_NONAME',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'EHOSTDOWN',
  'ENETDOWN',
  'EADDRNOTAVAIL',
]);

// Certificate problems (node:tls reports OpenSSL's verify codes as err.code).
const TLS_CODES: ReadonlySet<string> = new Set([
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'CERT_HAS_EXPIRED',
  'CERT_NOT_YET_VALID',
  'CERT_UNTRUSTED',
  'CERT_REJECTED',
  'ERR_TLS_CERT_ALTNAME_INVALID',
  'HOSTNAME_MISMATCH',
]);

/** Error codes found on an error, its cause and (AggregateError) its members. */
function errorCodes(err: unknown, depth = 0): string[] {
  if (typeof err !== 'object' || err === null || depth > 3) return [];
  const out: string[] = [];
  const code = (err as { code?: unknown }).code;
  if (typeof code === 'string') out.push(code);
  out.push(...errorCodes((err as { cause?: unknown }).cause, depth + 1));
  const members = (err as { errors?: unknown }).errors;
  if (Array.isArray(members)) for (const m of members) out.push(...errorCodes(m, depth + 1));
  return out;
}

/** A failure to talk to `host` (no HTTP answer, or a broken one) as a SigilError. */
export function networkError(err: unknown, upstream: string, host: string): SigilError {
  if (isSigilError(err)) return err;
  const codes = errorCodes(err);
  const where = `upstream ${upstream} (${host})`;
  if (codes.some((c) => TIMEOUT_CODES.has(c))) {
    const what = codes.includes('UND_ERR_CONNECT_TIMEOUT')
      ? 'connect'
      : codes.includes('UND_ERR_BODY_TIMEOUT')
        ? 'body'
        : 'response';
    return new SigilError({ code: 'UPSTREAM_TIMEOUT', message: `${where} timed out (${what})`, cause: err });
  }
  if (codes.some((c) => UNREACHABLE_CODES.has(c))) {
    const code = codes.find((c) => UNREACHABLE_CODES.has(c));
    return new SigilError({ code: 'UPSTREAM_UNREACHABLE', message: `${where} is unreachable (${code})`, cause: err });
  }
  const tls = codes.find((c) => TLS_CODES.has(c) || c.startsWith('ERR_TLS_') || c.startsWith('ERR_SSL_'));
  if (tls !== undefined) {
    return new SigilError({ code: 'UPSTREAM_UNREACHABLE', message: `${where}: TLS failed (${tls})`, cause: err });
  }
  const code = codes[0] ?? 'unknown error';
  return new SigilError({ code: 'UPSTREAM_BAD_RESPONSE', message: `${where}: connection failed (${code})`, cause: err });
}

/** The first error of a distribution-spec error body, when there is one. */
export interface DistributionError {
  readonly code?: string;
  readonly message?: string;
}

const OCI_CODE_RE = /^[A-Z][A-Z0-9_]{0,63}$/;

/** Control characters out, length capped: an upstream's message is passed to clients and logs. */
function cleanMessage(s: string): string {
  const flat = s.replace(/[\u0000-\u001f\u007f]+/g, ' ').trim();
  return flat.length > ERROR_MESSAGE_MAX_CHARS ? `${flat.slice(0, ERROR_MESSAGE_MAX_CHARS)}...` : flat;
}

/** Parses `{"errors":[{"code","message"}]}`; anything else gives `{}`. */
export function parseDistributionError(body: Buffer): DistributionError {
  const parsed = tryParseJson(body);
  const first = (parsed as { errors?: unknown } | null)?.errors;
  if (!Array.isArray(first) || first.length === 0) return {};
  const e = first[0] as { code?: unknown; message?: unknown } | null;
  if (typeof e !== 'object' || e === null) return {};
  return {
    code: typeof e.code === 'string' && OCI_CODE_RE.test(e.code) ? e.code : undefined,
    message: typeof e.message === 'string' && e.message.trim() !== '' ? cleanMessage(e.message) : undefined,
  };
}

/** What an unexpected status means for one kind of request. */
export interface StatusContext {
  readonly upstream: string;
  /** "manifest library/nginx:latest" – what was asked for, for messages. */
  readonly what: string;
  /** The code of a 404 (MANIFEST_UNKNOWN, BLOB_UNKNOWN, NAME_UNKNOWN); else 404 is UPSTREAM_ERROR. */
  readonly notFound?: SigilErrorCode;
}

// RFC 9110 Retry-After: delay-seconds or an HTTP-date; nothing else is echoed.
const RETRY_AFTER_RE = /^[0-9A-Za-z ,:+-]{1,64}$/;

/** The SigilError for an upstream answer that is not a success. */
export function statusError(
  ctx: StatusContext,
  status: number,
  headers: Readonly<Record<string, string | string[] | undefined>>,
  dist: DistributionError,
): SigilError {
  const prefix = `upstream ${ctx.upstream}: ${ctx.what}`;
  const detail = { upstreamStatus: status, ...(dist.code ? { upstreamCode: dist.code } : {}) };
  if (status === 404 && ctx.notFound !== undefined) {
    if (dist.code === 'NAME_UNKNOWN') {
      return new SigilError({ code: 'NAME_UNKNOWN', message: dist.message ?? `${prefix}: repository not found`, detail });
    }
    return new SigilError({
      code: ctx.notFound,
      message: dist.message ?? `${prefix}: not found`,
      oci: dist.code,
      detail,
    });
  }
  if (status === 401 || status === 403) {
    return new SigilError({ code: 'UPSTREAM_DENIED', message: `${prefix}: access denied by the upstream (${status})`, detail });
  }
  if (status === 429) {
    const retryAfter = headerValue(headers, 'retry-after');
    const extra = retryAfter !== undefined && RETRY_AFTER_RE.test(retryAfter) ? { 'Retry-After': retryAfter } : undefined;
    return new SigilError({
      code: 'UPSTREAM_TOOMANYREQUESTS',
      message: `${prefix}: the upstream is rate limiting (429)`,
      headers: extra,
      detail,
    });
  }
  if (status === 416) {
    const contentRange = headerValue(headers, 'content-range');
    return new SigilError({
      code: 'RANGE_INVALID',
      message: `${prefix}: range not satisfiable`,
      headers: contentRange !== undefined && /^bytes \*\/\d+$/.test(contentRange) ? { 'Content-Range': contentRange } : undefined,
      detail,
    });
  }
  if (status >= 400 && status < 500) {
    return new SigilError({
      code: 'UPSTREAM_ERROR',
      message: dist.message ?? `${prefix}: the upstream answered ${status}`,
      status,
      oci: dist.code,
      detail,
    });
  }
  if (status >= 500) {
    return new SigilError({ code: 'UPSTREAM_BAD_RESPONSE', message: `${prefix}: the upstream answered ${status}`, detail });
  }
  return new SigilError({ code: 'UPSTREAM_BAD_RESPONSE', message: `${prefix}: unexpected upstream status ${status}`, detail });
}

/** One header's value (the first, when repeated). */
export function headerValue(
  headers: Readonly<Record<string, string | string[] | undefined>>,
  name: string,
): string | undefined {
  const v = headers[name];
  return Array.isArray(v) ? v[0] : v;
}
