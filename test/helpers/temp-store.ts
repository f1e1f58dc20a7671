import { rm } from 'node:fs/promises';
import { Catalog } from '../../src/store/catalog.js';
import { ContentStore, type ContentStoreOptions } from '../../src/store/content-store.js';
import { tempDir } from './temp.js';

/** A content store and its catalog in a fresh directory; `close()` closes it and removes the directory. */
export async function tempStore(opts: Partial<ContentStoreOptions> = {}): Promise<{ content: ContentStore; catalog: Catalog; dir: string; close(): Promise<void> }> {
  const dir = await tempDir('sigil-store-');
  const content = await ContentStore.open({ dir, maxBytes: 1 << 26, sweepMetaAtOpen: false, ...opts });
  return {
    content,
    catalog: new Catalog(content),
    dir,
    async close() {
      await content.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/**
 * `target` with every method call noted in `calls` (by name), e.g. a content store or catalog
 * whose disk accesses a test counts. Methods run on the target itself (its #private fields).
 */
export function counted<T extends object>(target: T, calls: string[]): T {
  return new Proxy(target, {
    get(t, p) {
      const v = Reflect.get(t, p, t) as unknown;
      if (typeof v !== 'function') return v;
      return (...args: unknown[]) => {
        calls.push(String(p));
        return (v as (...a: unknown[]) => unknown).apply(t, args);
      };
    },
  });
}
