import pino, { type DestinationStream, type Logger } from 'pino';

/** Paths that must never reach a log line: client and upstream credentials, tokens. */
export const REDACT_PATHS = [
  'req.headers.authorization',
  'req.headers.cookie',
  'res.headers["set-cookie"]',
  'headers.authorization',
  'authorization',
  'token',
  'password',
  'credentials',
  '*.authorization',
  '*.token',
  '*.password',
  '*.credentials',
];

export function createLogger(level: string, destination?: DestinationStream): Logger {
  return pino({ level, redact: { paths: REDACT_PATHS, censor: '[redacted]' } }, destination);
}
