import { readFile, stat } from 'node:fs/promises';
import { resolve } from 'node:path';
import { loadVerifier } from '../app.js';
import { createLogger } from '../audit/logger.js';
import { Metrics } from '../audit/metrics.js';
import { formatProblems, loadConfig } from '../config/load.js';
import type { Config } from '../config/types.js';
import { isSigilError } from '../errors.js';
import { ManifestGate } from '../gate/manifest-gate.js';
import type { CopyRecord } from '../mirror/copy.js';
import { formatBytes, shortDigest, table } from '../mirror/format.js';
import { MIRROR_FILE_MAX_BYTES } from '../mirror/limits.js';
import { importLayout, type ImportResult } from '../mirror/import.js';
import { exportLayout, parseRefName } from '../mirror/oci-layout.js';
import { isCopied, runMirror, type MirrorResult, type MirrorStatus } from '../mirror/run.js';
import { parseMirrorSpec } from '../mirror/spec.js';
import { mirrorRegistry } from '../registry/compose.js';
import { Catalog, ContentStore } from '../store/index.js';
import type { Registry } from '../oci/registry.js';
import { parseArgs, UsageError } from './args.js';
import type { CliIo } from './io.js';
import { MIRROR_USAGE } from './usage.js';
import { importLine, ProgressLines } from './mirror-progress.js';
import { HashPool } from '../hash/hash-pool.js';

export interface MirrorCommandOptions {
  /** stderr is a terminal: redraw one progress line instead of appending lines. */
  readonly stderrIsTTY?: boolean;
  readonly now?: () => number;
  /** The progress lines' clock and interval (tests); default `now` and mirror-progress.ts's. */
  readonly progress?: { readonly now: () => number; readonly intervalMs: number };
}

/** Every status, in the order the summary counts them. */
const STATUSES: readonly MirrorStatus[] = ['verified', 'unverified', 'signature', 'denied', 'failed'];

/**
 * `sigil mirror FILE [--config F] [--export DIR] [--json]` and `sigil mirror --import DIR [--config F] [--json]`.
 * `argv` is what follows `mirror`. Exit 0 when everything selected was mirrored (or imported),
 * 1 when something was skipped or failed, 2 on a usage, config or FILE error.
 */
export async function mirrorCommand(io: CliIo, argv: readonly string[], opts: MirrorCommandOptions = {}): Promise<number> {
  const a = parseArgs(argv, { values: ['config', 'export', 'import'], booleans: ['json', 'help'] });
  if (a.flags.has('help')) {
    io.stdout(MIRROR_USAGE);
    return 0;
  }
  const importDir = a.flags.get('import') as string | undefined;
  const exportDir = a.flags.get('export') as string | undefined;
  if (importDir !== undefined) {
    if (a.positionals.length > 0) throw new UsageError(`--import takes no FILE (got '${a.positionals[0]}')`);
    if (exportDir !== undefined) throw new UsageError('--import and --export do not go together');
  } else if (a.positionals.length !== 1) {
    throw new UsageError(a.positionals.length === 0 ? 'expected a mirror FILE (or --import DIR)' : `unexpected argument '${a.positionals[1]}'`);
  }
  const json = a.flags.has('json');
  const loaded = await loadConfig({ path: a.flags.get('config') as string | undefined, env: io.env, cwd: io.cwd });
  if (!loaded.ok) {
    io.stderr(formatProblems(loaded.problems, loaded.source) + '\n');
    return 2;
  }
  const config = loaded.config;
  if (config.cache.store === undefined) {
    io.stderr(`sigil: ${config.source}: cache.store is not set: mirror copies images into the content store (cache.store.dir)\n`);
    return 2;
  }
  if (importDir !== undefined) return importCommand(io, config, resolve(io.cwd, importDir), json, opts.now);

  const file = resolve(io.cwd, a.positionals[0]);
  let text: string;
  try {
    const st = await stat(file);
    if (st.size > MIRROR_FILE_MAX_BYTES) throw new Error(`${st.size} bytes, more than ${MIRROR_FILE_MAX_BYTES}`);
    text = await readFile(file, 'utf8');
  } catch (e) {
    io.stderr(`sigil: cannot read ${a.positionals[0]}: ${(e as Error).message}\n`);
    return 2;
  }
  const spec = parseMirrorSpec(text, config);
  if (!spec.ok) {
    io.stderr(formatProblems(spec.problems, a.positionals[0]) + '\n');
    return 2;
  }
  const verifier = trustOrReport(io, config);
  if (!verifier) return 2;
  const logger = createLogger('silent');
  const metrics = new Metrics();
  // blobs are hashed as they are written into the store: on worker threads
  const hashes = new HashPool({ logger });
  const clients = new Map<string, Registry>(config.upstreams.map((u) => [u.name, mirrorRegistry(u, { metrics, logger, hashes })]));
  let store: ContentStore;
  try {
    store = await ContentStore.open({ dir: config.cache.store.dir, maxBytes: config.cache.store.maxBytes, hashes, ...(opts.now ? { now: opts.now } : {}) });
  } catch (err) {
    await closeAll(clients);
    await hashes.close();
    io.stderr(`sigil: ${config.source}: cache.store.dir: cannot open ${config.cache.store.dir}: ${(err as Error).message}\n`);
    return 2;
  }
  try {
    const gate = new ManifestGate({ config, clients, metrics, logger, verifier });
    const progress = new ProgressLines(io, { tty: opts.stderrIsTTY === true, now: opts.progress?.now ?? opts.now ?? Date.now, ...(opts.progress ? { intervalMs: opts.progress.intervalMs } : {}) });
    const results = await runMirror(
      { config, clients, gate, content: store, catalog: new Catalog(store), ...(opts.now ? { now: opts.now } : {}) },
      spec.images,
      progress,
    );
    progress.finished(results);
    let exported: Awaited<ReturnType<typeof exportLayout>> | undefined;
    let exportError: string | undefined;
    if (exportDir !== undefined) {
      const records = results.map((r) => r.record).filter((r): r is CopyRecord => r !== undefined);
      try {
        exported = await exportLayout(store, resolve(io.cwd, exportDir), records);
        io.stderr(`exported ${exported.entries} ref(s) to ${exportDir} (${exported.blobsWritten} blob(s), ${formatBytes(exported.bytesWritten)} written)\n`);
      } catch (e) {
        exportError = isSigilError(e) ? `${e.code}: ${e.message}` : (e as Error).message;
        io.stderr(`sigil: export to ${exportDir} failed: ${exportError}\n`);
      }
    }
    if (json) {
      io.stdout(
        `${JSON.stringify({
          results: results.map(({ record: _r, ...rest }) => rest),
          ...(exportDir !== undefined ? { export: exported ?? { error: exportError } } : {}),
        })}\n`,
      );
    } else {
      io.stdout(summaryTable(results));
    }
    const allMirrored = results.length > 0 && results.every((r) => isCopied(r.status));
    return allMirrored && exportError === undefined ? 0 : 1;
  } finally {
    await closeAll(clients);
    await store.close();
    await hashes.close();
  }
}

