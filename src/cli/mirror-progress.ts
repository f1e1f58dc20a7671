import { formatBytes, formatDuration, formatRate } from '../mirror/format.js';
import { PROGRESS_LINE_MS, PROGRESS_REDRAW_MS } from '../mirror/limits.js';
import type { MirrorProgress, MirrorResult } from '../mirror/run.js';
import type { ImportResult } from '../mirror/import.js';
import type { CliIo } from './io.js';

export interface ProgressOptions {
  /** stderr is a terminal: one line redrawn in place; otherwise lines appended. */
  readonly tty: boolean;
  readonly now: () => number;
  /** Between two progress lines while an image downloads; default PROGRESS_REDRAW_MS on a terminal, else PROGRESS_LINE_MS. */
  readonly intervalMs?: number;
}

/**
 * `sigil mirror`'s progress on stderr: the tags selected, a line per image when it is done, and
 * while one downloads its bytes and rate with the run's totals so far — redrawn in place on a
 * terminal, else a line every PROGRESS_LINE_MS (a log or CI sees it move) —, and the totals at the end.
 */
export class ProgressLines implements MirrorProgress {
  readonly #io: CliIo;
  readonly #tty: boolean;
  readonly #now: () => number;
  readonly #intervalMs: number;
  readonly #start: number;
  #label = '';
  #tagStart = 0;
  #tagBytes = 0;
  #runBytes = 0;
  #shown = 0;

  constructor(io: CliIo, opts: ProgressOptions) {
    this.#io = io;
    this.#tty = opts.tty;
    this.#now = opts.now;
    this.#intervalMs = opts.intervalMs ?? (opts.tty ? PROGRESS_REDRAW_MS : PROGRESS_LINE_MS);
    this.#start = opts.now();
  }

  selected(entry: Parameters<MirrorProgress['selected']>[0], tags: Parameters<MirrorProgress['selected']>[1], error?: string): void {
    const what = `${entry.upstream}/${entry.repository}`;
    if (error !== undefined) this.#io.stderr(`${what}: ${error}\n`);
    this.#io.stderr(`${what}: ${tags.length} tag(s) selected${tags.length > 0 ? `: ${tags.map((t) => t.tag).join(' ')}` : ''}\n`);
  }

  tagStarted(entry: Parameters<MirrorProgress['tagStarted']>[0], tag: string, index: number, total: number): void {
    this.#label = `[${index + 1}/${total}] ${entry.upstream}/${entry.repository}:${tag}`;
    this.#tagBytes = 0;
    this.#tagStart = this.#shown = this.#now();
    if (this.#tty) this.#io.stderr(`\r\x1b[K${this.#label} …`);
  }

  bytes(n: number): void {
    this.#tagBytes += n;
    this.#runBytes += n;
    const t = this.#now();
    if (t - this.#shown < this.#intervalMs) return;
    this.#shown = t;
    const tag = `${formatBytes(this.#tagBytes)} at ${formatRate(this.#tagBytes, t - this.#tagStart)}`;
    const run = `${formatBytes(this.#runBytes)} in ${formatDuration(t - this.#start)} (${formatRate(this.#runBytes, t - this.#start)})`;
    if (this.#tty) this.#io.stderr(`\r\x1b[K${this.#label} … ${tag}; total ${run}`);
    else this.#io.stderr(`${this.#label} … ${tag}; total ${run}\n`);
  }

  tagDone(r: MirrorResult, index: number, total: number): void {
    const head = `[${index + 1}/${total}] ${r.image}:${r.tag}`;
    const took = formatDuration(this.#now() - this.#tagStart);
    this.#io.stderr(`${this.#tty ? '\r\x1b[K' : ''}${head} ${resultText(r, took)}\n`);
  }

  /** The run's totals, once it is over. */
  finished(results: readonly MirrorResult[]): void {
    const t = this.#now() - this.#start;
    this.#io.stderr(`${results.length} image(s) in ${formatDuration(t)}: ${formatBytes(this.#runBytes)} downloaded (${formatRate(this.#runBytes, t)})\n`);
  }
}

/** How a mirrored or imported image went, after its name: status, digest, sizes or the reason. */
function resultText(r: MirrorResult, took: string): string {
  if (r.status === 'denied' || r.status === 'failed') return `${r.status}${r.digest ? ` ${r.digest}` : ''}: ${r.reason ?? ''}`;
  const signed = r.signer ? ` signed by ${r.signer}` : '';
  return `${r.status} ${r.digest} (${r.objects} objects, ${formatBytes(r.bytes)}, ${formatBytes(r.newBytes)} new, ${took})${signed}${r.reason ? `: ${r.reason}` : ''}`;
}

/** `sigil mirror --import`'s line per ref. */
export function importLine(r: ImportResult): string {
  if (r.status === 'denied' || r.status === 'failed') return `${r.status} ${r.ref}${r.digest ? ` ${r.digest}` : ''}: ${r.reason ?? ''}`;
  return `${r.status} ${r.ref} ${r.digest} (${r.objects} objects, ${formatBytes(r.newBytes)} new)${r.signer ? ` signed by ${r.signer}` : ''}${r.reason ? `: ${r.reason}` : ''}`;
}
