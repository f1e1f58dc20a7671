import type { Digest } from '../oci/digest.js';

/** What the heap orders: least recently used first, ties by digest (a stable, total order). */
export interface HeapNode {
  readonly digest: Digest;
  readonly lastUsed: number;
  /** The node's index in the heap's array; -1 while not in a heap. Kept by the heap. */
  heapPos: number;
}

function before(a: HeapNode, b: HeapNode): boolean {
  return a.lastUsed < b.lastUsed || (a.lastUsed === b.lastUsed && a.digest < b.digest);
}

/**
 * A binary min-heap of the store's objects by last use, each node knowing its own position:
 * adding, removing and re-ordering one object after a use are O(log n), finding the least
 * recently used is O(1). Eviction runs after nearly every write under cache pressure: it must
 * not sort the whole index each time (75 ms on the event loop at 100k objects, 1.7 s at 1M).
 */
export class LeastUsedHeap<N extends HeapNode> {
  readonly #a: N[] = [];

  get size(): number {
    return this.#a.length;
  }

  push(n: N): void {
    n.heapPos = this.#a.length;
    this.#a.push(n);
    this.#up(n.heapPos);
  }

  remove(n: N): void {
    const i = n.heapPos;
    if (i < 0 || this.#a[i] !== n) return;
    const last = this.#a.pop() as N;
    n.heapPos = -1;
    if (i === this.#a.length) return;
    this.#a[i] = last;
    last.heapPos = i;
    this.#fix(i);
  }

  /** The node's lastUsed changed: move it to its place. */
  update(n: N): void {
    if (n.heapPos >= 0 && this.#a[n.heapPos] === n) this.#fix(n.heapPos);
  }

  /**
   * The least recently used node not in `skip`, without changing the heap: a walk down from the
   * root in order, O(k log k) for k nodes skipped (eviction skips only the few objects it spared).
   */
  least(skip?: ReadonlySet<Digest>): N | undefined {
    const a = this.#a;
    if (a.length === 0) return undefined;
    if (skip === undefined || skip.size === 0 || !skip.has(a[0].digest)) return a[0];
    const frontier: number[] = [0]; // a small heap of positions, ordered like the nodes there
    const less = (x: number, y: number): boolean => before(a[x], a[y]);
    while (frontier.length > 0) {
      const i = popMin(frontier, less);
      if (!skip.has(a[i].digest)) return a[i];
      for (const c of [2 * i + 1, 2 * i + 2]) if (c < a.length) pushMin(frontier, c, less);
    }
    return undefined;
  }

  #fix(i: number): void {
    if (i > 0 && before(this.#a[i], this.#a[(i - 1) >> 1])) this.#up(i);
    else this.#down(i);
  }

  #up(i: number): void {
    const a = this.#a;
    const n = a[i];
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (!before(n, a[p])) break;
      a[i] = a[p];
      a[i].heapPos = i;
      i = p;
    }
    a[i] = n;
    n.heapPos = i;
  }

  #down(i: number): void {
    const a = this.#a;
    const n = a[i];
    for (;;) {
      const l = 2 * i + 1;
      if (l >= a.length) break;
      const c = l + 1 < a.length && before(a[l + 1], a[l]) ? l + 1 : l;
      if (!before(a[c], n)) break;
      a[i] = a[c];
      a[i].heapPos = i;
      i = c;
    }
    a[i] = n;
    n.heapPos = i;
  }
}

function pushMin(h: number[], v: number, less: (x: number, y: number) => boolean): void {
  h.push(v);
  let i = h.length - 1;
  while (i > 0) {
    const p = (i - 1) >> 1;
    if (!less(h[i], h[p])) break;
    [h[i], h[p]] = [h[p], h[i]];
    i = p;
  }
}

function popMin(h: number[], less: (x: number, y: number) => boolean): number {
  const top = h[0];
  const last = h.pop() as number;
  if (h.length > 0) {
    h[0] = last;
    let i = 0;
    for (;;) {
      const l = 2 * i + 1;
      if (l >= h.length) break;
      const c = l + 1 < h.length && less(h[l + 1], h[l]) ? l + 1 : l;
      if (!less(h[c], h[i])) break;
      [h[i], h[c]] = [h[c], h[i]];
      i = c;
    }
  }
  return top;
}
