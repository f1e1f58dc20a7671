export { ContentStore } from './content-store.js';
export type { BeginWrite, ContentStoreOptions, EvictResult, MetaSweepResult } from './content-store.js';
export * from './limits.js';
export { Catalog, type TagRecord, type ManifestRecord, type VerdictRecord } from './catalog.js';
