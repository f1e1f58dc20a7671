/**
 * Profiles one cold fill of sigil's content store, alone: an origin registry, one random blob,
 * one `sigil serve` with an empty store under `--cpu-prof`, one GET of the blob (and the wait
 * until the store serves it), then sigil stops and writes its profile. Prints the GET's MB/s,
 * sigil's CPU seconds per thread, and where the profile is (summarize it with cpuprofile-top.js).
 * Optionally the same GET through distribution's pull-through cache, for its MB/s and CPU.
 *
 *   node dist/bench/profile-fill.js [--mib N] [--fills N] [--cpus LIST|all] [--sigil BIN] [--out DIR] [--no-prof] [--gc] [--warm] [--no-store] [--distribution] [--node-options OPTS] [--keep]
 *
 * --mib: the blob's size (default 256); --fills: cold-fill this many distinct blobs in turn, in one
 * sigil process (default 1; the bench's section `store` fills three); --pause: seconds sigil stays
 * idle before each fill after the first (default 0; in the section, the other peers' runs come
 * between, ~5 s); --cpus: pin sigil (and distribution) with taskset to
 * these CPUs (default: the last CPU, as the bench's section `store` does; `all`: not pinned);
 * --out: where the .cpuprofile goes (default a temp dir, kept); --no-prof: no profile (its
 * sampling costs ~0.2 CPU s per fill); --gc: count sigil's garbage
 * collections during the fill and the time they held its main thread (bench/gc-probe.ts);
 * --warm: then one GET from the store, measured the same way; --no-store: a sigil without a
 * store instead, the GET streamed from the upstream through the digest check (for comparison);
 * --node-options: NODE_OPTIONS for sigil (V8 flags to try, e.g. --trace-gc); --keep: keep the
 * temp dir (sigil's config and its log, where --trace-gc writes).
 */
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { Agent } from 'undici';
import { SIGIL_BIN } from '../test/helpers/cli.js';
import { tempDir } from '../test/helpers/temp.js';
import { startRegistry } from '../test/helpers/registry.js';
import { MIB, cleanup, defer, log, onCleanup, pollUntil, pushRandomBlob, servedFromStore } from './context.js';
import { REPO_STORE, STORE_MAX_BYTES, UPSTREAM_NAME } from './fixture.js';
import { fetchBlob } from './measure.js';
import type { BlobRun } from './measure.js';
import { cpuSecondsOf, memoryOf, threadCpuSecondsOf } from './procs.js';
import type { Proc } from './procs.js';
import { startSigil } from './servers.js';

const STORED_POLL_MS = 50;
const STORED_TIMEOUT_MS = 60_000;
const GC_PROBE_TIMEOUT_MS = 5_000;

const args = parseArgs({
  options: {
    mib: { type: 'string', default: '256' },
    fills: { type: 'string', default: '1' },
    pause: { type: 'string', default: '0' },
    cpus: { type: 'string' },
    sigil: { type: 'string', default: SIGIL_BIN },
    out: { type: 'string' },
    distribution: { type: 'boolean', default: false },
    gc: { type: 'boolean', default: false },
    prof: { type: 'boolean', default: true },
    warm: { type: 'boolean', default: false },
    store: { type: 'boolean', default: true },
    'node-options': { type: 'string' },
    keep: { type: 'boolean', default: false },
  },
  allowNegative: true,
}).values;

interface GcTotals {
  gc: Record<string, { n: number; ms: number }>;
  heapUsedMiB: number;
  externalMiB: number;
}

/** The gc-probe's running totals: SIGUSR2, then its next line on stderr. */
function gcTotals(proc: Proc): Promise<GcTotals> {
  return new Promise((resolve, reject) => {
    let text = '';
    const onData = (d: Buffer): void => {
      text += d.toString('utf8');
      const m = /^gc-probe (.*)$/m.exec(text);
      if (m === null) return;
      off();
      resolve(JSON.parse(m[1]) as GcTotals);
    };
    const timer = setTimeout(() => {
      off();
      reject(new Error('gc-probe did not answer (is it preloaded?)'));
    }, GC_PROBE_TIMEOUT_MS);
    const off = (): void => {
      clearTimeout(timer);
      proc.child.stderr?.off('data', onData);
    };
    proc.child.stderr?.on('data', onData);
    proc.child.kill('SIGUSR2');
  });
}

/** Runs `fn` (a GET), then logs its MB/s, sigil's CPU per thread and (--gc) its collections meanwhile. */
async function measured(proc: Proc, label: string, fn: () => Promise<BlobRun>): Promise<void> {
  const gc0 = args.gc ? await gcTotals(proc) : undefined;
  const t0 = threadCpuSecondsOf(proc.pid);
  const run = await fn();
  const t1 = threadCpuSecondsOf(proc.pid);
  const used = new Map([...t1].map(([name, sec]) => [name, sec - (t0.get(name) ?? 0)]));
  log(`${label}: ${run.mbps.toFixed(0)} MB/s (${run.seconds.toFixed(2)} s); CPU s by thread (until stored): ${threads(used)}; peak RSS (VmHWM) ${(memoryOf(proc.pid).hwm / MIB).toFixed(0)} MiB`);
  if (gc0 === undefined) return;
  const gc1 = await gcTotals(proc);
  const text = Object.entries(gc1.gc).map(([kind, t]) => `${kind} ×${t.n - (gc0.gc[kind]?.n ?? 0)} (${(t.ms - (gc0.gc[kind]?.ms ?? 0)).toFixed(0)} ms)`).join(', ');
  log(`${label}: garbage collections (time on the main thread): ${text}; heap used ${gc0.heapUsedMiB.toFixed(0)} MiB before, ${gc1.heapUsedMiB.toFixed(0)} MiB after`);
}

