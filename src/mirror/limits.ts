/** Limits of the mirror commands, each with its reason. */

/** Tags asked for per tags/list request; distribution and most registries cap a page near this. */
export const TAG_PAGE_SIZE = 1000;

/**
 * Pages of tags/list followed per repository (100 000 tags): a registry that keeps answering
 * a full page with the same `last` must not loop for ever.
 */
export const MAX_TAG_PAGES = 100;

/**
 * Index nesting followed when copying (an index of indexes, as some tools write for
 * attestations); the OCI spec sets no bound, and a cycle of digests is impossible, but
 * a deep chain is not an image anyone runs.
 */
export const MAX_INDEX_DEPTH = 4;

/** Child manifests copied per index: more than any real multi-arch image lists. */
export const MAX_INDEX_CHILDREN = 256;

/** A mirror FILE is a short list written by hand; anything larger is a mistake. */
export const MIRROR_FILE_MAX_BYTES = 1024 * 1024;

/** index.json of an OCI layout: one descriptor (~300 bytes) per tag, signature and referrer. */
export const LAYOUT_INDEX_MAX_BYTES = 16 * 1024 * 1024;

/** The TTY progress line is redrawn at most this often. */
export const PROGRESS_REDRAW_MS = 200;

/**
 * Without a terminal (a log, CI), a progress line while an image downloads at most this often:
 * often enough to show a long download moving, rarely enough not to flood the log.
 */
export const PROGRESS_LINE_MS = 10_000;
