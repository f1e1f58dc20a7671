export { ContentStore } from './content-store.js';
export type { BeginWrite, ContentStoreOptions, EvictResult } from './content-store.js';
export * from './limits.js';
