import { execFile } from 'node:child_process';
import { open, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import { tempDir } from './temp.js';

const run = promisify(execFile);
const FILL_CHUNK_BYTES = 256 * 1024;
const REMOUNT_ATTEMPTS = 50;
const REMOUNT_RETRY_MS = 100;

/** A small tmpfs of its own: real file system faults (read-only, full) without touching anything else. */
export interface Tmpfs {
  readonly dir: string;
  /** Remounts it read-only (writes fail with EROFS) or read-write again. */
  remount(mode: 'ro' | 'rw'): Promise<void>;
  /** Writes a file until the file system is full (a real ENOSPC); returns its path. */
  fill(): Promise<string>;
  /** Unmounts it and removes the mount point. */
  stop(): Promise<void>;
}

/**
 * Mounts a tmpfs of `sizeBytes` on a fresh temp directory, or says why it cannot (not root,
 * no CAP_SYS_ADMIN in a container): the caller skips with that reason.
 */
export async function mountTmpfs(sizeBytes: number): Promise<Tmpfs | { unavailable: string }> {
  const dir = await tempDir('sigil-tmpfs-');
  try {
    await run('mount', ['-t', 'tmpfs', '-o', `size=${sizeBytes},mode=0700`, 'tmpfs', dir]);
  } catch (err) {
    await rm(dir, { recursive: true, force: true });
    return { unavailable: `cannot mount a tmpfs (needs root or CAP_SYS_ADMIN): ${(err as Error).message.trim()}` };
  }
  let mounted = true;
  return {
    dir,
    async remount(mode) {
      // read-only fails with EBUSY while a file is open for writing (a write just finishing): retry
      for (let attempt = 1; ; attempt++) {
        try {
          await run('mount', ['-o', `remount,${mode}`, dir]);
          return;
        } catch (err) {
          if (attempt >= REMOUNT_ATTEMPTS) throw err;
          await sleep(REMOUNT_RETRY_MS);
        }
      }
    },
    async fill() {
      const path = join(dir, 'filler');
      const fh = await open(path, 'w');
      const chunk = Buffer.alloc(FILL_CHUNK_BYTES, 1);
      try {
        for (;;) {
          try {
            await fh.write(chunk);
          } catch (err) {
            if ((err as NodeJS.ErrnoException).code === 'ENOSPC') break;
            throw err;
          }
        }
        // the last partial chunk: byte by byte would be slow, halves are enough
        for (let n = FILL_CHUNK_BYTES / 2; n >= 1; n = Math.floor(n / 2)) {
          try {
            await fh.write(chunk.subarray(0, n));
          } catch {
            // full at this size: try a smaller one
          }
        }
      } finally {
        await fh.close();
      }
      return path;
    },
    async stop() {
      if (!mounted) return;
      mounted = false;
      await run('umount', ['-l', dir]).catch(() => {});
      await rm(dir, { recursive: true, force: true });
    },
  };
}
