import pino, { type DestinationStream, type Logger } from 'pino';
import { createRequire } from 'node:module';
import type { SonicBoom as SonicBoomClass } from 'sonic-boom';
import type PinoPretty from 'pino-pretty';

/** pino-pretty, loaded only for `--log-format pretty` (a JSON logger never needs it). */
const prettyStream = (): typeof PinoPretty => createRequire(import.meta.url)('pino-pretty') as typeof PinoPretty;
/** sonic-boom's class (its module is the class itself, which its types do not say). */
const SonicBoom = createRequire(import.meta.url)('sonic-boom') as typeof SonicBoomClass;

/** `--log-format`: JSON lines for machines (the default), or pino-pretty's text for people. */
export type LogFormat = 'json' | 'pretty';
export const LOG_FORMATS: readonly LogFormat[] = ['json', 'pretty'];

/** Paths that must never reach a log line: client and upstream credentials, tokens. */
// Explicit paths only: pino's wildcard redaction cost ~12% of sigil's CPU per request in the
// benchmark. Nothing in sigil logs credentials by design (the upstream client logs neither
// tokens nor Authorization); these paths are the safety net for what could carry them.
export const REDACT_PATHS = [
  'req.headers.authorization',
  'req.headers.cookie',
  'req.headers["proxy-authorization"]',
  'res.headers["set-cookie"]',
  'headers.authorization',
  'authorization',
  'token',
  'password',
  'credentials',
  'err.config.headers.authorization',
];

let stdoutLines: DestinationStream | undefined;

/**
 * The process's stdout as one log destination (every logger of the process shares it, so lines
 * never interleave), written asynchronously: lines that arrive while a write is under way go out
 * together in the next one, instead of one write(2) per line on the event loop. What is pending
 * when the process exits is written then.
 * When the reader of stdout is gone (EPIPE: a log collector or a pipe that ended), lines are
 * dropped from then on, and the exit does not wait for them. sonic-boom 5, not pino's own
 * destination: that one's flush at exit retried a write to a pipe without reader forever, so a
 * `sigil serve` whose log reader had died never ended on SIGTERM.
 */
function stdoutDestination(): DestinationStream {
  if (stdoutLines !== undefined) return stdoutLines;
  const stream = new SonicBoom({ fd: 1, sync: false });
  let readerGone = false;
  stream.on('error', (err: NodeJS.ErrnoException) => {
    if (err.code !== 'EPIPE') throw err;
    readerGone = true;
  });
  process.once('exit', () => {
    if (readerGone) return;
    try {
      stream.flushSync();
    } catch {
      // the reader went away meanwhile (EPIPE) or stdout is closed: nothing more can be written
    }
  });
  stdoutLines = { write: (line: string) => (readerGone ? true : stream.write(line)) };
  return stdoutLines;
}

/**
 * A JSON logger; by default to the process's stdout (stdoutDestination).
 * `pretty`: the same records as readable text, one line each (time, level, message, fields),
 * formatted in this process (pino-pretty as a stream, not a worker thread), colored on a TTY.
 */
export function createLogger(level: string, destination?: DestinationStream, format: LogFormat = 'json'): Logger {
  const options = { level, redact: { paths: REDACT_PATHS, censor: '[redacted]' } };
  if (format === 'pretty') return pino(options, prettyStream()({ destination: destination ?? 1, sync: false, translateTime: 'SYS:standard', ignore: 'pid,hostname', singleLine: true }));
  return pino(options, destination ?? stdoutDestination());
}
