/** Formats the benchmark's figures as a Markdown page: a header naming the machine, the table, every run. */
import { availableParallelism, cpus, totalmem } from 'node:os';
import { median } from './measure.js';
import type { LoadResult } from './measure.js';
import { sharedLines } from './shared-report.js';
import type { SharedFigures } from './shared-report.js';
import { storeLines } from './store-report.js';
import type { StoreFigures } from './store-report.js';

/** The table's columns. */
export type Target = 'direct' | 'pipe' | 'sigil';
/**
 * What was measured: the two baselines and sigil set up in several ways. Each row puts one
 * sigil variant in the sigil column, against the baselines of the same run.
 *
 * sigil: the default (blobs hashed on the way, no content store, memory caches);
 * sigilNoHash: an upstream with `verifyBlobDigests: false`; sigilStore: a sigil with a content
 * store, serving what it stored; sigilOff: the same signed image under a policy `mode: off`.
 */
export type Variant = Target | 'sigilNoHash' | 'sigilStore' | 'sigilOff';
export type PerTarget<T> = Partial<Record<Target, T>>;
export type PerVariant<T> = Partial<Record<Variant, T>>;

export interface LoadScenario {
  label: string;
  connections: number;
  results: PerVariant<LoadResult>;
  /** The sigil variants measured, one row each (default: sigil alone, no suffix). */
  variants?: ReadonlyArray<{ variant: Variant; suffix: string }>;
  /** A goal for the `sigil` variant's req/s against another variant's (enforce against off). */
  against?: { variant: Variant; name: string; atLeast: number };
}

export interface BlobFigures {
  /** MB/s of each GET. */
  mbps: PerVariant<number[]>;
  /** The proxy process's largest RSS while streaming. */
  rss: PerVariant<number>;
  /** MB/s of the one GET through the store that filled it. */
  storeFill?: number;
}

export interface ColdVerification {
  label: string;
  /** Per image: first GET by digest minus a warm GET, ms. */
  deltasMs: number[];
  /** Per image: what sigil_verification_duration_seconds recorded for it, ms. */
  metricMs: number[];
  /** The warm GETs, ms (median per image). */
  warmMs: number[];
}

export interface Herd {
  clients: number;
  /** manifest + config + layers */
  objects: number;
  layers: number;
  layerBytes: number;
  /** Wall time of all clients' pulls, s. */
  wallS: PerTarget<number>;
  /** Requests that reached the registry (direct and pipe: every client request). */
  upstream: PerTarget<number>;
  /** The most (fewest) upstream GETs of any one of the image's objects. */
  perObjectMax: PerTarget<number>;
  perObjectMin: PerTarget<number>;
  /** sigil's other requests: HEAD of the tag, and signature discovery (referrers, tags, .sig manifest and payload). */
  tagLookups: number;
  signatureLookups: number;
}

export interface Figures {
  big: BlobFigures;
  small: BlobFigures;
  /** CPU seconds per 1 GiB GET: the proxy process alone, and client + registry + proxy. */
  bigCpuProxy: PerVariant<number[]>;
  /** The proxy's main thread (event loop) alone. */
  bigCpuProxyMain: PerVariant<number[]>;
  bigCpuAll: PerVariant<number[]>;
  rssIdle: PerVariant<number>;
  hwmAfterBlobs: PerVariant<number>;
  hwmEnd: PerVariant<number>;
  load: LoadScenario[];
  cold: ColdVerification[];
  herd?: Herd;
  /** The section `store`: sigil's content store against distribution's pull-through cache. */
  store?: StoreFigures;
  /** The section `shared`: three replicas with `cache.shared` against three distribution pull-through caches. */
  shared?: SharedFigures;
}

export interface Meta {
  sigil: string;
  /** The commit (and changed files) it was built from. */
  source: string;
  logLevel: string;
  mode: string;
  /** What sigil answered in Sigil-Verification for the benchmark's (unsigned) index. */
  verification: string;
  cpuProfiled: boolean;
  /** --quick: fewer, shorter runs; the figures are a trial of the harness. */
  quick: boolean;
  registryVersion: string;
  blobReps: number;
  smallBlobReps: number;
  blobBytes: number;
  smallBlobBytes: number;
  storeMaxBytes: number;
  loadDurationS: number;
  serialDurationS: number;
  warmupS: number;
  platforms: number;
  coldImages: number;
  warmGets: number;
  seconds: number;
  /** CPU seconds used by processes outside the benchmark while it measured, and the time measured. */
  othersCpuS: number;
  measuredS: number;
  sigilUpstream: { sent: number; answered: number };
}

