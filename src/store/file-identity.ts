import type { BigIntStats } from 'node:fs';

/**
 * What tells one state of a stored object's file from another, from fstat on the open file:
 * device, inode, size, mtime and ctime in nanoseconds. Every write to the file changes its ctime,
 * and so does every change of its metadata (utimes to put an mtime back included); user space
 * cannot set a ctime. A replaced file is another inode. One exception, closed below: a write
 * through a shared memory mapping changes the ctime only when it faults (see ctimeTracksWrites).
 */
export interface FileIdentity {
  readonly dev: bigint;
  readonly ino: bigint;
  readonly size: bigint;
  readonly mtimeNs: bigint;
  readonly ctimeNs: bigint;
}

export function identityOf(st: BigIntStats): FileIdentity {
  return { dev: st.dev, ino: st.ino, size: st.size, mtimeNs: st.mtimeNs, ctimeNs: st.ctimeNs };
}

export function sameIdentity(a: FileIdentity, b: FileIdentity): boolean {
  return a.dev === b.dev && a.ino === b.ino && a.size === b.size && a.mtimeNs === b.mtimeNs && a.ctimeNs === b.ctimeNs;
}

/**
 * Whether bytes hashed from a file of this identity, read from `readStartMs` on (the real clock,
 * not the store's), may be trusted for as long as the identity holds. Only when the file's last
 * change is at least `minAgeMs` older than the read: file systems keep coarse timestamps (a clock
 * tick, up to seconds on some), and a write in the same tick as the last change would leave the
 * ctime as it was; a write after the read has begun then always gets a later ctime.
 */
export function trustable(id: FileIdentity, readStartMs: number, minAgeMs: number): boolean {
  return BigInt(Math.floor(readStartMs)) * 1_000_000n - id.ctimeNs >= BigInt(Math.ceil(minAgeMs)) * 1_000_000n;
}

/**
 * statfs types of the file systems on which a file's ctime changes with every change of its bytes
 * once its dirty pages were written back (fdatasync): local disk file systems of this kernel,
 * which write-protect a page in every mapping when they write it back, so that the next write
 * through a mapping faults and updates the times. A write to a page still dirty and writable in
 * someone's mapping does not fault and changes no time. tmpfs and ramfs never write pages back (a
 * mapped page stays writable for good); network and FUSE file systems take times from elsewhere
 * (a server's clock, cached attributes); overlayfs behaves as its upper layer, which statfs does
 * not name. Those, and any file system not listed, are not trusted: every read hashes there.
 */
const CTIME_TRACKS_WRITES = new Set([
  0xef53, // ext2, ext3, ext4
  0x58465342, // xfs
  0x9123683e, // btrfs
  0xf2f52010, // f2fs
]);

/** Whether trusted reads may be used on a file system of this statfs type (above). */
export function ctimeTracksWrites(fsType: number): boolean {
  return CTIME_TRACKS_WRITES.has(fsType);
}
