import pino, { type DestinationStream, type Logger } from 'pino';

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
 */
export function createLogger(level: string, destination?: DestinationStream): Logger {
  return pino({ level, redact: { paths: REDACT_PATHS, censor: '[redacted]' } }, destination ?? pino.destination({ dest: 1, sync: false }));
}