interface Row {
  figure: string;
  values: PerTarget<number>;
  decimals: number;
  goal?: string;
}

interface PairRow {
  figure: string;
  /** p50 and p99 per target. */
  values: PerTarget<[number, number]>;
  decimals: number;
  goal?: string;
}

const DASH = '—';
const MIB = 1024 * 1024;
// The issue's bars
const NO_HASH_VS_PIPE = 0.9;
const STORE_VS_DIRECT = 0.75;

function fmt(v: number | undefined, decimals: number): string {
  return v === undefined ? DASH : v.toFixed(decimals);
}

function ratio(a: number | undefined, b: number | undefined): string {
  return a === undefined || b === undefined || b === 0 ? DASH : `${(a / b).toFixed(2)}×`;
}

/** "≥ 0.9× pipe: met"; `showRatio` when the table has no column with that ratio. */
function goal(value: number | undefined, base: number | undefined, atLeast: number, baseName: string, showRatio = false): string {
  const head = `≥ ${atLeast}× ${baseName}`;
  if (value === undefined || base === undefined || base === 0) return `${head}: not measured`;
  const r = value / base;
  return `${head}: ${r >= atLeast ? '**met**' : '**not met**'}${showRatio ? ` (${r.toFixed(2)}×)` : ''}`;
}

function tableLines(rows: Array<Row | PairRow>): string[] {
  const lines = [
    '| figure | direct | bare pipe proxy | sigil | sigil/direct | sigil/pipe | goal |',
    '|---|---:|---:|---:|---:|---:|---|',
  ];
  for (const r of rows) {
    const cells = (t: Target): string => {
      const v = r.values[t];
      if (v === undefined) return DASH;
      return typeof v === 'number' ? fmt(v, r.decimals) : `${fmt(v[0], r.decimals)} / ${fmt(v[1], r.decimals)}`;
    };
    const rat = (a: Target, b: Target): string => {
      const x = r.values[a];
      const y = r.values[b];
      if (x === undefined || y === undefined) return DASH;
      return typeof x === 'number' || typeof y === 'number'
        ? ratio(x as number, y as number)
        : `${ratio(x[0], y[0])} / ${ratio(x[1], y[1])}`;
    };
    lines.push(`| ${r.figure} | ${cells('direct')} | ${cells('pipe')} | ${cells('sigil')} | ${rat('sigil', 'direct')} | ${rat('sigil', 'pipe')} | ${r.goal ?? ''} |`);
  }
  return lines;
}

function map<T, U>(xs: PerVariant<T>, fn: (x: T) => U): PerVariant<U> {
  const out: PerVariant<U> = {};
  for (const [k, x] of Object.entries(xs) as Array<[Variant, T | undefined]>) {
    if (x !== undefined) out[k] = fn(x);
  }
  return out;
}

/** The baselines, and `variant` in the sigil column. */
function pick<T>(xs: PerVariant<T>, variant: Variant): PerTarget<T> {
  const out: PerTarget<T> = {};
  if (xs.direct !== undefined) out.direct = xs.direct;
  if (xs.pipe !== undefined) out.pipe = xs.pipe;
  if (xs[variant] !== undefined) out.sigil = xs[variant];
  return out;
}

