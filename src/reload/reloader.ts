import type { Logger } from 'pino';
import type { Metrics } from '../audit/metrics.js';
import type { LoadResult } from '../config/load.js';
import { BUILT_IN_SOURCE } from '../config/defaults.js';
import type { Config, ConfigProblem } from '../config/types.js';
import { keepFixed } from './fixed-settings.js';

export type ReloadOutcome =
  | { readonly ok: true; readonly generation: number; readonly restartNeeded: readonly string[] }
  | { readonly ok: false; readonly problems: readonly string[] };

export interface ReloaderDeps {
  /** Reads the config again as at start: the same lookup, the same command-line overrides. */
  load(): Promise<LoadResult>;
  /** The config of the current generation. */
  running(): Config;
  /**
   * Builds what `config` needs (trust, upstream clients, the gate, TLS context) and makes it the
   * current generation; resolves to its number. Throws, changing nothing, when it cannot.
   */
  install(config: Config): Promise<number>;
  readonly logger: Logger;
  readonly metrics: Metrics;
  /** Wall clock, ms since the epoch (tests pass a fake one). */
  readonly now?: () => number;
}

const line = (p: ConfigProblem): string => `${p.path === '' ? '' : `${p.path}: `}${p.message}`;

/**
 * A reload, start to end: read and validate the config again, keep the settings that need a
 * restart (fixed-settings.ts), install the new generation; or refuse it, log every problem, and
 * keep the running one (a config file that went missing is refused too, not replaced by the
 * built-in default). One reload runs at a time: asking during one runs one more after it
 * (all who asked meanwhile share it), so the last change is always read. Counted in
 * `sigil_config_reloads_total{result}`; a refused reload shows in `/readyz` until one succeeds.
 */
export class Reloader {
  readonly #deps: ReloaderDeps;
  readonly #now: () => number;
  #generation = 1;
  #running: Promise<ReloadOutcome> | null = null;
  #queued: Promise<ReloadOutcome> | null = null;
  #loadedAt: number;
  #failure: { readonly at: number; readonly trigger: string; readonly problems: readonly string[] } | null = null;
  #restartNeeded: readonly string[] = [];

  constructor(deps: ReloaderDeps) {
    this.#deps = deps;
    this.#now = deps.now ?? Date.now;
    this.#loadedAt = this.#now();
    deps.metrics.configLastReloadSuccess.set(this.#loadedAt / 1000);
    deps.metrics.configLastReloadSuccessful.set(1);
  }

  /** Reloads (`trigger` is logged: SIGHUP, a file change, …). Never rejects. */
  reload(trigger: string): Promise<ReloadOutcome> {
    if (this.#queued) return this.#queued;
    if (this.#running) {
      this.#queued = this.#running.then(() => {
        this.#queued = null;
        return this.#run(trigger);
      });
      return this.#queued;
    }
    return this.#run(trigger);
  }

  /** For /readyz: a refused reload (the config still serving is older than the file) and settings waiting for a restart. */
  degraded(): Record<string, string> {
    const parts: string[] = [];
    const f = this.#failure;
    if (f) {
      parts.push(`reload at ${new Date(f.at).toISOString()} (${f.trigger}) refused, ${f.problems.length} problem(s): ${f.problems.join('; ')}; still serving the config loaded at ${new Date(this.#loadedAt).toISOString()}`);
    }
    if (this.#restartNeeded.length > 0) parts.push(`restart needed: ${this.#restartNeeded.join('; ')}`);
    return parts.length > 0 ? { config: parts.join('; ') } : {};
  }

  #run(trigger: string): Promise<ReloadOutcome> {
    const run = this.#attempt(trigger).finally(() => {
      if (this.#running === run) this.#running = null;
    });
    this.#running = run;
    return run;
  }

  async #attempt(trigger: string): Promise<ReloadOutcome> {
    const { logger: log } = this.#deps;
    let res: LoadResult;
    try {
      res = await this.#deps.load();
    } catch (err) {
      return this.#refuse(trigger, 'the config', [`cannot load: ${(err as Error).message}`]);
    }
    if (!res.ok) return this.#refuse(trigger, res.source, res.problems.filter((p) => p.severity === 'error').map(line));
    // The lookup falls back to the built-in default (every image in warn mode) when no config
    // file is found: right at start, never in place of a file that went missing since.
    const from = this.#deps.running().source;
    if (res.source === BUILT_IN_SOURCE && from !== BUILT_IN_SOURCE) {
      return this.#refuse(trigger, from, [`${from} is gone: a reload does not fall back to the built-in default; the config loaded from it keeps serving`]);
    }
    const { config, restartNeeded } = keepFixed(res.config, this.#deps.running());
    let generation: number;
    try {
      generation = await this.#deps.install(config);
    } catch (err) {
      return this.#refuse(trigger, res.source, [(err as Error).message]);
    }
    for (const w of res.warnings) log.warn({ path: w.path, config: res.source }, `config: ${w.message}`);
    for (const r of restartNeeded) log.warn({ config: res.source }, `config: ${r}`);
    this.#generation = generation;
    this.#loadedAt = this.#now();
    this.#failure = null;
    this.#restartNeeded = restartNeeded;
    this.#deps.metrics.configReloads.inc({ result: 'success' });
    this.#deps.metrics.configLastReloadSuccess.set(this.#loadedAt / 1000);
    this.#deps.metrics.configLastReloadSuccessful.set(1);
    log.info({ trigger, config: res.source, generation, restartNeeded: restartNeeded.length > 0 ? restartNeeded : undefined }, 'config reloaded');
    return { ok: true, generation, restartNeeded };
  }

  #refuse(trigger: string, source: string, problems: readonly string[]): ReloadOutcome {
    const { logger: log, metrics } = this.#deps;
    for (const p of problems) log.error({ trigger, config: source }, `config reload: ${p}`);
    log.error({ trigger, config: source, problems: problems.length, generation: this.#generation }, 'config reload refused; the running config keeps serving');
    this.#failure = { at: this.#now(), trigger, problems };
    metrics.configReloads.inc({ result: 'failure' });
    metrics.configLastReloadSuccessful.set(0);
    return { ok: false, problems };
  }
}
