export { ContentStore } from './content-store.js';
export type { BeginWrite, ContentStoreOptions, EvictResult, MetaSweepResult } from './content-store.js';
export * from './limits.js';
export { Catalog, type TagRecord, type ManifestRecord, type VerdictRecord, type RecordSnapshot } from './catalog.js';
export { recordId, type RecordRef, type RecordKind, type RepositoryRef, type TagRef, type ObjectRef, type VerdictRef } from './catalog-keys.js';