async function closeAll(clients: ReadonlyMap<string, Registry>): Promise<void> {
  await Promise.all([...clients.values()].map((c) => c.close()));
}

function summaryTable(results: readonly MirrorResult[]): string {
  const rows = results.map((r) => [r.image, r.tag, shortDigest(r.digest), r.status, r.signer ?? '-', isCopied(r.status) ? formatBytes(r.bytes) : '-', r.reason ?? '']);
  return `${table(['IMAGE', 'TAG', 'DIGEST', 'STATUS', 'SIGNER', 'BYTES', 'NOTE'], rows)}${results.length} image(s): ${counts(results)}\n`;
}

/** `3 verified, 0 unverified, 2 signature, 1 denied, 0 failed` */
function counts(results: ReadonlyArray<{ readonly status: MirrorStatus }>): string {
  return STATUSES.map((s) => `${results.filter((r) => r.status === s).length} ${s}`).join(', ');
}

async function importCommand(io: CliIo, config: Config, dir: string, json: boolean, now?: () => number): Promise<number> {
  const storeCfg = config.cache.store as NonNullable<Config['cache']['store']>;
  const verifier = trustOrReport(io, config);
  if (!verifier) return 2;
  let store: ContentStore;
  try {
    store = await ContentStore.open({ dir: storeCfg.dir, maxBytes: storeCfg.maxBytes, ...(now ? { now } : {}) });
  } catch (err) {
    io.stderr(`sigil: ${config.source}: cache.store.dir: cannot open ${storeCfg.dir}: ${(err as Error).message}\n`);
    return 2;
  }
  const known = new Set(config.upstreams.flatMap((u) => [u.name, ...u.aliases]));
  const warned = new Set<string>();
  let results: ImportResult[];
  try {
    results = await importLayout({ content: store, catalog: new Catalog(store), config, verifier, ...(now ? { now } : {}) }, dir, (r) => {
      const up = parseRefName(r.ref)?.upstream;
      if (up !== undefined && !known.has(up) && !warned.has(up)) {
        warned.add(up);
        io.stderr(`warning: upstream ${up} is not configured in ${config.source}: sigil serve will not route to what is imported for it\n`);
      }
      io.stderr(`${importLine(r)}\n`);
    });
  } catch (e) {
    io.stderr(`sigil: cannot import ${dir}: ${isSigilError(e) ? e.message : (e as Error).message}\n`);
    return 2;
  } finally {
    await store.close();
  }
  if (json) io.stdout(`${JSON.stringify({ results })}\n`);
  else {
    const rows = results.map((r) => [r.ref, shortDigest(r.digest), r.status, r.signer ?? '-', isCopied(r.status) ? String(r.objects) : '-', r.reason ?? '']);
    io.stdout(`${table(['REF', 'DIGEST', 'STATUS', 'SIGNER', 'OBJECTS', 'NOTE'], rows)}${results.length} ref(s): ${counts(results)}\n`);
  }
  return results.length > 0 && results.every((r) => isCopied(r.status)) ? 0 : 1;
}

/** The trust material of the config, or null after saying which trusted root failed. */
function trustOrReport(io: CliIo, config: Config): ReturnType<typeof loadVerifier> | null {
  try {
    return loadVerifier(config);
  } catch (err) {
    io.stderr(`sigil: ${config.source}: trust.trustedRoot: ${(err as Error).message}\n`);
    return null;
  }
}
