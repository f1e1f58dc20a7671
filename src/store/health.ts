import { open, rm, statfs } from 'node:fs/promises';
import type { Logger } from 'pino';
import type { Metrics } from '../audit/metrics.js';
import { SigilError } from '../errors.js';
import { FILE_MODE } from './layout.js';
import type { Layout } from './layout.js';
import { PROBE_BYTES, WRITE_ROOM_MARGIN_BYTES } from './limits.js';

/** Which kind of file operation failed. */
export type StoreOp = 'read' | 'write';

/** Why the store does not write now. */
export interface StoreFault {
  /** The errno code (ENOSPC, EROFS, ENOENT, EIO, …). */
  readonly code: string;
  readonly message: string;
  /** When writes stopped (the store's clock). */
  readonly since: number;
  /** When the next probe may run. */
  readonly retryAt: number;
}

/**
 * The errno code of a file system error (a Node system error carries `code` and `syscall`),
 * looked for on the error and its causes; undefined for anything else (a digest mismatch, an
 * upstream failure), which is not the store's fault.
 */
export function ioErrorCode(err: unknown, depth = 0): string | undefined {
  if (typeof err !== 'object' || err === null || depth > 3) return undefined;
  const e = err as NodeJS.ErrnoException;
  if (typeof e.code === 'string' && typeof e.syscall === 'string') return e.code;
  return ioErrorCode(e.cause, depth + 1);
}

function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

export interface StoreHealthOptions {
  readonly layout: Layout;
  readonly now: () => number;
  /** STORE_RETRY_MS, or a test's. */
  readonly retryMs: number;
  readonly logger?: Logger;
  readonly metrics?: Metrics;
  /** A probe succeeded after a fault: what the store must redo (directories, its view of the objects). */
  readonly recovered: () => void;
}

/**
 * Whether the content store can write, and what its file operations' failures cost. A failed
 * read is counted and logged, and the caller treats the object as absent. A failed write is
 * counted, logged once, and stops writes (the cache passes blobs through unstored) until a
 * probe — the directories created again, a page written, synced and removed, room on the file
 * system — succeeds; probes run at most every `retryMs`, on the store's clock, when a write is
 * asked for. A disk that was full, read-only or removed is used again by itself once it is back.
 */
export class StoreHealth {
  readonly #opts: StoreHealthOptions;
  #fault: StoreFault | undefined;
  #probe: Promise<boolean> | undefined;

  constructor(opts: StoreHealthOptions) {
    this.#opts = opts;
  }

  /** Why writes are stopped, or undefined while the store writes. */
  get fault(): StoreFault | undefined {
    return this.#fault;
  }

  /** A file operation failed: counted and logged; a write failure stops writes until a probe succeeds. */
  failed(op: StoreOp, err: unknown, where: { readonly digest?: string; readonly path?: string } = {}): void {
    const code = ioErrorCode(err) ?? 'EUNKNOWN';
    this.#opts.metrics?.storeFaults.inc({ op, code });
    const log = this.#opts.logger;
    if (op === 'read') {
      log?.warn({ code, ...where, err: messageOf(err) }, 'content store: cannot read; treated as absent');
      return;
    }
    if (this.#fault !== undefined) {
      log?.debug({ code, ...where, err: messageOf(err) }, 'content store: another write failed');
      return;
    }
    const t = this.#opts.now();
    this.#fault = { code, message: messageOf(err), since: t, retryAt: t + this.#opts.retryMs };
    log?.warn(
      { code, ...where, err: messageOf(err), retryMs: this.#opts.retryMs },
      'content store: cannot write; blobs pass through unstored until a retry succeeds',
    );
  }

  /** Whether writes may be tried now: true unless a fault stands whose retry is not due or whose probe fails. */
  async writable(): Promise<boolean> {
    const fault = this.#fault;
    if (fault === undefined) return true;
    if (this.#opts.now() < fault.retryAt) return false;
    this.#probe ??= this.#runProbe().finally(() => {
      this.#probe = undefined;
    });
    return this.#probe;
  }

  /** Throws while writes are stopped by a fault (a due probe runs first). */
  async whenWritable(): Promise<void> {
    if (await this.writable()) return;
    const f = this.#fault;
    throw new SigilError({
      code: 'INTERNAL',
      message: `content store: not writing since ${f ? new Date(f.since).toISOString() : '?'} (${f?.code ?? '?'}: ${f?.message ?? ''}); retrying after ${f ? new Date(f.retryAt).toISOString() : '?'}`,
    });
  }

  /**
   * Whether the file system has room for `size` more bytes (unknown: 0) on top of `reserved`
   * (writes under way) and WRITE_ROOM_MARGIN_BYTES. A file system with less than the margin free
   * is a fault (writes stop); one with too little room for this blob only is counted and logged.
   */
  async room(size: number | undefined, reserved: number): Promise<boolean> {
    let free: number;
    try {
      free = await this.#freeBytes();
    } catch (err) {
      this.failed('write', err, { path: this.#opts.layout.dir });
      return false;
    }
    if (free < WRITE_ROOM_MARGIN_BYTES) {
      this.failed('write', this.#noSpace(free), { path: this.#opts.layout.dir });
      return false;
    }
    const need = (size ?? 0) + reserved + WRITE_ROOM_MARGIN_BYTES;
    if (free >= need) return true;
    this.#opts.metrics?.storeFaults.inc({ op: 'write', code: 'ENOSPC' });
    this.#opts.logger?.info({ size, reserved, free }, 'content store: no room for this blob; it passes through unstored');
    return false;
  }

  async #runProbe(): Promise<boolean> {
    const { layout } = this.#opts;
    const path = layout.tmpPath('probe');
    try {
      await layout.create();
      const fh = await open(path, 'wx', FILE_MODE);
      try {
        await fh.writeFile(Buffer.alloc(PROBE_BYTES));
        await fh.sync();
      } finally {
        await fh.close();
        await rm(path, { force: true }).catch(() => {});
      }
      const free = await this.#freeBytes();
      if (free < WRITE_ROOM_MARGIN_BYTES) throw this.#noSpace(free);
    } catch (err) {
      const t = this.#opts.now();
      const since = this.#fault?.since ?? t;
      this.#fault = { code: ioErrorCode(err) ?? 'EUNKNOWN', message: messageOf(err), since, retryAt: t + this.#opts.retryMs };
      this.#opts.logger?.debug({ code: this.#fault.code, err: messageOf(err) }, 'content store: still cannot write');
      return false;
    }
    const since = this.#fault?.since;
    this.#fault = undefined;
    this.#opts.recovered();
    this.#opts.logger?.info({ dir: layout.dir, downMs: since === undefined ? undefined : this.#opts.now() - since }, 'content store: writing again');
    return true;
  }

  async #freeBytes(): Promise<number> {
    const st = await statfs(this.#opts.layout.dir);
    return st.bavail * st.bsize;
  }

  #noSpace(free: number): NodeJS.ErrnoException {
    return Object.assign(new Error(`${this.#opts.layout.dir}: ${free} bytes free, under ${WRITE_ROOM_MARGIN_BYTES}`), { code: 'ENOSPC', syscall: 'statfs' });
  }
}
