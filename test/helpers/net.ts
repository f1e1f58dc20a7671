import { createServer, request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import type { AddressInfo } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';

const POLL_INTERVAL_MS = 50; // short: servers under test start in ~100 ms
const PROBE_TIMEOUT_MS = 2000; // one probe must not eat the whole waitForHttp budget

/** A TCP port that was free on 127.0.0.1 a moment ago (listen on :0, close, return it). */
export async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

/** One GET; resolves with the status code of any HTTP answer, rejects on connection errors. */
export function probeHttp(url: string, timeoutMs = PROBE_TIMEOUT_MS): Promise<number> {
  const u = new URL(url);
  const send = u.protocol === 'https:' ? httpsRequest : httpRequest;
  return new Promise<number>((resolve, reject) => {
    const req = send(u, { method: 'GET', agent: false, timeout: timeoutMs, rejectUnauthorized: false }, (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    });
    req.on('timeout', () => req.destroy(new Error(`probe of ${url} timed out`)));
    req.on('error', reject);
    req.end();
  });
}

/** Polls `url` until it gives any HTTP answer (any status); rejects after `timeoutMs`. */
export async function waitForHttp(url: string, timeoutMs = 10000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    const left = deadline - Date.now();
    if (left <= 0) break;
    try {
      await probeHttp(url, Math.min(PROBE_TIMEOUT_MS, left));
      return;
    } catch (err) {
      last = err;
    }
    await sleep(Math.min(POLL_INTERVAL_MS, Math.max(0, deadline - Date.now())));
  }
  throw new Error(`no HTTP answer from ${url} within ${timeoutMs} ms: ${String(last)}`);
}
