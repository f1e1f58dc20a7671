import type { BigIntStats } from 'node:fs';

/**
 * What tells one state of a stored object's file from another, from fstat on the open file:
 * device, inode, size, mtime and ctime in nanoseconds. Every write to the file changes its ctime,
 * and so does every change of its metadata (utimes to put an mtime back included); user space
 * cannot set a ctime. A replaced file is another inode.
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
