import { formatProblems, loadConfig } from '../config/load.js';
import { parseArgs, UsageError } from './args.js';
import type { CliIo } from './io.js';
import { CONFIG_USAGE } from './usage.js';

/** `sigil config check [--config F]`; `argv` is what follows `config`. */
export async function configCommand(io: CliIo, argv: readonly string[]): Promise<number> {
  const a = parseArgs(argv, { values: ['config'], booleans: ['help'] });
  if (a.flags.has('help')) return (io.stdout(CONFIG_USAGE), 0);
  if (a.positionals[0] !== 'check' || a.positionals.length > 1) throw new UsageError(`expected 'sigil config check'`);
  return configCheck(io, a.flags.get('config') as string | undefined);
}

/** `sigil config check`: 0 valid (warnings printed), 2 invalid. */
export async function configCheck(io: CliIo, path: string | undefined): Promise<number> {
  const res = await loadConfig({ path, env: io.env, cwd: io.cwd });
  if (!res.ok) {
    io.stderr(formatProblems(res.problems, res.source) + '\n');
    return 2;
  }
  if (res.warnings.length > 0) io.stderr(formatProblems(res.warnings, res.config.source) + '\n');
  io.stdout(
    `${res.config.source}: valid — ${res.config.upstreams.length} upstream(s), ${res.config.policies.length} polic${res.config.policies.length === 1 ? 'y' : 'ies'}\n`,
  );
  return 0;
}
