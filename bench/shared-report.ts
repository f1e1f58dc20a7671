/** The figures of the section `shared` (bench/shared-section.ts) and their part of the page. */
import { median } from './measure.js';

/** Three replicas of each: distribution's pull-through caches, sigil with `cache.shared`. */
export type Fleet = 'distribution' | 'sigil';

export interface FleetHerd {
  /** Wall time of every client's pull, s. */
  wallS: number;
  /** Upstream GETs of each object's bytes: the manifest (by digest or by tag), the config, each layer. */
  perObject: number[];
  /** Every request that reached the origin. */
  upstream: number;
  /** Requests that reached the origin, as "METHOD path ×n" (digests shortened). */
  seen: string;
}

export interface FollowRun {
  holder: string;
  follower: string;
  /** MB/s (10^6 bytes/s) of each client, from its request to its last byte. */
  holderMbps: number;
  followerMbps: number;
  /** From the request to the first byte of the body, ms. */
  holderTtfbMs: number;
  followerTtfbMs: number;
  /** GETs of the blob that reached the origin (1: the follower streamed from the holder). */
  upstreamGets: number;
}

export interface ReplicaMemory {
  name: string;
  role: 'holder' | 'follower';
  before: number;
  maxSampled: number;
  /** VmHWM after a reset just before the phase, where the kernel allows it; else the largest sample. */
  peak: number;
  peakFrom: 'VmHWM' | 'sampled';
  after: number;
  /** MB/s of the replica's client. */
  mbps: number;
}

export interface WarmPull {
  /** S3 requests during the pull, by "METHOD objects|records|…". */
  s3: Record<string, number>;
  s3Total: number;
  /** S3 requests in the background after the pull, until the bucket was quiet (replication checks). */
  s3After: number;
  /** Requests that reached the origin during the pull, and how many of them were GETs of the image's objects. */
  origin: number;
  originObjects: number;
  originSeen: string;
  wallS: number;
}

export interface SharedFigures {
  replicas: number;
  clientsPerReplica: number;
  /** manifest + config + layers */
  objects: number;
  layerBytes: number;
  herd: Partial<Record<Fleet, FleetHerd>>;
  follow: { blobBytes: number; runs: FollowRun[] };
  memory?: { blobBytes: number; replicas: ReplicaMemory[]; upstreamGets: number };
  warm?: WarmPull;
}

const DASH = '—';
const MIB = 1024 * 1024;
// The bars (#11, point 6) and the store section's memory bar
const UPSTREAM_PER_OBJECT = 1;
const PEAK_RSS_MAX_MIB = 200;

const fmt = (v: number | undefined, d: number): string => (v === undefined || !Number.isFinite(v) ? DASH : v.toFixed(d));
const mib = (v: number): string => (v / MIB).toFixed(0);
const verdict = (ok: boolean): string => (ok ? '**met**' : '**not met**');
const sum = (xs: readonly number[]): number => xs.reduce((a, x) => a + x, 0);

function herdRows(f: SharedFigures): string[] {
  const d = f.herd.distribution;
  const s = f.herd.sigil;
  const row = (figure: string, pick: (h: FleetHerd) => number, dec: number, goal = ''): string =>
    `| ${figure} | ${d ? fmt(pick(d), dec) : DASH} | ${s ? fmt(pick(s), dec) : DASH} | ${goal} |`;
  const most = s ? Math.max(...s.perObject) : undefined;
  return [
    '| figure | distribution ×3 | sigil ×3, shared | goal |',
    '|---|---:|---:|---|',
    row('upstream GETs of any one image object, most', (h) => Math.max(...h.perObject), 0,
      most === undefined ? '' : `≤ ${UPSTREAM_PER_OBJECT} (sigil): ${verdict(most <= UPSTREAM_PER_OBJECT)}`),
    row('upstream GETs of any one image object, fewest', (h) => Math.min(...h.perObject), 0),
    row(`upstream GETs of the image's ${f.objects} objects, in all`, (h) => sum(h.perObject), 0),
    row('requests reaching the origin, in all (sigil: with tag lookups and signature discovery)', (h) => h.upstream, 0),
    row('wall time of every pull, s', (h) => h.wallS, 2),
  ];
}

function followLines(f: SharedFigures): string[] {
  const runs = f.follow.runs;
  if (runs.length === 0) return [];
  const ratio = median(runs.map((r) => r.followerMbps / r.holderMbps));
  const ttfb = median(runs.map((r) => r.followerTtfbMs));
  return [
    '',
    `Follower against the lease holder: a cold ${f.follow.blobBytes / MIB} MiB blob, one client on the holder, then (once its first byte came) one client on another replica:`,
    '',
    '| holder → follower | holder MB/s | follower MB/s | follower/holder | holder TTFB, ms | follower TTFB, ms | upstream GETs of the blob |',
    '|---|---:|---:|---:|---:|---:|---:|',
    ...runs.map((r) =>
      `| ${r.holder} → ${r.follower} | ${r.holderMbps.toFixed(0)} | ${r.followerMbps.toFixed(0)} | ${(r.followerMbps / r.holderMbps).toFixed(2)}× | ` +
      `${r.holderTtfbMs.toFixed(1)} | ${r.followerTtfbMs.toFixed(1)} | ${r.upstreamGets}${r.upstreamGets === 1 ? '' : ' (**the follower did not follow**)'} |`),
    '',
    `Median follower/holder throughput ${ratio.toFixed(2)}×; median time to first byte for a follower ${ttfb.toFixed(1)} ms.`,
  ];
}

