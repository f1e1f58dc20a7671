/**
 * One error class for everything sigil reports to a client or an operator.
 * Codes are a closed union; the table below maps each to an HTTP status and an
 * OCI distribution-spec error code, and is used only at the HTTP edge.
 */
export type SigilErrorCode =
  | 'NAME_UNKNOWN' // no upstream/repository for this name
  | 'NAME_INVALID'
  | 'MANIFEST_UNKNOWN'
  | 'MANIFEST_INVALID'
  | 'MANIFEST_TOO_LARGE'
  | 'BLOB_UNKNOWN'
  | 'DIGEST_INVALID'
  | 'DIGEST_MISMATCH' // upstream bytes do not hash to the digest asked for or announced
  | 'UNSUPPORTED' // push/delete through a read-only proxy
  | 'UNAUTHORIZED' // client did not authenticate to sigil
  | 'UPSTREAM_DENIED' // upstream refused our credentials
  | 'UPSTREAM_TOOMANYREQUESTS'
  | 'UPSTREAM_UNREACHABLE'
  | 'UPSTREAM_TIMEOUT'
  | 'UPSTREAM_BAD_RESPONSE'
  | 'UPSTREAM_ERROR' // upstream answered with a distribution error we pass on
  | 'POLICY_DENIED'
  | 'RANGE_INVALID'
  | 'PAGINATION_NUMBER_INVALID'
  | 'TAG_INVALID'
  | 'INTERNAL';

export interface CodeInfo {
  readonly status: number;
  readonly oci: string;
}

/** The one code → (HTTP status, OCI error code) table. */
export const ERROR_TABLE: Readonly<Record<SigilErrorCode, CodeInfo>> = Object.freeze({
  NAME_UNKNOWN: { status: 404, oci: 'NAME_UNKNOWN' },
  NAME_INVALID: { status: 400, oci: 'NAME_INVALID' },
  MANIFEST_UNKNOWN: { status: 404, oci: 'MANIFEST_UNKNOWN' },
  MANIFEST_INVALID: { status: 502, oci: 'MANIFEST_INVALID' },
  MANIFEST_TOO_LARGE: { status: 502, oci: 'MANIFEST_INVALID' },
  BLOB_UNKNOWN: { status: 404, oci: 'BLOB_UNKNOWN' },
  DIGEST_INVALID: { status: 400, oci: 'DIGEST_INVALID' },
  DIGEST_MISMATCH: { status: 502, oci: 'DIGEST_INVALID' },
  UNSUPPORTED: { status: 405, oci: 'UNSUPPORTED' },
  UNAUTHORIZED: { status: 401, oci: 'UNAUTHORIZED' },
  UPSTREAM_DENIED: { status: 403, oci: 'DENIED' },
  UPSTREAM_TOOMANYREQUESTS: { status: 429, oci: 'TOOMANYREQUESTS' },
  UPSTREAM_UNREACHABLE: { status: 502, oci: 'UNAVAILABLE' },
  UPSTREAM_TIMEOUT: { status: 504, oci: 'UNAVAILABLE' },
  UPSTREAM_BAD_RESPONSE: { status: 502, oci: 'UNAVAILABLE' },
  UPSTREAM_ERROR: { status: 502, oci: 'UNKNOWN' },
  POLICY_DENIED: { status: 403, oci: 'DENIED' },
  RANGE_INVALID: { status: 416, oci: 'RANGE_INVALID' },
  PAGINATION_NUMBER_INVALID: { status: 400, oci: 'PAGINATION_NUMBER_INVALID' },
  TAG_INVALID: { status: 400, oci: 'TAG_INVALID' },
  INTERNAL: { status: 500, oci: 'UNKNOWN' },
});

export interface SigilErrorInit {
  code: SigilErrorCode;
  message: string;
  detail?: unknown;
  cause?: unknown;
  /** Overrides the table's status (an upstream 404/410 passed on as such). */
  status?: number;
  /** Overrides the table's OCI code (an upstream's own error code passed on). */
  oci?: string;
  /** Extra response headers (Retry-After of an upstream 429). */
  headers?: Record<string, string>;
  /** Why, in a few words, for the status line's reason phrase (a denial's `sigil: …`); default the standard phrase. */
  reasonPhrase?: string;
}

export class SigilError extends Error {
  readonly code: SigilErrorCode;
  readonly detail: unknown;
  readonly status: number;
  readonly oci: string;
  readonly headers: Readonly<Record<string, string>>;
  readonly reasonPhrase: string | undefined;

  constructor(init: SigilErrorInit) {
    super(init.message, init.cause === undefined ? undefined : { cause: init.cause });
    this.name = 'SigilError';
    this.code = init.code;
    this.detail = init.detail;
    this.status = init.status ?? ERROR_TABLE[init.code].status;
    this.oci = init.oci ?? ERROR_TABLE[init.code].oci;
    this.headers = init.headers ?? {};
    this.reasonPhrase = init.reasonPhrase;
  }
}

export function isSigilError(e: unknown): e is SigilError {
  return e instanceof SigilError;
}

/** An error's message for a report: `CODE: message` for sigil's own. */
export function messageOf(e: unknown): string {
  return isSigilError(e) ? `${e.code}: ${e.message}` : e instanceof Error ? e.message : String(e);
}

/** An error as a cause in a verdict or a reason: `CODE: message` for sigil's own. */
export function causeOf(e: unknown): string {
  return isSigilError(e) ? `${e.code}: ${e.message}` : String(e);
}

/** The distribution-spec error body for an error. */
export function ociErrorBody(code: string, message: string, detail?: unknown): string {
  const err: { code: string; message: string; detail?: unknown } = { code, message };
  if (detail !== undefined) err.detail = detail;
  return JSON.stringify({ errors: [err] });
}
