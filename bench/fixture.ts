/** What the benchmark pushes to its origin registry and how sigil names it, and how long it measures. */

export const REPO_BLOB = 'bench/blobs';
export const REPO_INDEX = 'bench/multi';
export const REPO_SIGNED = 'bench/signed';
export const REPO_KEY_COLD = 'bench/key-cold';
export const REPO_KEYLESS_COLD = 'bench/keyless-cold';
export const REPO_HERD = 'bench/herd';
export const REPO_STORE = 'bench/store';
export const REPO_SHARED = 'bench/shared';
export const TAG = 'latest';
export const UPSTREAM_NAME = 'registry.bench';
export const NOHASH_UPSTREAM = 'nohash.bench';
export const OFF_UPSTREAM = 'off.bench';
export const HERD_UPSTREAM = 'herd.bench';

export const BIG_BLOB_BYTES = 1024 * 1024 * 1024; // the figure: a 1 GiB layer
export const SMALL_BLOB_BYTES = 64 * 1024 * 1024; // for the memory comparison: RSS must not grow with blob size
export const HERD_CLIENTS = 32; // the herd
export const HERD_LAYERS = 10; // manifest + config + 10 layers = 12 objects
export const HERD_LAYER_BYTES = 1024 * 1024; // random, so gzip keeps them ~1 MiB: 10 MiB per client, 320 MiB in all
export const STORE_MAX_BYTES = 4 * 1024 ** 3; // every blob of a section with room to spare: nothing evicted
export const LOAD_CONNECTIONS = 16; // enough to keep 2 cores busy, few enough not to measure queueing only
export const WARMUP_DURATION_S = 1; // JIT and connection pools warm before each measured run
export const RSS_SAMPLE_MS = 10; // a 64 MiB stream lasts ~100-300 ms: sample often enough to see it
export const PLATFORMS = [
  { os: 'linux', architecture: 'amd64' },
  { os: 'linux', architecture: 'arm64', variant: 'v8' },
  { os: 'linux', architecture: 'arm', variant: 'v7' },
  { os: 'linux', architecture: 's390x' },
];

/** How many times, and how long, each figure is measured. */
export interface Counts {
  /** GETs per target of the 1 GiB blob (~2 s each); medians are reported, single runs vary ±30 %. */
  blobReps: number;
  /** A 64 MiB GET lasts 0.05-0.2 s and varies ±50 %: more of them, still ~15 s in all. */
  smallBlobReps: number;
  loadS: number;
  /** c=1 runs: latency of one request, no coalescing; steadier, so shorter. */
  serialS: number;
  /** Distinct digests per signature kind: each verification is cold. */
  coldImages: number;
  /** store section: distinct blobs filled cold through each peer (each one GET). */
  coldFills: number;
  /** store section: warm GETs of a stored blob per peer. */
  warmReps: number;
}

export const FULL: Counts = { blobReps: 5, smallBlobReps: 15, loadS: 10, serialS: 5, coldImages: 5, coldFills: 3, warmReps: 5 };
/** `--quick`: a trial of the harness, its figures noise. */
export const QUICK: Counts = { blobReps: 2, smallBlobReps: 4, loadS: 3, serialS: 2, coldImages: 2, coldFills: 1, warmReps: 2 };
