import { formatProblems, loadConfig } from '../config/load.js';
import { formatBytes, formatTime, shortDigest, table } from '../mirror/format.js';
import { planPrune, pruneStore, takeInventory } from '../mirror/inventory.js';
import { Catalog, ContentStore } from '../store/index.js';
import { parseArgs, UsageError } from './args.js';
import type { CliIo } from './io.js';
import { CACHE_USAGE } from './usage.js';

const DURATION_UNIT_MS: Readonly<Record<string, number>> = { s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000, w: 604_800_000 };
const SIZE_UNIT: Readonly<Record<string, number>> = {
  '': 1, b: 1,
  kb: 1e3, mb: 1e6, gb: 1e9, tb: 1e12,
  k: 1024, ki: 1024, kib: 1024, m: 1024 ** 2, mi: 1024 ** 2, mib: 1024 ** 2, g: 1024 ** 3, gi: 1024 ** 3, gib: 1024 ** 3, t: 1024 ** 4, ti: 1024 ** 4, tib: 1024 ** 4,
};
/**
 * The cache commands open the store with this limit, so that opening never evicts: `ls` must
 * not change what it lists, and `prune` removes whole images itself.
 */
const NO_EVICTION = Number.MAX_SAFE_INTEGER;

/** `7d`, `12h`, `1d12h`, `90m`, `30s`, `2w` → milliseconds; undefined when malformed. */
export function parseAge(text: string): number | undefined {
  if (!/^(?:\d+[smhdw])+$/.test(text)) return undefined;
  let ms = 0;
  for (const [, n, unit] of text.matchAll(/(\d+)([smhdw])/g)) ms += Number(n) * DURATION_UNIT_MS[unit];
  return ms > 0 && Number.isSafeInteger(ms) ? ms : undefined;
}

/** `53687091200`, `50GiB`, `500MB`, `10G` (binary) → bytes; undefined when malformed. */
export function parseSize(text: string): number | undefined {
  const m = /^(\d+(?:\.\d+)?)\s*([a-z]*)$/i.exec(text.trim());
  const unit = m ? SIZE_UNIT[m[2].toLowerCase()] : undefined;
  if (!m || unit === undefined) return undefined;
  const n = Math.floor(Number(m[1]) * unit);
  return Number.isSafeInteger(n) && n >= 0 ? n : undefined;
}

/**
 * `sigil cache ls [--config F] [--json]` and `sigil cache prune [--older-than AGE] [--max-bytes N]
 * [--dry-run] [--config F] [--json]`. `argv` is what follows `cache`. 0 ok, 2 usage or config error.
 */