const threads = (m: Map<string, number>): string => [...m].sort((a, b) => b[1] - a[1]).map(([name, s]) => `${name} ${s.toFixed(2)}`).join(', ');

async function main(): Promise<void> {
  const size = Number(args.mib) * MIB;
  if (!Number.isInteger(size) || size <= 0) throw new Error('--mib takes a whole number of MiB');
  const cpus = args.cpus === 'all' ? undefined : (args.cpus ?? (existsSync('/usr/bin/taskset') ? String(availableParallelism() - 1) : undefined));
  const dir = args.keep ? await mkdtemp(join(tmpdir(), 'sigil-profile-fill-')) : await tempDir('sigil-profile-fill');
  if (args.keep) log(`the temp dir (sigil's config and log) is kept: ${dir}`);
  else onCleanup(() => rm(dir, { recursive: true, force: true }));
  const out = args.out ?? (await tempDir('sigil-cpuprofile'));
  const registry = await startRegistry();
  onCleanup(() => registry.stop());
  const fills = Number(args.fills);
  if (!Number.isInteger(fills) || fills < 1) throw new Error('--fills takes a whole number ≥ 1');
  const blobs = [];
  for (let i = 0; i < fills; i++) blobs.push(await pushRandomBlob(registry, dir, REPO_STORE, size));
  const blob = blobs[0]!;
  const agent = new Agent();
  onCleanup(() => agent.close());

  if (args.distribution) {
    const dist = await startRegistry({ proxy: registry.url, ...(cpus !== undefined ? { cpus } : {}) });
    onCleanup(() => dist.stop());
    const c0 = cpuSecondsOf(dist.pid);
    const run = await fetchBlob(`${dist.url}/v2/${REPO_STORE}/blobs/${blob.digest}`, size, agent);
    log(`distribution (CPU ${cpus ?? 'all'}): first GET ${run.mbps.toFixed(0)} MB/s (${run.seconds.toFixed(2)} s); CPU s ${(cpuSecondsOf(dist.pid) - c0).toFixed(2)} (its background store fetch may still run)`);
    await dist.stop();
  }

  const s = await startSigil(
    {
      bin: args.sigil,
      dir,
      label: 'sigil-store-profiled',
      upstreams: [{ name: UPSTREAM_NAME, url: registry.url }],
      logLevel: 'info',
      mode: 'warn',
      ...(args.store ? { store: { dir: join(dir, 'store'), maxBytes: STORE_MAX_BYTES } } : {}),
      ...(args.prof ? { cpuProfDir: out } : {}),
      ...(args.gc || args['node-options'] !== undefined
        ? { nodeOptions: [args['node-options'], args.gc ? `--import=${new URL('./gc-probe.js', import.meta.url).pathname}` : undefined].filter((o) => o !== undefined).join(' ') }
        : {}),
      ...(cpus !== undefined ? { cpus } : {}),
    },
    defer,
  );
  const url = `${s.url}/v2/${REPO_STORE}/blobs/${blob.digest}`;
  const what = `sigil (CPU ${cpus ?? 'all'})`;
  if (!args.store) {
    await measured(s.proc, `${what}: no store, the GET streamed from the upstream with the digest check`, () => fetchBlob(url, size, agent));
  } else {
    const pauseMs = Number(args.pause) * 1000;
    if (!(pauseMs >= 0)) throw new Error('--pause takes a number of seconds ≥ 0');
    for (const [i, b] of blobs.entries()) {
      if (i > 0 && pauseMs > 0) await new Promise((r) => setTimeout(r, pauseMs));
      const bu = `${s.url}/v2/${REPO_STORE}/blobs/${b.digest}`;
      await measured(s.proc, `${what}: cold${fills > 1 ? ` fill ${i + 1}` : ''}, the first GET`, async () => {
        const run = await fetchBlob(bu, size, agent);
        await pollUntil(() => servedFromStore(agent, s.url, bu), STORED_POLL_MS, STORED_TIMEOUT_MS, 'the store serving the blob');
        return run;
      });
    }
    if (args.warm) await measured(s.proc, `${what}: warm, from the store`, () => fetchBlob(url, size, agent));
  }
  await s.proc.stop();
  if (args.prof) log(`profile in ${out} (scripts/node dist/bench/cpuprofile-top.js ${out}/*.cpuprofile)`);
}

try {
  await main();
} catch (err) {
  log(`failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
  process.exitCode = 1;
} finally {
  await cleanup();
}
