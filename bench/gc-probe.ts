/**
 * Preloaded into a sigil process by bench/profile-fill.ts (`NODE_OPTIONS=--import …/gc-probe.js`;
 * node refuses --trace-gc there): counts the process's garbage collections by kind and the time
 * they held the main thread, and prints the running totals (and the heap's size) as one JSON line on
 * stderr at each SIGUSR2.
 */
import { PerformanceObserver, constants } from 'node:perf_hooks';
import type { PerformanceEntry } from 'node:perf_hooks';

const KINDS: Record<number, string> = {
  [constants.NODE_PERFORMANCE_GC_MINOR]: 'minor',
  [constants.NODE_PERFORMANCE_GC_MAJOR]: 'major',
  [constants.NODE_PERFORMANCE_GC_INCREMENTAL]: 'incremental',
  [constants.NODE_PERFORMANCE_GC_WEAKCB]: 'weakcb',
};
const totals: Record<string, { n: number; ms: number }> = {};

new PerformanceObserver((list) => {
  for (const e of list.getEntries()) {
    const kind = KINDS[(e as PerformanceEntry & { detail?: { kind?: number } }).detail?.kind ?? -1] ?? 'other';
    const t = (totals[kind] ??= { n: 0, ms: 0 });
    t.n++;
    t.ms += e.duration;
  }
}).observe({ entryTypes: ['gc'] });

process.on('SIGUSR2', () => {
  const m = process.memoryUsage();
  process.stderr.write(`gc-probe ${JSON.stringify({ gc: totals, heapUsedMiB: m.heapUsed / 2 ** 20, externalMiB: m.external / 2 ** 20 })}\n`);
});