function blobRows(f: Figures, m: Meta): Row[] {
  const gib = `${m.blobBytes / 1024 ** 3} GiB`;
  const small = `${m.smallBlobBytes / MIB} MiB`;
  const big = map(f.big.mbps, median);
  const sm = map(f.small.mbps, median);
  const reps = `median of ${m.blobReps}`;
  const smallReps = `median of ${m.smallBlobReps}`;
  const out: Row[] = [
    { figure: `${gib} blob GET, MB/s (${reps})`, values: pick(big, 'sigil'), decimals: 0 },
    { figure: `${small} blob GET, MB/s (${smallReps})`, values: pick(sm, 'sigil'), decimals: 0 },
  ];
  if (big.sigilNoHash !== undefined) {
    out.push(
      { figure: `${gib} blob GET, sigil \`verifyBlobDigests: false\` (no hashing), MB/s (${reps})`, values: pick(big, 'sigilNoHash'), decimals: 0, goal: goal(big.sigilNoHash, big.pipe, NO_HASH_VS_PIPE, 'pipe') },
      { figure: `${small} blob GET, sigil \`verifyBlobDigests: false\` (no hashing), MB/s (${smallReps})`, values: pick(sm, 'sigilNoHash'), decimals: 0, goal: goal(sm.sigilNoHash, sm.pipe, NO_HASH_VS_PIPE, 'pipe') },
    );
  }
  if (big.sigilStore !== undefined) {
    out.push(
      { figure: `${gib} blob GET, sigil content store, warm (served from disk), MB/s (${reps})`, values: pick(big, 'sigilStore'), decimals: 0, goal: goal(big.sigilStore, big.direct, STORE_VS_DIRECT, 'direct') },
      { figure: `${small} blob GET, sigil content store, warm (served from disk), MB/s (${smallReps})`, values: pick(sm, 'sigilStore'), decimals: 0, goal: goal(sm.sigilStore, sm.direct, STORE_VS_DIRECT, 'direct') },
    );
  }
  if (f.big.storeFill !== undefined && f.small.storeFill !== undefined) {
    out.push(
      { figure: `${gib} blob GET, sigil content store, cold (the first pull: download, hash, fsync, commit), MB/s (1 run)`, values: { ...pick(big, 'sigil'), sigil: f.big.storeFill }, decimals: 0 },
      { figure: `${small} blob GET, sigil content store, cold (the first pull), MB/s (1 run)`, values: { ...pick(sm, 'sigil'), sigil: f.small.storeFill }, decimals: 0 },
    );
  }
  const cpuP = map(f.bigCpuProxy, median);
  const cpuA = map(f.bigCpuAll, median);
  const cpuM = map(f.bigCpuProxyMain, median);
  out.push(
    { figure: `${gib} blob GET, CPU s of the proxy process`, values: pick(cpuP, 'sigil'), decimals: 2 },
    { figure: `${gib} blob GET, CPU s of the proxy's main thread (its event loop; sigil hashes on a worker thread)`, values: pick(cpuM, 'sigil'), decimals: 2 },
    { figure: `${gib} blob GET, CPU s of client + registry + proxy`, values: pick(cpuA, 'sigil'), decimals: 2 },
  );
  if (cpuP.sigilNoHash !== undefined) out.push({ figure: `${gib} blob GET, CPU s of the proxy process, sigil \`verifyBlobDigests: false\``, values: pick(cpuP, 'sigilNoHash'), decimals: 2 });
  if (cpuP.sigilStore !== undefined) {
    // the registry does no work for a stored blob: client + proxy against client + registry (+ pipe)
    out.push({ figure: `${gib} blob GET, CPU s of the proxy process, sigil content store, warm`, values: pick(cpuP, 'sigilStore'), decimals: 2 });
  }
  return out;
}

function loadRows(s: LoadScenario): Array<Row | PairRow> {
  const out: Array<Row | PairRow> = [];
  const rps = map(s.results, (r) => r.rps);
  const lat = map(s.results, (r): [number, number] => [r.p50, r.p99]);
  for (const { variant, suffix } of s.variants ?? [{ variant: 'sigil', suffix: '' }]) {
    const label = `${s.label}${suffix}, c=${s.connections}`;
    const a = variant === 'sigil' ? s.against : undefined;
    const g = a ? goal(rps.sigil, rps[a.variant], a.atLeast, a.name, true) : undefined;
    out.push(
      { figure: `${label}: req/s`, values: pick(rps, variant), decimals: 0, ...(g ? { goal: g } : {}) },
      { figure: `${label}: latency p50 / p99, ms`, values: pick(lat, variant), decimals: 2 },
    );
  }
  return out;
}

