import { request as httpRequest } from 'node:http';
import { Transform } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { startFaultServer, type FaultServer } from './fault-server.js';

/** A request held before it is forwarded: `arrived` once it came in, `release()` lets it go on. */
export interface Held {
  readonly arrived: Promise<void>;
  release(): void;
}

export interface Forwarder extends FaultServer {
  /** While down, every request has its connection destroyed (an upstream outage). */
  setDown(down: boolean): void;
  /** Requests seen, as "METHOD /path" without the query. */
  count(method: string, pathPrefix: string): number;
  /** The next request of `method` whose path starts with `pathPrefix` waits until released (others pass). */
  hold(method: string, pathPrefix: string): Held;
  /**
   * Responses to `method` requests whose path starts with `pathPrefix` are sent in pieces of
   * `chunkBytes` with `delayMs` between them (a slow origin), until `fast()` is called.
   */
  slow(method: string, pathPrefix: string, o: { chunkBytes: number; delayMs: number }): { fast(): void };
}

/** A response body in pieces of `chunkBytes`, `delayMs` apart, while `isSlow()`. */
function trickle(chunkBytes: number, delayMs: number, isSlow: () => boolean): Transform {
  return new Transform({
    async transform(chunk: Buffer, _enc, cb) {
      for (let at = 0; at < chunk.length; at += chunkBytes) {
        this.push(chunk.subarray(at, at + chunkBytes));
        if (isSlow()) await sleep(delayMs);
      }
      cb();
    },
  });
}

/**
 * A recording pass-through in front of a real registry: counts what sigil asks the upstream
 * (distribution's own test suite wraps its "truth" registry the same way).
 */
export async function startForwarder(targetUrl: string): Promise<Forwarder> {
  const target = new URL(targetUrl);
  let down = false;
  const holds: Array<{ method: string; prefix: string; arrive: () => void; released: Promise<void> }> = [];
  const slows: Array<{ method: string; prefix: string; chunkBytes: number; delayMs: number; on: boolean }> = [];
  const server = await startFaultServer(async (req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    const h = holds.findIndex((x) => x.method === req.method && path.startsWith(x.prefix));
    if (h >= 0) {
      const [held] = holds.splice(h, 1);
      held.arrive();
      await held.released;
    }
    if (down) {
      res.socket?.destroy();
      return;
    }
    const fwd = httpRequest(new URL(req.url ?? '/', target), { method: req.method, headers: { ...req.headers, host: target.host } }, (up) => {
      res.writeHead(up.statusCode ?? 502, up.headers);
      const slowed = slows.find((x) => x.on && x.method === req.method && path.startsWith(x.prefix));
      if (slowed) {
        const t = trickle(slowed.chunkBytes, slowed.delayMs, () => slowed.on);
        up.pipe(t).pipe(res);
        res.on('close', () => up.destroy());
      } else up.pipe(res);
    });
    fwd.on('error', () => res.destroy());
    req.pipe(fwd);
  });
  return {
    ...server,
    setDown: (d) => {
      down = d;
    },
    count: (method, pathPrefix) => server.requests.filter((r) => r.method === method && r.url.split('?')[0].startsWith(pathPrefix)).length,
    hold: (method, prefix) => {
      let arrive!: () => void;
      let release!: () => void;
      const arrived = new Promise<void>((r) => (arrive = r));
      const released = new Promise<void>((r) => (release = r));
      holds.push({ method, prefix, arrive, released });
      return { arrived, release };
    },
    slow: (method, prefix, o) => {
      const entry = { method, prefix, ...o, on: true };
      slows.push(entry);
      return { fast: () => (entry.on = false) };
    },
  };
}
