/** The figures of the section `store` (bench/store-section.ts) and their part of the page. */
import { median } from './measure.js';

/** distribution's pull-through cache, sigil with a content store, sigil without one. */
export type Peer = 'distribution' | 'sigilStore' | 'sigil';
/** The two peers that keep blobs. */
type Keeper = 'distribution' | 'sigilStore';
/** Cold-fill references that keep nothing (store-section.ts). */
export type Reference = 'pipe' | 'sigil';
type PerPeer<T> = Partial<Record<Peer, T>>;

export interface StreamPhase {
  streams: number;
  warm: boolean;
  /** RSS just before the phase, bytes. */
  before: number;
  /** Peak RSS during the phase: VmHWM (reset just before) where the kernel allows, else the largest sample. */
  peak: number;
  peakFrom: 'VmHWM' | 'sampled';
  /** RSS right after the last stream ended, and a few seconds later. */
  after: number;
  settled: number;
  wallS: number;
  /** All streams' bytes over the wall time, 10^6 bytes/s. */
  mbps: number;
}

export interface StoreFigures {
  /** The CPU every peer was pinned to (taskset), or undefined: not pinned. */
  pinnedCpu: string | undefined;
  blobBytes: number;
  coldFills: number;
  warmReps: number;
  loadS: number;
  connections: number;
  cold: {
    /** The first GET, to its last byte. */
    firstMbps: Partial<Record<Keeper, number[]>>;
    /** From the first GET until the peer serves the blob from its own store. */
    storedMbps: Partial<Record<Keeper, number[]>>;
    /** CPU s of the peer's process until then. */
    cpuS: Partial<Record<Keeper, number[]>>;
    /**
     * References, pinned the same, that store nothing: the first GET of the same blobs through
     * a bare node:http pipe proxy (no hash, no store: what Node.js streams on that core) and
     * through sigil without a store (digest-checked); MB/s and the process's CPU s.
     */
    reference: Partial<Record<Reference, { mbps: number[]; cpuS: number[] }>>;
  };
  warm: { mbps: Partial<Record<Keeper, number[]>>; cpuS: Partial<Record<Keeper, number[]>> };
  manifests: PerPeer<{ rps: number; p50: number; p99: number }>;
  memory: { idle: PerPeer<number>; maxSampled: PerPeer<number>; hwm: PerPeer<number> };
  streams?: { blobBytes: number; idle: number; phases: StreamPhase[]; hwmEnd: number };
}

const DASH = '—';
const MIB = 1024 * 1024;
// The bars (#10, item 7)
const COLD_VS_DISTRIBUTION = 1;
const WARM_VS_DISTRIBUTION = 0.9;
const STORE_VS_STORELESS = 0.8; // "within 1.25× of the store-less rate"
const PEAK_RSS_MAX_MIB = 200;
const PER_STREAM_MAX_MIB = 1;

const fmt = (v: number | undefined, d: number): string => (v === undefined ? DASH : v.toFixed(d));
const med = (xs: number[] | undefined): number | undefined => (xs === undefined || xs.length === 0 ? undefined : median(xs));
const mib = (v: number | undefined): number | undefined => (v === undefined ? undefined : v / MIB);
const verdict = (ok: boolean): string => (ok ? '**met**' : '**not met**');

function atLeast(value: number | undefined, base: number | undefined, bar: number, baseName: string): string {
  if (value === undefined || base === undefined || base === 0) return `≥ ${bar}× ${baseName}: not measured`;
  return `≥ ${bar}× ${baseName}: ${verdict(value / base >= bar)}`;
}

function row(figure: string, dist: number | undefined, sigil: number | undefined, d: number, goal = ''): string {
  const r = dist === undefined || sigil === undefined || dist === 0 ? DASH : `${(sigil / dist).toFixed(2)}×`;
  return `| ${figure} | ${fmt(dist, d)} | ${fmt(sigil, d)} | ${r} | ${goal} |`;
}

