import pino, { type DestinationStream, type Logger } from 'pino';
import { createRequire } from 'node:module';
import type PinoPretty from 'pino-pretty';

/** pino-pretty, loaded only for `--log-format pretty` (a JSON logger never needs it). */
const prettyStream = (): typeof PinoPretty => createRequire(import.meta.url)('pino-pretty') as typeof PinoPretty;

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

/**
 * A JSON logger; by default to stdout, written asynchronously: lines that arrive while
 * a write is under way go out together in the next one, instead of one write(2) per
 * line on the event loop. pino flushes what is pending when the process exits.
 * `pretty`: the same records as readable text, one line each (time, level, message, fields),
 * formatted in this process (pino-pretty as a stream, not a worker thread), colored on a TTY.
 */
export function createLogger(level: string, destination?: DestinationStream, format: LogFormat = 'json'): Logger {
  const options = { level, redact: { paths: REDACT_PATHS, censor: '[redacted]' } };
  if (format === 'pretty') return pino(options, prettyStream()({ destination: destination ?? 1, sync: false, translateTime: 'SYS:standard', ignore: 'pid,hostname', singleLine: true }));
  return pino(options, destination ?? pino.destination({ dest: 1, sync: false }));
}
