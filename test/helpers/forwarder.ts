import { request as httpRequest } from 'node:http';
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
}

/**
 * A recording pass-through in front of a real registry: counts what sigil asks the upstream
 * (distribution's own test suite wraps its "truth" registry the same way).
 */
export async function startForwarder(targetUrl: string): Promise<Forwarder> {
  const target = new URL(targetUrl);
  let down = false;
  const holds: Array<{ method: string; prefix: string; arrive: () => void; released: Promise<void> }> = [];
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
      up.pipe(res);
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
  };
}
