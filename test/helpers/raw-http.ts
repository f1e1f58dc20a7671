import { connect } from 'node:net';

/** A raw exchange must not hang a test: the socket is destroyed after this long. */
export const RAW_REQUEST_TIMEOUT_MS = 10_000;

export interface RawResponse {
  readonly status: number;
  /** The status line's reason phrase, as sent (latin1). */
  readonly reason: string;
  /** Header names lower-cased; a repeated header keeps its last value. */
  readonly headers: Readonly<Record<string, string>>;
  /** Everything after the header block, as sent (chunked framing left in place). */
  readonly body: string;
}

/**
 * One HTTP/1.1 request written byte for byte on a fresh socket: `target` goes on the request
 * line exactly as given (fetch and undici normalise paths, so they cannot send `/%762/` or an
 * absolute-form target). Sends `Connection: close` and reads the answer until the server closes.
 * A declared body (`content-length` in `headers`) is never sent: the answer must not wait for it.
 */
export function rawRequest(
  port: number,
  method: string,
  target: string,
  headers: Record<string, string> = {},
): Promise<RawResponse> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host: '127.0.0.1', port });
    const chunks: Buffer[] = [];
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`${method} ${target}: no complete answer within ${RAW_REQUEST_TIMEOUT_MS} ms`));
    }, RAW_REQUEST_TIMEOUT_MS);
    socket.once('connect', () => {
      const lines = [`${method} ${target} HTTP/1.1`, `Host: 127.0.0.1:${port}`, 'Connection: close'];
      for (const [k, v] of Object.entries(headers)) lines.push(`${k}: ${v}`);
      socket.write(`${lines.join('\r\n')}\r\n\r\n`);
    });
    socket.on('data', (c: Buffer) => chunks.push(c));
    socket.once('error', (err) => {
      clearTimeout(timer);
      reject(new Error(`${method} ${target}: ${err.message}`));
    });
    socket.once('close', () => {
      clearTimeout(timer);
      const text = Buffer.concat(chunks).toString('latin1');
      const end = text.indexOf('\r\n\r\n');
      const head = end < 0 ? text : text.slice(0, end);
      const m = /^HTTP\/1\.[01] (\d{3})(?: ([^\r\n]*))?/.exec(head);
      if (!m) {
        reject(new Error(`${method} ${target}: no HTTP status line in ${JSON.stringify(text.slice(0, 200))}`));
        return;
      }
      const out: Record<string, string> = {};
      for (const line of head.split('\r\n').slice(1)) {
        const colon = line.indexOf(':');
        if (colon > 0) out[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim();
      }
      resolve({ status: Number(m[1]), reason: m[2] ?? '', headers: out, body: end < 0 ? '' : text.slice(end + 4) });
    });
  });
}
