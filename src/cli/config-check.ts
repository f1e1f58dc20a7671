import { formatProblems, loadConfig } from '../config/load.js';
import type { CliIo } from './io.js';

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
