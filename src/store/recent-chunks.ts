import { FOLLOW_RECENT_BYTES, FOLLOW_RECENT_CHUNKS } from './limits.js';

/**
 * The chunks a write wrote last, FOLLOW_RECENT_BYTES of them (at most FOLLOW_RECENT_CHUNKS), by position in the object: a
 * follower that keeps up takes its bytes from here instead of reading the file back. Holds the
 * writer's own buffers (no copy), so only for a writer whose caller never changes a chunk after
 * writing it (an upstream's body).
 */
export class RecentChunks {
  #chunks: Buffer[] = [];
  /** Where the first kept chunk starts in the object. */
  #at = 0;
  #bytes = 0;

  /** `chunks` were written, in order, right after the ones kept already. */
  keep(chunks: readonly Buffer[]): void {
    for (const c of chunks) {
      if (c.length === 0) continue;
      this.#chunks.push(c);
      this.#bytes += c.length;
    }
    let drop = 0;
    while (drop < this.#chunks.length - 1 && (this.#bytes - this.#chunks[drop]!.length >= FOLLOW_RECENT_BYTES || this.#chunks.length - drop > FOLLOW_RECENT_CHUNKS)) {
      this.#bytes -= this.#chunks[drop]!.length;
      this.#at += this.#chunks[drop]!.length;
      drop++;
    }
    if (drop > 0) this.#chunks.splice(0, drop);
  }

  /** Up to `max` bytes from `pos` (a view, not a copy; never across two chunks); undefined: not kept. */
  at(pos: number, max: number): Buffer | undefined {
    let start = this.#at;
    if (pos < start) return undefined;
    for (const c of this.#chunks) {
      if (pos < start + c.length) {
        const from = pos - start;
        return c.subarray(from, from + Math.min(max, c.length - from));
      }
      start += c.length;
    }
    return undefined;
  }

  /** The write is over: the memory goes (followers still behind read the file). */
  drop(): void {
    this.#chunks = [];
    this.#bytes = 0;
  }
}