function streamLines(s: NonNullable<StoreFigures['streams']>): string[] {
  const peak = (n: number, warm: boolean): number | undefined => s.phases.find((p) => p.streams === n && p.warm === warm)?.peak;
  const many = Math.max(...s.phases.map((p) => p.streams));
  const growth = (warm: boolean): number | undefined => {
    const one = peak(1, warm);
    const all = peak(many, warm);
    return one === undefined || all === undefined || many <= 1 ? undefined : (all - one) / (many - 1) / MIB;
  };
  const g = (warm: boolean): string => {
    const v = growth(warm);
    return v === undefined ? DASH : `${v.toFixed(2)} MiB (${verdict(v <= PER_STREAM_MAX_MIB)})`;
  };
  return [
    '',
    `Concurrent downloads of one ${s.blobBytes / MIB} MiB blob through a sigil with a content store (its own process, not pinned; RSS idle ${fmt(mib(s.idle), 0)} MiB; a 16 MiB blob through it first, cold and warm, so that what the process pays once is paid before every phase):`,
    '',
    '| clients | store | RSS before, MiB | peak RSS, MiB | RSS right after, MiB | RSS 2 s after, MiB | wall s | MB/s in all |',
    '|---:|---|---:|---:|---:|---:|---:|---:|',
    ...s.phases.map(
      (p) =>
        `| ${p.streams} | ${p.warm ? 'warm (served from disk)' : 'cold (one download, every client reading behind it)'} | ${fmt(mib(p.before), 0)} | ${fmt(mib(p.peak), 0)}${p.peakFrom === 'sampled' ? ' (sampled)' : ''} | ` +
        `${fmt(mib(p.after), 0)} | ${fmt(mib(p.settled), 0)} | ${p.wallS.toFixed(2)} | ${p.mbps.toFixed(0)} |`,
    ),
    '',
    `Peak RSS per additional concurrent stream, (peak at ${many} − peak at 1) / ${many - 1}: cold ${g(false)}, warm ${g(true)} (goal ≤ ~${PER_STREAM_MAX_MIB} MiB per stream); ` +
      `the process's VmHWM at the end: ${fmt(mib(s.hwmEnd), 0)} MiB.`,
  ];
}