export async function cacheCommand(io: CliIo, argv: readonly string[], opts: { now?: () => number } = {}): Promise<number> {
  const a = parseArgs(argv, { values: ['config', 'older-than', 'max-bytes'], booleans: ['json', 'help', 'dry-run'] });
  if (a.flags.has('help')) {
    io.stdout(CACHE_USAGE);
    return 0;
  }
  const [sub, ...extra] = a.positionals;
  if (sub !== 'ls' && sub !== 'prune') throw new UsageError(sub === undefined ? "expected 'sigil cache ls' or 'sigil cache prune'" : `unknown cache command '${sub}'`);
  if (extra.length > 0) throw new UsageError(`unexpected argument '${extra[0]}'`);
  let olderThanMs: number | undefined;
  let maxBytes: number | undefined;
  if (sub === 'ls' && (a.flags.has('older-than') || a.flags.has('max-bytes') || a.flags.has('dry-run'))) throw new UsageError('--older-than, --max-bytes and --dry-run go with cache prune');
  const dryRun = a.flags.has('dry-run');
  if (sub === 'prune') {
    const age = a.flags.get('older-than') as string | undefined;
    const size = a.flags.get('max-bytes') as string | undefined;
    if (age === undefined && size === undefined) throw new UsageError('cache prune needs --older-than AGE (e.g. 7d) and/or --max-bytes N');
    if (age !== undefined && (olderThanMs = parseAge(age)) === undefined) throw new UsageError(`--older-than: '${age}' is not an age like 7d, 12h, 1d12h or 30m`);
    if (size !== undefined && (maxBytes = parseSize(size)) === undefined) throw new UsageError(`--max-bytes: '${size}' is not a size like 10737418240 or 10GiB`);
  }
  const loaded = await loadConfig({ path: a.flags.get('config') as string | undefined, env: io.env, cwd: io.cwd });
  if (!loaded.ok) {
    io.stderr(formatProblems(loaded.problems, loaded.source) + '\n');
    return 2;
  }
  const storeCfg = loaded.config.cache.store;
  if (storeCfg === undefined) {
    io.stderr(`sigil: ${loaded.config.source}: cache.store is not set: there is no content store\n`);
    return 2;
  }
  const now = opts.now ?? Date.now;
  // No sweep at open: `ls` lists what is there; `prune` sweeps after removing, and says so. A
  // dry run leaves the temp files of abandoned writes too (opening removes those past TMP_STALE_MS).
  const store = await ContentStore.open({ dir: storeCfg.dir, maxBytes: NO_EVICTION, now, sweepMetaAtOpen: false, ...(dryRun ? { tmpStaleMs: Number.POSITIVE_INFINITY } : {}) });
  const json = a.flags.has('json');
  try {
    if (sub === 'ls') {
      const inv = await takeInventory({ content: store, catalog: new Catalog(store) });
      if (json) {
        io.stdout(
          `${JSON.stringify({
            dir: storeCfg.dir,
            maxBytes: storeCfg.maxBytes,
            total: inv.total,
            loose: inv.loose,
            tags: inv.units.map((u) => ({ ref: u.ref, digest: u.digest, mediaType: u.mediaType, objects: u.objects.size, bytes: u.bytes, lastUsed: u.lastUsed === null ? null : new Date(u.lastUsed).toISOString(), complete: u.complete })),
          })}\n`,
        );
      } else {
        const rows = inv.units.map((u) => [u.ref, shortDigest(u.digest), String(u.objects.size), formatBytes(u.bytes), formatTime(u.lastUsed), u.complete ? '' : 'incomplete']);
        io.stdout(table(['TAG', 'DIGEST', 'OBJECTS', 'BYTES', 'LAST USED (UTC)', 'NOTE'], rows));
        io.stdout(
          `${inv.units.length} tag(s); ${inv.total.objects} object(s), ${formatBytes(inv.total.bytes)} of ${formatBytes(storeCfg.maxBytes)} in ${storeCfg.dir}` +
            `${inv.loose.objects > 0 ? ` (${inv.loose.objects} object(s), ${formatBytes(inv.loose.bytes)} not part of a tagged image)` : ''}\n`,
        );
      }
      return 0;
    }
    const limits = { ...(olderThanMs !== undefined ? { olderThanMs } : {}), ...(maxBytes !== undefined ? { maxBytes } : {}), now: now() };
    if (dryRun) {
      const plan = await planPrune({ content: store, catalog: new Catalog(store) }, limits);
      const remaining = { objects: plan.total.objects - plan.objects.size, bytes: plan.total.bytes - plan.freedBytes };
      if (json) io.stdout(`${JSON.stringify({ dryRun: true, removedTags: plan.removedTags, removedObjects: plan.objects.size, freedBytes: plan.freedBytes, remaining })}\n`);
      else {
        for (const t of plan.removedTags) io.stdout(`would remove ${t}\n`);
        io.stdout(
          `would prune ${plan.removedTags.length} tag(s), ${plan.objects.size} object(s), ${formatBytes(plan.freedBytes)}; ` +
            `${remaining.objects} object(s), ${formatBytes(remaining.bytes)} would remain (dry run: nothing removed)\n`,
        );
      }
      return 0;
    }
    const summary = await pruneStore({ content: store, catalog: new Catalog(store) }, limits);
    // pruneStore drops the records of what it removed; the sweep also drops those of objects evicted earlier.
    const swept = await store.sweepMeta();
    if (json) io.stdout(`${JSON.stringify({ ...summary, metaSwept: swept })}\n`);
    else {
      for (const t of summary.removedTags) io.stdout(`removed ${t}\n`);
      io.stdout(
        `pruned ${summary.removedTags.length} tag(s), ${summary.removedObjects} object(s), ${formatBytes(summary.freedBytes)}; ` +
          `${summary.remaining.objects} object(s), ${formatBytes(summary.remaining.bytes)} remain\n`,
      );
      io.stdout(`removed ${summary.removedRecords + swept.removed} metadata record(s) of objects no longer stored\n`);
    }
    return 0;
  } finally {
    await store.close();
  }
}
