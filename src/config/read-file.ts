/**
 * Reads a file a config names (the config itself, TLS PEMs, htpasswd, CA bundles, keys, trusted
 * roots) at start, on every reload, and when the watcher compares contents. Only a regular file
 * of at most a bound is read: a FIFO named by mistake (or put in place of a watched file) would
 * block its reader until something writes to it — a reload that never ends keeps every later one
 * waiting behind it — and a device or a huge file would be read into memory without end. Opened
 * with O_NONBLOCK, so that neither kind is ever waited on; symlinks are followed (a Kubernetes
 * mount is made of them).
 */
import { closeSync, constants, fstatSync, openSync, readSync, type Stats } from 'node:fs';
import { open } from 'node:fs/promises';

/**
 * The largest file a config may name: an htpasswd file of 100,000 users is ~7 MiB, a system CA
 * bundle ~250 KiB, a trusted root tens of KiB. Anything bigger is a wrong path.
 */
export const MAX_CONFIG_FILE_BYTES = 16 * 1024 * 1024;

/** O_NONBLOCK does nothing to a regular file; it keeps opening a FIFO from waiting for a writer. */
const FLAGS = constants.O_RDONLY | constants.O_NONBLOCK;
const CHUNK = 64 * 1024;

function kindOf(st: Stats): string {
  if (st.isDirectory()) return 'a directory';
  if (st.isFIFO()) return 'a FIFO';
  if (st.isSocket()) return 'a socket';
  if (st.isCharacterDevice() || st.isBlockDevice()) return 'a device';
  return 'not a regular file';
}

function refuse(message: string, code: string): Error {
  return Object.assign(new Error(message), { code });
}

function checkStat(st: Stats, maxBytes: number, check: ((st: Stats) => void) | undefined): void {
  if (!st.isFile()) throw refuse(`not a regular file but ${kindOf(st)}`, 'EFTYPE');
  if (st.size > maxBytes) throw tooLarge(maxBytes);
  check?.(st);
}

const tooLarge = (maxBytes: number): Error => refuse(`larger than ${maxBytes} bytes`, 'EFBIG');

/**
 * The bytes of `path`; rejects (with the OS error, or code EFTYPE / EFBIG) for anything but a
 * regular file of at most `maxBytes`, and with what `check` throws for the file opened (its owner, its mode).
 */
export async function readConfigFile(path: string, maxBytes = MAX_CONFIG_FILE_BYTES, check?: (st: Stats) => void): Promise<Buffer> {
  const fh = await open(path, FLAGS);
  try {
    checkStat(await fh.stat(), maxBytes, check);
    const chunks: Buffer[] = [];
    let total = 0;
    for (;;) {
      const buf = Buffer.allocUnsafe(CHUNK);
      const { bytesRead } = await fh.read(buf, 0, CHUNK, null);
      if (bytesRead === 0) break;
      total += bytesRead;
      if (total > maxBytes) throw tooLarge(maxBytes); // it grew while being read
      chunks.push(buf.subarray(0, bytesRead));
    }
    return Buffer.concat(chunks, total);
  } finally {
    await fh.close();
  }
}

/** readConfigFile, synchronously (trusted roots are read where no await is possible). */
export function readConfigFileSync(path: string, maxBytes = MAX_CONFIG_FILE_BYTES): Buffer {
  const fd = openSync(path, FLAGS);
  try {
    checkStat(fstatSync(fd), maxBytes, undefined);
    const chunks: Buffer[] = [];
    let total = 0;
    for (;;) {
      const buf = Buffer.allocUnsafe(CHUNK);
      const bytesRead = readSync(fd, buf, 0, CHUNK, null);
      if (bytesRead === 0) break;
      total += bytesRead;
      if (total > maxBytes) throw tooLarge(maxBytes);
      chunks.push(buf.subarray(0, bytesRead));
    }
    return Buffer.concat(chunks, total);
  } finally {
    closeSync(fd);
  }
}
