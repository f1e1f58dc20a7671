/**
 * The index by tag through sigil with and without its content store, alone and interleaved: an
 * origin registry with the bench's multi-platform index, two `sigil serve` (one with
 * `cache.store`, one without) pinned to the same CPU as the bench's section `store` pins them,
 * then `--rounds` rounds of one short autocannon run against each, in turn (which goes first
 * alternates). Prints req/s per run, the median of each and their ratio (the section's bar: the
 * store within 1.25× of store-less), and the CPU seconds each sigil spent per 1000 requests.
 * With --prof, each sigil writes a V8 CPU profile when it stops (summarize it with
 * cpuprofile-top.js; its sampling slows both alike).
 *
 *   node dist/bench/profile-tags.js [--rounds N] [--seconds S] [--cpus LIST|all] [--sigil BIN] [--prof DIR]
 */
import { existsSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { SIGIL_BIN } from '../test/helpers/cli.js';
import { ALL_MANIFEST_TYPES, pushIndex } from '../test/helpers/push.js';
import { startRegistry } from '../test/helpers/registry.js';
import { tempDir } from '../test/helpers/temp.js';
import { cleanup, defer, log, onCleanup } from './context.js';
import { LOAD_CONNECTIONS, PLATFORMS, REPO_INDEX, STORE_MAX_BYTES, TAG, UPSTREAM_NAME, WARMUP_DURATION_S } from './fixture.js';
import { load, median } from './measure.js';
import { cpuSecondsOf } from './procs.js';
import { startSigil } from './servers.js';

const args = parseArgs({
  options: {
    rounds: { type: 'string', default: '6' },
    seconds: { type: 'string', default: '3' },
    cpus: { type: 'string' },
    sigil: { type: 'string', default: SIGIL_BIN },
    prof: { type: 'string' },
  },
}).values;

async function main(): Promise<void> {
  const rounds = Number(args.rounds);
  const seconds = Number(args.seconds);
  if (!Number.isInteger(rounds) || rounds < 1) throw new Error('--rounds takes a whole number ≥ 1');
  if (!Number.isInteger(seconds) || seconds < 1) throw new Error('--seconds takes a whole number of seconds ≥ 1');
  const cpus = args.cpus === 'all' ? undefined : (args.cpus ?? (existsSync('/usr/bin/taskset') ? String(availableParallelism() - 1) : undefined));
  const dir = await tempDir('sigil-profile-tags');
  const registry = await startRegistry();
  onCleanup(() => registry.stop());
  await pushIndex({ url: registry.url }, REPO_INDEX, TAG, PLATFORMS);
  const common = {
    bin: args.sigil,
    dir,
    upstreams: [{ name: UPSTREAM_NAME, url: registry.url }],
    logLevel: 'info',
    mode: 'warn' as const,
    ...(args.prof !== undefined ? { cpuProfDir: args.prof } : {}),
    ...(cpus !== undefined ? { cpus } : {}),
  };
  const peers = [
    { name: 'store', server: await startSigil({ ...common, label: 'sigil-tags-store', store: { dir: join(dir, 'store'), maxBytes: STORE_MAX_BYTES } }, defer) },
    { name: 'no store', server: await startSigil({ ...common, label: 'sigil-tags-plain' }, defer) },
  ];
  const headers = { accept: ALL_MANIFEST_TYPES };
  const runs = new Map<string, { rps: number[]; cpuPerK: number[] }>(peers.map((p) => [p.name, { rps: [], cpuPerK: [] }]));
  for (const p of peers) await load(`${p.server.url}/v2/${REPO_INDEX}/manifests/${TAG}`, headers, LOAD_CONNECTIONS, WARMUP_DURATION_S);
  for (let round = 0; round < rounds; round++) {
    for (const p of round % 2 === 0 ? peers : [...peers].reverse()) {
      const c0 = cpuSecondsOf(p.server.proc.pid);
      const r = await load(`${p.server.url}/v2/${REPO_INDEX}/manifests/${TAG}`, headers, LOAD_CONNECTIONS, seconds);
      const cpu = cpuSecondsOf(p.server.proc.pid) - c0;
      const got = runs.get(p.name)!;
      got.rps.push(r.rps);
      got.cpuPerK.push((cpu / (r.rps * seconds)) * 1000);
      log(`round ${round + 1}, ${p.name}: ${r.rps.toFixed(0)} req/s, p99 ${r.p99.toFixed(2)} ms, CPU ${((cpu / (r.rps * seconds)) * 1000).toFixed(3)} s per 1000 requests`);
    }
  }
  const store = runs.get('store')!;
  const plain = runs.get('no store')!;
  log(
    `median of ${rounds} runs of ${seconds} s (CPU ${cpus ?? 'all'}): with the store ${median(store.rps).toFixed(0)} req/s (${median(store.cpuPerK).toFixed(3)} CPU s per 1000), ` +
      `without ${median(plain.rps).toFixed(0)} req/s (${median(plain.cpuPerK).toFixed(3)}); store/no store ${(median(store.rps) / median(plain.rps)).toFixed(2)}×`,
  );
}

try {
  await main();
} catch (err) {
  log(`failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
  process.exitCode = 1;
} finally {
  await cleanup();
}