function coldRows(f: Figures, m: Meta): Row[] {
  return f.cold.flatMap((c) => [
    { figure: `cold verification, ${c.label}: first GET by digest − warm GET, ms (median of ${m.coldImages} images)`, values: { sigil: median(c.deltasMs) }, decimals: 1 },
    { figure: `cold verification, ${c.label}: \`sigil_verification_duration_seconds\`, ms (median of ${m.coldImages})`, values: { sigil: median(c.metricMs) }, decimals: 1 },
  ]);
}

function herdRows(h: Herd): Row[] {
  const what = `${h.clients} clients cold-pull one signed ${h.objects}-object image (${h.layers} × ${h.layerBytes / MIB} MiB layers)`;
  const without = h.clients * h.objects;
  return [
    { figure: `herd, ${what}: wall time, s`, values: h.wallS, decimals: 2 },
    {
      figure: `herd: requests reaching the registry`,
      values: h.upstream,
      decimals: 0,
      goal: `${without} without coalescing; sigil: ${h.objects} objects + ${h.tagLookups} tag lookup + ${h.signatureLookups} signature discovery`,
    },
    { figure: `herd: upstream GETs of any one image object, most`, values: h.perObjectMax, decimals: 0, goal: `fewest: ${fmt(h.perObjectMin.sigil, 0)} (sigil), ${fmt(h.perObjectMin.direct, 0)} (direct)` },
  ];
}

function rows(f: Figures, m: Meta): Array<Row | PairRow> {
  const out: Array<Row | PairRow> = [];
  const mib = (xs: PerTarget<number>): PerTarget<number> => map(xs, (v) => v / MIB);
  const blobs = f.big.mbps.direct !== undefined;
  if (blobs) out.push(...blobRows(f, m));
  for (const s of f.load) out.push(...loadRows(s));
  out.push(...coldRows(f, m));
  if (f.herd !== undefined) out.push(...herdRows(f.herd));
  out.push({ figure: 'proxy RSS idle (after one request), MiB', values: mib(pick(f.rssIdle, 'sigil')), decimals: 1 });
  if (blobs) {
    out.push(
      { figure: `proxy RSS, max while streaming ${m.smallBlobBytes / MIB} MiB, MiB`, values: mib(pick(f.small.rss, 'sigil')), decimals: 1 },
      { figure: `proxy RSS, max while streaming ${m.blobBytes / 1024 ** 3} GiB, MiB`, values: mib(pick(f.big.rss, 'sigil')), decimals: 1 },
      { figure: 'proxy peak RSS (VmHWM) after the blob runs, MiB', values: mib(pick(f.hwmAfterBlobs, 'sigil')), decimals: 1 },
    );
    if (f.big.rss.sigilStore !== undefined) {
      out.push(
        { figure: `sigil content store: RSS max while serving ${m.smallBlobBytes / MIB} MiB from disk, MiB`, values: mib(pick(f.small.rss, 'sigilStore')), decimals: 1 },
        { figure: `sigil content store: RSS max while serving ${m.blobBytes / 1024 ** 3} GiB from disk, MiB`, values: mib(pick(f.big.rss, 'sigilStore')), decimals: 1 },
      );
    }
  }
  out.push({ figure: 'proxy peak RSS (VmHWM) at the end, MiB', values: mib(pick(f.hwmEnd, 'sigil')), decimals: 1 });
  if (f.hwmEnd.sigilStore !== undefined) {
    out.push({ figure: 'sigil content store: peak RSS (VmHWM) at the end (blobs filled and served, herd), MiB', values: mib(pick(f.hwmEnd, 'sigilStore')), decimals: 1 });
  }
  return out;
}

