/**
 * The current generation of what sigil builds from its config, and who still uses the older
 * ones. A request takes the current generation when it starts (`acquire`) and keeps it to its
 * end (`release`), so a reload never changes the config under a request in flight. `swap`
 * makes a new generation current and retires the previous one: it is closed once its last
 * user has released it (at once when it has none).
 */
export interface Lease<T> {
  /** The generation's number: 1 for the first, one more per swap. */
  readonly id: number;
  readonly value: T;
  /** Idempotent: a second call does nothing. */
  release(): void;
}

interface Entry<T> {
  readonly id: number;
  readonly value: T;
  users: number;
  retired: boolean;
  closed: boolean;
}

export class Generations<T> {
  #current: Entry<T>;
  readonly #close: (value: T) => Promise<void>;
  /** Retired generations being closed (or waiting for their users). */
  readonly #closing = new Set<Promise<void>>();
  readonly #retired = new Set<Entry<T>>();
  /** Closed: no generation is swapped in any more (a reload finishing during shutdown). */
  #ended = false;

  /** `first(1)` builds generation 1; `close` ends a retired generation (its upstream clients, …) and must not reject. */
  constructor(first: (id: number) => T, close: (value: T) => Promise<void>) {
    this.#current = { id: 1, value: first(1), users: 0, retired: false, closed: false };
    this.#close = close;
  }

  /** The current generation, for what is not a request (readiness, a reload's comparison). */
  get current(): { readonly id: number; readonly value: T } {
    return this.#current;
  }

  /** Generations retired but still used by a request in flight. */
  get draining(): number {
    return this.#retired.size;
  }

  /** The current generation, held until `release()`. */
  acquire(): Lease<T> {
    const entry = this.#current;
    entry.users++;
    let released = false;
    return {
      id: entry.id,
      value: entry.value,
      release: () => {
        if (released) return;
        released = true;
        entry.users--;
        if (entry.retired && entry.users === 0) this.#end(entry);
      },
    };
  }

  /**
   * Makes `build(id)` the current generation; the previous one is closed when its users are done.
   * Returns the new id. When `build` throws, nothing changes.
   */
  swap(build: (id: number) => T): number {
    if (this.#ended) throw new Error('the server is closing');
    const old = this.#current;
    this.#current = { id: old.id + 1, value: build(old.id + 1), users: 0, retired: false, closed: false };
    this.#retire(old);
    return this.#current.id;
  }

  /**
   * Closes every generation, the current one and those still in use (the server has stopped:
   * whatever still holds one will not be answered anyway).
   */
  async close(): Promise<void> {
    this.#ended = true;
    this.#retire(this.#current);
    for (const entry of [...this.#retired]) this.#end(entry);
    await Promise.all([...this.#closing]);
  }

  #retire(entry: Entry<T>): void {
    entry.retired = true;
    this.#retired.add(entry);
    if (entry.users === 0) this.#end(entry);
  }

  #end(entry: Entry<T>): void {
    if (entry.closed) return;
    entry.closed = true;
    this.#retired.delete(entry);
    const closing = this.#close(entry.value).finally(() => this.#closing.delete(closing));
    this.#closing.add(closing);
  }
}