function memoryLines(m: NonNullable<SharedFigures['memory']>): string[] {
  const worst = Math.max(...m.replicas.map((r) => r.peak));
  return [
    '',
    `Memory while one replica downloads a cold ${m.blobBytes / MIB} MiB blob and the others follow it (one client each; RSS sampled every 10 ms; ` +
      `upstream GETs of the blob: ${m.upstreamGets}${m.upstreamGets === 1 ? '' : ', **the followers did not all follow**'}):`,
    '',
    '| replica | role | RSS before, MiB | largest sample, MiB | peak RSS, MiB | RSS after, MiB | growth (largest − before), MiB | its client, MB/s |',
    '|---|---|---:|---:|---:|---:|---:|---:|',
    ...m.replicas.map((r) =>
      `| ${r.name} | ${r.role} | ${mib(r.before)} | ${mib(r.maxSampled)} | ${mib(r.peak)}${r.peakFrom === 'sampled' ? ' (sampled)' : ''} | ${mib(r.after)} | ` +
      `${mib(r.maxSampled - r.before)} | ${r.mbps.toFixed(0)} |`),
    '',
    `Flat: the peak of every replica ≤ ${PEAK_RSS_MAX_MIB} MiB (the store section's bar): ${verdict(worst <= PEAK_RSS_MAX_MIB * MIB)} (${mib(worst)} MiB).`,
  ];
}

function warmLines(w: WarmPull, objects: number): string[] {
  const by = Object.entries(w.s3).sort(([a], [b]) => a.localeCompare(b)).map(([k, n]) => `${k} ×${n}`).join(', ');
  return [
    '',
    'A replica restarted with an empty disk pulls the image once (one client): what it asks the bucket and the origin.',
    '',
    '| figure | value |',
    '|---|---:|',
    `| S3 requests during the pull | ${w.s3Total} |`,
    `| S3 requests per image object | ${(w.s3Total / objects).toFixed(2)} |`,
    `| S3 requests after it, in the background (until the bucket was quiet) | ${w.s3After} |`,
    `| requests reaching the origin during the pull | ${w.origin} |`,
    `| of them GETs of the image's objects (goal 0: served from the bucket) | ${w.originObjects} (${verdict(w.originObjects === 0)}) |`,
    `| wall time of the pull, s | ${w.wallS.toFixed(2)} |`,
    '',
    `S3 requests during the pull: ${by === '' ? 'none' : by} (the replica replicates what it commits in the background: HEADs of objects and PUTs of ` +
      `records, none for what it has just read from the bucket; they may fall in the pull's time). Origin requests during it: ${w.originSeen === '' ? 'none' : w.originSeen}.`,
  ];
}

/** The section's part of the page. */
export function sharedLines(f: SharedFigures, sigilName: string): string[] {
  const s = f.herd.sigil;
  const d = f.herd.distribution;
  return [
    '',
    `## ${f.replicas} sigil replicas sharing a bucket and Redis (\`cache.shared\`)`,
    '',
    `- sigil: ${f.replicas} \`${sigilName} serve\` processes, each with its own \`cache.store\` and peer port, the same \`cache.shared\`: ` +
      'a real `redis-server` (no persistence), s3rver in the bench process behind a counting pass-through (path style), a 48-character peer token; ' +
      'the image under `mode: enforce` (P-256 key), the blobs under the catch-all policy; all replicas reach the origin through one counting pass-through. Not pinned',
    `- distribution: ${f.replicas} \`docker-registry\` pull-through caches (\`proxy.remoteurl\` = the same counting pass-through), each with its own storage. ` +
      'Harbor is not measured (goharbor #22184: two upstream GETs per cold blob)',
    `- herd: ${f.clientsPerReplica} concurrent clients on each replica (${f.replicas * f.clientsPerReplica} in all), each pulls the same signed ${f.objects}-object image ` +
      `(manifest by tag, config and ${f.objects - 2} layers of ${f.layerBytes / MIB} MiB by digest, every digest checked); cold: sigil first, then distribution`,
    '- follower: one client on the replica that takes the lease, one on another replica as soon as the first byte came; each timed to its last byte, and to its first',
    '- S3 requests per pull: after the herd\'s uploads to the bucket are done, one replica is stopped and started again with an empty disk; it pulls the image once, verified',
    '',
    ...herdRows(f),
    '',
    s !== undefined ? `Origin requests of the sigil herd: ${s.seen}.` : '',
    d !== undefined ? `Origin requests of the distribution herd: ${d.seen}.` : '',
    ...(f.warm !== undefined ? warmLines(f.warm, f.objects) : []),
    ...followLines(f),
    ...(f.memory !== undefined ? memoryLines(f.memory) : []),
  ];
}