export function renderPage(f: Figures, m: Meta, runs: string[]): string {
  const cpu = cpus()[0]?.model ?? 'unknown CPU';
  const load = f.load[0];
  const blobs = f.big.mbps.direct !== undefined;
  const h = f.herd;
  return [
    '# sigil benchmark',
    '',
    m.quick ? '**A quick run (`--quick`): fewer and shorter runs, a trial of the harness; its figures are noise.**' : undefined,
    m.quick ? '' : undefined,
    `- date: ${new Date().toISOString()}`,
    `- machine: nproc ${availableParallelism()}, ${cpu}, ${(totalmem() / 1024 ** 3).toFixed(0)} GiB RAM; node ${process.version}`,
    `- upstream: ${m.registryVersion}, filesystem storage, on 127.0.0.1; client, registry and proxy share the machine`,
    `- sigil: \`${m.sigil} serve\` process (${m.source}), logLevel ${m.logLevel} (stdout to a file), a catch-all policy \`mode: ${m.mode}\` ` +
      `(the index is unsigned: \`Sigil-Verification: ${m.verification}\`)${m.cpuProfiled ? ', **profiled with --cpu-prof (slower)**' : ''}; ` +
      'the same process also has upstreams `nohash.bench` (`verifyBlobDigests: false`) and `off.bench` (policy `mode: off`), both the same registry, ' +
      'and the `enforce` policies of the signed images. Memory caches at their defaults (tags 30 s, manifests 64 MiB); no content store. ' +
      `Blobs of 1 MiB and more are hashed on a worker thread (${Math.min(4, availableParallelism() - 1)} here: the cores less one, at most 4)`,
    `- sigil content store: a second \`sigil serve\` with \`cache.store\` in a temp dir (maxBytes ${m.storeMaxBytes / 1024 ** 3} GiB), removed after; ` +
      'its first GET of each blob fills the store, the timed GETs are served from disk (checked: no upstream request meanwhile)',
    '- bare pipe proxy: its own node process, `http.request` to the registry + `res.pipe`, keep-alive agent',
    blobs ? `- blobs: undici \`request\`, bytes counted and dropped; ${m.blobReps} GETs per target (${m.smallBlobBytes / MIB} MiB: ${m.smallBlobReps}), targets interleaved` : undefined,
    load !== undefined
      ? `- manifests: autocannon, ${m.loadDurationS} s per figure (c=1: ${m.serialDurationS} s) after a ${m.warmupS} s warm-up, a ${m.platforms}-platform OCI index, ` +
        'and a single-platform image signed with a P-256 key (cosign `.sig`, `tlog: ignore`) under `mode: enforce` (answered `verified`) and under `mode: off` (these two measured twice each, off-enforce-enforce-off, figures over both runs); ' +
        'every answer checked 2xx (Accept: all four manifest types)'
      : undefined,
    load !== undefined
      ? `- **sigil sent ${m.sigilUpstream.sent} requests upstream for ${m.sigilUpstream.answered} manifest answers** (its metrics): ` +
        'every answer not sent upstream came from a coalesced fetch or a cache in sigil, so the manifest rows compare that ' +
        'with a registry doing the work each time; the pipe proxy forwards every request'
      : undefined,
    f.cold.length > 0
      ? `- cold verifications: ${m.coldImages} freshly pushed images per kind, each signed once (keyless: its own Fulcio-style certificate from a private Sigstore, ` +
        'legacy `.sig` with certificate, chain and Rekor SET; sigil trusts that root and a keyless authority). "first GET − warm GET": the first GET by digest ' +
        `(manifest fetched upstream, signatures discovered and verified) minus the median of ${m.warmGets} GETs after it; ` +
        '`sigil_verification_duration_seconds`: what sigil itself records for the verification (discovery included, the manifest fetch not)'
      : undefined,
    h !== undefined
      ? `- herd: ${h.clients} concurrent clients, each GETs the manifest by tag, then the config and the ${h.layers} layers by digest, one after the other, ` +
        'checking every digest; sigil (with the content store, `mode: enforce`, P-256 key) reaches the registry through a counting pass-through; ' +
        'direct and pipe: every client request reaches the registry. sigil goes first (cold), then direct, then pipe'
      : undefined,
    `- other processes on the machine used ${m.othersCpuS.toFixed(1)} CPU s during ${m.measuredS.toFixed(1)} s of measurement ` +
      '(each measurement waits for a quiet machine first, within a budget)',
    `- total run time: ${m.seconds} s`,
    '',
    ...tableLines(rows(f, m)),
    ...(f.store !== undefined ? storeLines(f.store, m.sigil) : []),
    ...(f.shared !== undefined ? sharedLines(f.shared, m.sigil) : []),
    '',
    '<details><summary>every run</summary>',
    '',
    ...runs.map((r) => `- ${r}`),
    '',
    '</details>',
    '',
  ].filter((l): l is string => l !== undefined).join('\n');
}
