import { CommandError, parseArgs, UsageError } from './cli/args.js';
import type { CliIo } from './cli/io.js';
import type { Served } from './cli/serve.js';
import { commandUsage, SERVE_USAGE, USAGE } from './cli/usage.js';
import { sigilVersion as version } from './version.js';

// The only file that reads process.env and argv, and decides the process's exit.
// A command's module is loaded when that command runs: `--version`, the usages and `config check`
// do not pay for the server, the verifier and their libraries (~0.3 CPU s per process).

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
        const a = parseArgs(rest, { values: ['config', 'listen', 'log-format'], booleans: ['offline', 'help'] });
        if (a.flags.has('help')) return (io.stdout(SERVE_USAGE), 0);
        if (a.positionals.length > 0) throw new UsageError(`unexpected argument '${a.positionals[0]}'`);
        const listenFlag = a.flags.get('listen') as string | undefined;
        const listenEnv = io.env.SIGIL_LISTEN === '' ? undefined : io.env.SIGIL_LISTEN;
        const listen = listenFlag !== undefined ? { value: listenFlag, from: '--listen' } : listenEnv !== undefined ? { value: listenEnv, from: '$SIGIL_LISTEN' } : undefined;
        // SIGHUP reloads, SIGTERM/SIGINT stop; all three are ours from the start (node's default would
        // end the process): one that arrives while the server starts (it may answer before
        // startServe returns) takes effect as soon as it is up.
        let served: Served | undefined;
        let hangupWhileStarting = false;
        let stopSignal: string | undefined;
        let stopNow: ((sig: string) => void) | undefined;
        const onHangup = () => {
          if (served) void served.reload('SIGHUP');
          else hangupWhileStarting = true;
        };
        const onSignal = (sig: string) => {
          process.off('SIGTERM', onSignal).off('SIGINT', onSignal).off('SIGHUP', onHangup);
          if (stopNow) stopNow(sig);
          else stopSignal = sig;
        };
        process.on('SIGHUP', onHangup).on('SIGTERM', onSignal).on('SIGINT', onSignal);
        const { startServe } = await import('./cli/serve.js');
        const started = await startServe(io, { config: a.flags.get('config') as string | undefined, offline: a.flags.has('offline'), listen, logFormat: a.flags.get('log-format') as string | undefined });
        if (typeof started === 'number') {
          process.off('SIGHUP', onHangup).off('SIGTERM', onSignal).off('SIGINT', onSignal);
          return started;
        }
        served = started;
        if (hangupWhileStarting && stopSignal === undefined) void started.reload('SIGHUP');
        return await new Promise<number>((resolve) => {
          stopNow = (sig) => {
            started.app.log.info({ signal: sig }, 'shutting down');
            started.stop().then(resolve, () => resolve(1));
          };
          if (stopSignal !== undefined) stopNow(stopSignal);
        });
      }
      case 'verify':
        return await (await import('./cli/verify.js')).verifyCli(io, rest);
      case 'mirror':
        return await (await import('./cli/mirror.js')).mirrorCommand(io, rest, { stderrIsTTY: process.stderr.isTTY === true });
      case 'cache':
        return await (await import('./cli/cache.js')).cacheCommand(io, rest);
      case 'config':
        return await (await import('./cli/config-check.js')).configCommand(io, rest);
      default:
        throw new UsageError(`unknown command '${command}'`);
    }
  } catch (e) {
    if (e instanceof UsageError) {
      io.stderr(`sigil: ${e.message}\n\n${commandUsage(command) ?? USAGE}`);
      return 2;
    }
    if (e instanceof CommandError) {
      io.stderr(`sigil: ${e.message}\n`);
      return e.exitCode;
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