/** The section's part of the page: how it was measured, one table, the streams table. */
export function storeLines(s: StoreFigures, sigilName: string): string[] {
  const size = `${s.blobBytes / MIB} MiB`;
  const pin = s.pinnedCpu !== undefined
    ? `**both pinned to CPU ${s.pinnedCpu} with \`taskset\`** (distribution's Go runtime then runs GOMAXPROCS=1; sigil sizes its hash workers from the cores it sees: with one, it hashes on its event loop); the client and the origin registry are not pinned`
    : '**not pinned** (no taskset on this machine): each may use every core';
  const m = s.manifests;
  const storeVsPlain = m.sigilStore !== undefined && m.sigil !== undefined ? m.sigilStore.rps / m.sigil.rps : undefined;
  const hwm = mib(s.memory.hwm.sigilStore);
  return [
    '',
    '## sigil with its content store against distribution\'s pull-through cache',
    '',
    `- distribution: \`docker-registry serve\` with \`proxy.remoteurl\` = the origin registry, filesystem storage in a temp dir; sigil: \`${sigilName} serve\` with \`cache.store\` in a temp dir; ` +
      `both empty at the start; ${pin}. A second sigil without a content store (pinned the same) for the manifest comparison`,
    `- cold fill: the first GET of each of ${s.coldFills} distinct ${size} blobs through each peer (which goes first alternates), timed to its last byte, ` +
      'and until the peer serves the blob from its own store (distribution: its data file and the repository\'s link exist; sigil: a HEAD answered without an upstream request). ' +
      'distribution 2.8 streams the first GET straight from the origin and stores the blob with a second download of its own in the background; ' +
      'sigil downloads once into its store, hashes the bytes, and serves the client from the file behind the download. ' +
      'After each blob\'s pair, two references that keep nothing GET it too, pinned the same: a bare node:http pipe proxy (bench/pipe-proxy.ts: what Node.js streams on one core, no hash) and the store-less sigil (the digest check alone)',
    `- warm reads: the first blob again from each one's store, ${s.warmReps} GETs each, alternating (sigil checked: no upstream request)`,
    `- manifests: the 4-platform index by tag, autocannon c=${s.connections}, ${s.loadS} s per run after a 1 s warm-up, runs ordered sigil, sigil-store, distribution, distribution, sigil-store, sigil (figures over both runs)`,
    '- memory: RSS sampled every 10 ms during every measurement above, and VmHWM at its end',
    '',
    '| figure | distribution | sigil, content store | sigil/distribution | goal |',
    '|---|---:|---:|---:|---|',
    row(`cold fill, first GET of a ${size} blob, MB/s (median of ${s.coldFills})`, med(s.cold.firstMbps.distribution), med(s.cold.firstMbps.sigilStore), 0,
      atLeast(med(s.cold.firstMbps.sigilStore), med(s.cold.firstMbps.distribution), COLD_VS_DISTRIBUTION, 'distribution')),
    row('cold fill, until served from the store, MB/s (size ÷ time from the first GET)', med(s.cold.storedMbps.distribution), med(s.cold.storedMbps.sigilStore), 0),
    row('cold fill, CPU s of the peer until stored', med(s.cold.cpuS.distribution), med(s.cold.cpuS.sigilStore), 2),
    row('reference: first GET through a bare Node.js pipe proxy (sigil column), MB/s', med(s.cold.firstMbps.distribution), med(s.cold.reference.pipe?.mbps), 0),
    row('reference: first GET through sigil without a store (sigil column), MB/s', med(s.cold.firstMbps.distribution), med(s.cold.reference.sigil?.mbps), 0),
    row('reference: CPU s of the first GET, the bare pipe (sigil column)', undefined, med(s.cold.reference.pipe?.cpuS), 2),
    row('reference: CPU s of the first GET, sigil without a store (sigil column)', undefined, med(s.cold.reference.sigil?.cpuS), 2),
    row(`warm read, ${size} from the store, MB/s (median of ${s.warmReps})`, med(s.warm.mbps.distribution), med(s.warm.mbps.sigilStore), 0,
      atLeast(med(s.warm.mbps.sigilStore), med(s.warm.mbps.distribution), WARM_VS_DISTRIBUTION, 'distribution')),
    row('warm read, CPU s of the peer', med(s.warm.cpuS.distribution), med(s.warm.cpuS.sigilStore), 2),
    row(`index by tag, c=${s.connections}: req/s`, m.distribution?.rps, m.sigilStore?.rps, 0,
      storeVsPlain === undefined ? '' : `≥ ${STORE_VS_STORELESS}× sigil without the store (within 1.25×): ${verdict(storeVsPlain >= STORE_VS_STORELESS)} (${storeVsPlain.toFixed(2)}×)`),
    row(`index by tag, c=${s.connections}: req/s, sigil without the store (sigil column)`, m.distribution?.rps, m.sigil?.rps, 0),
    row(`index by tag, c=${s.connections}: latency p99, ms`, m.distribution?.p99, m.sigilStore?.p99, 2),
    row('RSS idle (after one request), MiB', mib(s.memory.idle.distribution), mib(s.memory.idle.sigilStore), 1),
    row('RSS, largest sample during the measurements, MiB', mib(s.memory.maxSampled.distribution), mib(s.memory.maxSampled.sigilStore), 1),
    row('peak RSS (VmHWM) after them, MiB', mib(s.memory.hwm.distribution), hwm, 1, hwm === undefined ? '' : `sigil ≤ ${PEAK_RSS_MAX_MIB} MiB: ${verdict(hwm <= PEAK_RSS_MAX_MIB)}`),
    ...(s.streams !== undefined ? streamLines(s.streams) : []),
  ];
}
