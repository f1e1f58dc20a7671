/**
 * Limits and timings of the content store, each with its reason. The store is a
 * library: `ContentStore.open` takes overrides of the timings (tests use short ones).
 */

/**
 * A temp file whose mtime is older than this is debris of a crashed writer and is
 * removed at open. A live writer touches its temp on every chunk and gives up after
 * WRITE_IDLE_TIMEOUT_MS without one, so a live temp is never anywhere near this old,
 * even when another sigil process shares the directory.
 */
export const TMP_STALE_MS = 60 * 60 * 1000;

/**
 * A coalesced write that receives no chunk for this long is aborted (its followers
 * error, its temp is removed). Longer than the upstream client's body idle timeout
 * (30 s) so that the upstream's own, more precise error arrives first; a guard against
 * a caller that forgets to end or destroy the writer.
 */
export const WRITE_IDLE_TIMEOUT_MS = 2 * 60 * 1000;

/**
 * `lastUsed` is kept exactly in memory and persisted as the object's mtime at most
 * this often per object: LRU order only needs minute precision, and a read-heavy
 * object then costs one utimes() a minute instead of one per request.
 */
export const LAST_USED_PERSIST_MS = 60 * 1000;

/**
 * Another process that shares the directory persists its reads as mtimes; eviction
 * spares an object whose mtime is newer than our own record by more than this
 * (slack for the float-seconds round trip of utimes and coarse file systems).
 */
export const MTIME_SLACK_MS = 2_000;

/**
 * Chunk size for reading stored objects as a stream and reading behind a write: memory per
 * stream is a few chunks (a reader behind a write: one being read, one buffered for the
 * consumer; a stored object served over HTTP reads into pooled slabs sized from the streams
 * reading, store/read-slabs.ts), so 256 KiB keeps a stream at or under 1 MiB — 64 concurrent
 * pulls of one big blob through 4 MiB chunks peaked at 544 MiB. Four times Node's 64 KiB
 * default, so a quarter of the read and socket-write calls; measured here serving a page-cached
 * 64 MiB file over loopback, 256 KiB was within the noise of 1 MiB and 4 MiB, 64 KiB clearly
 * slower.
 */
export const READ_CHUNK_BYTES = 256 * 1024;

/** A follower reads the growing temp file in chunks of this size (a stream's memory, as above). */
export const FOLLOW_CHUNK_BYTES = READ_CHUNK_BYTES;

/**
 * A follower reads ahead of its consumer while it buffers less than this: one chunk read ahead
 * at most (64 concurrent cold pulls of one blob took 1.5 MiB each with a buffer as large as a
 * chunk, which lets a second chunk in behind the first).
 */
export const FOLLOW_BUFFER_BYTES = 64 * 1024;

/**
 * A write keeps this much of what it wrote last in memory (the upstream's own buffers: no
 * copy), and followers within it are served from there instead of reading the file back
 * (a read and a new buffer per chunk: on one core the read-back cost about as much CPU as the
 * write, and its buffers brought most of the fill's full garbage collections). Per download, not
 * per stream; four write batches, so the request that started the download, when its client
 * keeps up with the upstream, never reads the file.
 */
export const FOLLOW_RECENT_BYTES = 4 * 1024 * 1024;

/**
 * ...and at most this many of its chunks (an upstream's socket reads, 16–64 KiB each: a thousand
 * cover FOLLOW_RECENT_BYTES). An upstream that sends its body in tiny chunks (chunked encoding,
 * a byte each) would otherwise have a write hold millions of buffer objects, some 190 bytes of
 * memory each for one byte of blob; with it, fewer bytes are kept and followers read the file.
 * With MAX_STORE_DOWNLOADS (registry/write-through.ts, 16 per upstream) at once, the chunks kept
 * are at most 16 × (4 MiB + one chunk) per upstream.
 */
export const FOLLOW_RECENT_CHUNKS = 1024;

/**
 * A follower stays this many bytes behind the writer until the digest is checked, so
 * that a follower's consumer never receives a complete blob with the wrong digest from the
 * upstream (the same rule as upstream/blob-verify.ts, which holds back one chunk). The temp
 * file changed on disk is another matter: a follower that reads it back checks itself (follower.ts).
 */
export const FOLLOW_HOLD_BACK_BYTES = 1;

/** stat() calls in flight while scanning the store at open: fast on SSDs, gentle on NFS. */
export const SCAN_CONCURRENCY = 64;

/**
 * One metadata value (tag → digest, media types, verdicts, signature digest lists) is a
 * small JSON document; a referrers list is capped at 4 MiB upstream, so that caps this too.
 */
export const META_MAX_BYTES = 4 * 1024 * 1024;

/** Metadata namespaces are our own constants ("tags", "verdicts"), never user input. */
export const META_NAMESPACE_RE = /^[a-z0-9][a-z0-9-]{0,63}$/;

/**
 * A metadata sweep (removing documents about objects no longer stored) reads every
 * document, so automatic ones, after an eviction or prune, start at most this often: under
 * steady cache pressure eviction runs after nearly every write, and a sweep per eviction would
 * turn each write into a read of the whole meta/ directory. What a skipped sweep leaves behind
 * is the metadata of at most this long's evictions; the next eviction or write after the
 * interval sweeps it.
 */
export const META_SWEEP_MIN_INTERVAL_MS = 10 * 60 * 1000;

/**
 * A sweep reads this many metadata files per turn of the store's maintenance queue, then
 * lets queued evictions run and yields to the event loop: at well under 100 µs a file, a turn
 * holds eviction back for tens of milliseconds, not for the whole directory.
 */
export const META_SWEEP_BATCH_FILES = 256;

/**
 * A whole object up to this size is read and checked before anything of it is served: a damaged
 * one is then found before the answer's headers (removed, and reported absent, so the caller
 * fetches it again) rather than cut off mid-answer. 1 MiB: the whole object is in memory
 * meanwhile, and a stream is held to about that much (READ_CHUNK_BYTES). Larger objects are
 * checked as they stream, the last chunk held back until the check passed.
 */
export const VERIFY_AHEAD_MAX_BYTES = 1024 * 1024;

/**
 * An object hashed in this process is served again without hashing while fstat on the open file
 * shows it unchanged (file-identity.ts), but only when its ctime was at least this old when it
 * was hashed: timestamps are coarse (a kernel clock tick; a second or two on some network and
 * FAT-like file systems), and a write within the tick of the last change would not change the
 * ctime. A newly written object is hashed again by its first read after this long.
 */
export const TRUST_CTIME_MIN_AGE_MS = 2_000;

/**
 * After a write failed for a reason of the file system (disk full, read-only, directory removed,
 * I/O error), the store stops writing (blobs pass through unstored) and tries again, with a small
 * probe write, at most this often: soon enough that a freed disk is used again within a minute,
 * seldom enough that a broken disk costs a probe, not a failed write per request.
 */
export const STORE_RETRY_MS = 30 * 1000;

/** What the probe writes (and syncs, then removes): one page, which a full file system refuses. */
export const PROBE_BYTES = 4096;

/**
 * A blob write starts only when the file system has room for it, the writes already under way
 * and this much more (metadata documents, the file system's own blocks): a write the disk runs
 * out of midway cuts off the pulls reading behind it, a write not started cuts off nothing.
 */
export const WRITE_ROOM_MARGIN_BYTES = 1024 * 1024;
