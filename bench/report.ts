/** Formats the benchmark's figures as a Markdown page: a header naming the machine, the table, every run. */
import { availableParallelism, cpus, totalmem } from 'node:os';
import { median } from './measure.js';
import type { LoadResult } from './measure.js';

export type Target = 'direct' | 'pipe' | 'sigil';
export type PerTarget<T> = Partial<Record<Target, T>>;

export interface LoadScenario {
  label: string;
  connections: number;
  results: PerTarget<LoadResult>;
}

export interface Figures {
  bigMbps: PerTarget<number[]>;
  smallMbps: PerTarget<number[]>;
  /** CPU seconds per 1 GiB GET: the proxy process alone, and client + registry + proxy. */
  bigCpuProxy: PerTarget<number[]>;
  bigCpuAll: PerTarget<number[]>;
  rssIdle: PerTarget<number>;
  rssSmall: PerTarget<number>;
  rssBig: PerTarget<number>;
  hwmAfterBlobs: PerTarget<number>;
  hwmEnd: PerTarget<number>;
  load: LoadScenario[];
}

export interface Meta {
  sigil: string;
  logLevel: string;
  mode: string;
  /** What sigil answered in Sigil-Verification for the benchmark's (unsigned) index. */
  verification: string;
  cpuProfiled: boolean;
  registryVersion: string;
  blobReps: number;
  blobBytes: number;
  loadDurationS: number;
  serialDurationS: number;
  warmupS: number;
  platforms: number;
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
}

interface PairRow {
  figure: string;
  /** p50 and p99 per target. */
  values: PerTarget<[number, number]>;
  decimals: number;
}

const DASH = '—';
const MIB = 1024 * 1024;

function fmt(v: number | undefined, decimals: number): string {
  return v === undefined ? DASH : v.toFixed(decimals);
}

function ratio(a: number | undefined, b: number | undefined): string {
  return a === undefined || b === undefined || b === 0 ? DASH : `${(a / b).toFixed(2)}×`;
}

function tableLines(rows: Array<Row | PairRow>): string[] {
  const lines = [
    '| figure | direct | bare pipe proxy | sigil | sigil/direct | sigil/pipe |',
    '|---|---:|---:|---:|---:|---:|',
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
    lines.push(`| ${r.figure} | ${cells('direct')} | ${cells('pipe')} | ${cells('sigil')} | ${rat('sigil', 'direct')} | ${rat('sigil', 'pipe')} |`);
  }
  return lines;
}

function map<T, U>(xs: PerTarget<T>, fn: (x: T) => U): PerTarget<U> {
  const out: PerTarget<U> = {};
  for (const t of ['direct', 'pipe', 'sigil'] as const) {
    const x = xs[t];
    if (x !== undefined) out[t] = fn(x);
  }
  return out;
}

function rows(f: Figures, m: Meta): Array<Row | PairRow> {
  const out: Array<Row | PairRow> = [];
  const mib = (xs: PerTarget<number>): PerTarget<number> => map(xs, (v) => v / MIB);
  const blobs = f.bigMbps.direct !== undefined;
  if (blobs) {
    const gib = m.blobBytes / 1024 ** 3;
    out.push(
      { figure: `${gib} GiB blob GET, MB/s (median of ${m.blobReps})`, values: map(f.bigMbps, median), decimals: 0 },
      { figure: `64 MiB blob GET, MB/s (median of ${m.blobReps})`, values: map(f.smallMbps, median), decimals: 0 },
      { figure: `${gib} GiB blob GET, CPU s of the proxy process`, values: map(f.bigCpuProxy, median), decimals: 2 },
      { figure: `${gib} GiB blob GET, CPU s of client + registry + proxy`, values: map(f.bigCpuAll, median), decimals: 2 },
    );
  }
  for (const s of f.load) {
    out.push(
      { figure: `${s.label}, c=${s.connections}: req/s`, values: map(s.results, (r) => r.rps), decimals: 0 },
      { figure: `${s.label}, c=${s.connections}: latency p50 / p99, ms`, values: map(s.results, (r): [number, number] => [r.p50, r.p99]), decimals: 2 },
    );
  }
  out.push({ figure: 'proxy RSS idle (after one request), MiB', values: mib(f.rssIdle), decimals: 1 });
  if (blobs) {
    out.push(
      { figure: 'proxy RSS, max while streaming 64 MiB, MiB', values: mib(f.rssSmall), decimals: 1 },
      { figure: 'proxy RSS, max while streaming 1 GiB, MiB', values: mib(f.rssBig), decimals: 1 },
      { figure: 'proxy peak RSS (VmHWM) after the blob runs, MiB', values: mib(f.hwmAfterBlobs), decimals: 1 },
    );
  }
  out.push({ figure: 'proxy peak RSS (VmHWM) at the end, MiB', values: mib(f.hwmEnd), decimals: 1 });
  return out;
}

export function renderPage(f: Figures, m: Meta, runs: string[]): string {
  const cpu = cpus()[0]?.model ?? 'unknown CPU';
  const load = f.load[0];
  return [
    '# sigil benchmark',
    '',
    `- date: ${new Date().toISOString()}`,
    `- machine: nproc ${availableParallelism()}, ${cpu}, ${(totalmem() / 1024 ** 3).toFixed(0)} GiB RAM; node ${process.version}`,
    `- upstream: ${m.registryVersion}, filesystem storage, on 127.0.0.1; client, registry and proxy share the machine`,
    `- sigil: \`${m.sigil} serve\` process, logLevel ${m.logLevel} (stdout to a file), one policy \`mode: ${m.mode}\` for everything ` +
      `(the index is unsigned: \`Sigil-Verification: ${m.verification}\`)${m.cpuProfiled ? ', **profiled with --cpu-prof (slower)**' : ''}`,
    '- bare pipe proxy: its own node process, `http.request` to the registry + `res.pipe`, keep-alive agent',
    `- blobs: undici \`request\`, bytes counted and dropped; ${m.blobReps} GETs per target, targets interleaved`,
    load !== undefined
      ? `- manifests: autocannon, ${m.loadDurationS} s per figure (c=1: ${m.serialDurationS} s) after a ${m.warmupS} s warm-up, a ${m.platforms}-platform OCI index, ` +
        'every answer checked 2xx (Accept: all four manifest types)'
      : '',
    load !== undefined
      ? `- **sigil sent ${m.sigilUpstream.sent} requests upstream for ${m.sigilUpstream.answered} manifest answers** (its metrics): ` +
        'every answer not sent upstream came from a coalesced fetch or a cache in sigil, so the manifest rows compare that ' +
        'with a registry doing the work each time; the pipe proxy forwards every request'
      : '',
    `- other processes on the machine used ${m.othersCpuS.toFixed(1)} CPU s during ${m.measuredS.toFixed(1)} s of measurement ` +
      '(each measurement waits for a quiet machine first, within a budget)',
    `- total run time: ${m.seconds} s`,
    '',
    ...tableLines(rows(f, m)),
    '',
    '<details><summary>every run</summary>',
    '',
    ...runs.map((r) => `- ${r}`),
    '',
    '</details>',
    '',
  ].filter((l, i, all) => l !== '' || all[i - 1] !== '').join('\n');
}
