import { parseArgs, UsageError } from './cli/args.js';
import { configCheck } from './cli/config-check.js';
import type { CliIo } from './cli/io.js';
import { startServe } from './cli/serve.js';
import { verifyCommand } from './cli/verify.js';
import { cacheCommand } from './cli/cache.js';
import { mirrorCommand } from './cli/mirror.js';
import { USAGE } from './cli/usage.js';
import { sigilVersion as version } from './version.js';

// The only file that reads process.env and argv, and decides the process's exit.

async function main(argv: string[]): Promise<number> {
  const io: CliIo = {
    env: process.env,
    cwd: process.cwd(),
    stdout: (t) => process.stdout.write(t),
    stderr: (t) => process.stderr.write(t),
  };
  const [command, ...rest] = argv;
  if (command === undefined || command === '--help' || command === '-h' || command === 'help') {
    io.stdout(USAGE);
    return command === undefined ? 2 : 0;
  }
  if (command === '--version' || command === '-v') {
    io.stdout(`sigil ${version()}\n`);
    return 0;
  }
  try {
    switch (command) {
      case 'serve': {
        const a = parseArgs(rest, { values: ['config'], booleans: ['offline', 'help'] });
        if (a.flags.has('help')) return (io.stdout(USAGE), 0);
        if (a.positionals.length > 0) throw new UsageError(`unexpected argument '${a.positionals[0]}'`);
        const served = await startServe(io, { config: a.flags.get('config') as string | undefined, offline: a.flags.has('offline') });
        if (typeof served === 'number') return served;
        return await new Promise<number>((resolve) => {
          const onSignal = (sig: string) => {
            process.off('SIGTERM', onSignal).off('SIGINT', onSignal);
            served.app.log.info({ signal: sig }, 'shutting down');
            served.stop().then(resolve, () => resolve(1));
          };
          process.on('SIGTERM', onSignal).on('SIGINT', onSignal);
        });
      }
      case 'verify': {
        const a = parseArgs(rest, { values: ['config'], booleans: ['json', 'help'] });
        if (a.flags.has('help')) return (io.stdout(USAGE), 0);
        if (a.positionals.length !== 1) throw new UsageError('expected exactly one IMAGE');
        return await verifyCommand(io, { image: a.positionals[0], config: a.flags.get('config') as string | undefined, json: a.flags.has('json') });
      }
      case 'mirror':
        return await mirrorCommand(io, rest, { stderrIsTTY: process.stderr.isTTY === true });
      case 'cache':
        return await cacheCommand(io, rest);
      case 'config': {
        const a = parseArgs(rest, { values: ['config'], booleans: ['help'] });
        if (a.flags.has('help')) return (io.stdout(USAGE), 0);
        if (a.positionals[0] !== 'check' || a.positionals.length > 1) throw new UsageError(`expected 'sigil config check'`);
        return await configCheck(io, a.flags.get('config') as string | undefined);
      }
      default:
        throw new UsageError(`unknown command '${command}'`);
    }
  } catch (e) {
    if (e instanceof UsageError) {
      io.stderr(`sigil: ${e.message}\n\n${USAGE}`);
      return 2;
    }
    throw e;
  }
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
    // A served process has closed its server; anything left (timers, sockets) must not keep it alive.
    if (process.argv[2] === 'serve') setImmediate(() => process.exit(code));
  },
  (err: unknown) => {
    process.stderr.write(`sigil: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    process.exit(1);
  },
);
