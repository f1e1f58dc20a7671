/**
 * Limits and timeouts of the upstream client, each with its reason.
 * Timeouts are defaults: `UpstreamClient` takes overrides (tests use short ones).
 */

/** distribution-spec: registries may refuse manifests over 4 MiB; we buffer them to hash. */
export const MANIFEST_MAX_BYTES = 4 * 1024 * 1024;

/** A referrers answer is an image index, held to the same cap as a manifest. */
export const REFERRERS_MAX_BYTES = MANIFEST_MAX_BYTES;

/**
 * A tag list is buffered to parse it; an upstream that ignores `n` (distribution 2.8)
 * sends every tag at once: 8 MiB holds ~60 000 tags of 128 characters.
 */
export const TAG_LIST_MAX_BYTES = 8 * 1024 * 1024;

/** A token answer is a JWT (a few KiB) plus a few fields; more is not a token server. */
export const TOKEN_RESPONSE_MAX_BYTES = 1024 * 1024;

/** We read an error body only for its distribution error code and message. */
export const ERROR_BODY_MAX_BYTES = 64 * 1024;

/** An upstream's own error message passed on to clients is cut to this length. */
export const ERROR_MESSAGE_MAX_CHARS = 512;

/** Blob redirects (registry → storage → CDN) are one or two hops; more is a loop. */
export const MAX_REDIRECTS = 5;

/** A TCP/TLS connect to a registry on a working network takes well under a second. */
export const CONNECT_TIMEOUT_MS = 5_000;

/** Registries answer headers quickly, even for big blobs (they stream the body). */
export const HEADERS_TIMEOUT_MS = 15_000;

/** A blob body that stalls this long is dead; a live one on a slow link still moves. */
export const BODY_IDLE_TIMEOUT_MS = 30_000;

/**
 * Whole-operation deadline for small answers (manifests, tags, referrers, tokens),
 * token round trip and retry included: a client waiting on a manifest must get 504, not a hang.
 */
export const METADATA_DEADLINE_MS = 20_000;

/** Docker token spec: when `expires_in` is absent, the token is valid for 60 s. */
export const TOKEN_DEFAULT_EXPIRES_IN_S = 60;

/** Refresh a token this long before it expires, so it does not expire in flight. */
export const TOKEN_EXPIRY_MARGIN_MS = 10_000;

/** Distinct (realm, service, scope) keys kept per upstream: one per repository pulled. */
export const TOKEN_CACHE_MAX_ENTRIES = 1024;

/** Idle keep-alive sockets to an upstream are reused this long (registries keep them ~60 s+). */
export const KEEP_ALIVE_TIMEOUT_MS = 30_000;

/** close(): in-flight requests get this long to finish before sockets are destroyed. */
export const CLOSE_GRACE_MS = 2_000;

/** Sent upstream so registry operators can tell who is calling. */
export const USER_AGENT = 'sigil/0.1.0';

/** The timeouts a client uses; every one can be overridden (tests use a few hundred ms). */
export interface Timeouts {
  readonly connectMs: number;
  readonly headersMs: number;
  readonly bodyIdleMs: number;
  readonly metadataDeadlineMs: number;
}

export const DEFAULT_TIMEOUTS: Timeouts = Object.freeze({
  connectMs: CONNECT_TIMEOUT_MS,
  headersMs: HEADERS_TIMEOUT_MS,
  bodyIdleMs: BODY_IDLE_TIMEOUT_MS,
  metadataDeadlineMs: METADATA_DEADLINE_MS,
});
