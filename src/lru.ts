import { LRUCache } from 'lru-cache';

/** Every entry counts one toward the bound (see `lru`). */
const ONE = (): number => 1;

/** lru-cache's options, less the bounds `lru` sets itself. */
export type LruOptions<K extends {}, V extends {}, FC = unknown> = Omit<LRUCache.OptionsBase<K, V, FC>, 'max' | 'maxSize' | 'sizeCalculation' | 'maxEntrySize'>;

/**
 * An LRU map of at most `entries` entries whose memory grows with what it holds. Given `max`,
 * lru-cache allocates its arrays for all `max` entries at once: about 3 MiB and 18 ms for
 * 100,000 entries with a TTL (measured here), paid by every such cache at start-up, and again at
 * every reload, however little it will ever hold. Bounded by a size of one an entry instead,
 * its arrays grow as it fills; past `entries`, the least recently used entry goes all the same.
 */
export function lru<K extends {}, V extends {}, FC = unknown>(entries: number, opts: LruOptions<K, V, FC> = {}): LRUCache<K, V, FC> {
  if (!Number.isSafeInteger(entries) || entries < 1) throw new RangeError(`an LRU map holds at least one entry, not ${entries}`);
  return new LRUCache<K, V, FC>({ ...opts, maxSize: entries, sizeCalculation: ONE } as LRUCache.Options<K, V, FC>);
}
