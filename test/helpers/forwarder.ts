import { request as httpRequest } from 'node:http';
import { startFaultServer, type FaultServer } from './fault-server.js';

export interface Forwarder extends FaultServer {
  /** While down, every request has its connection destroyed (an upstream outage). */
  setDown(down: boolean): void;
  /** Requests seen, as "METHOD /path" without the query. */
  count(method: string, pathPrefix: string): number;
}

/**
 * A recording pass-through in front of a real registry: counts what sigil asks the upstream
 * (distribution's own test suite wraps its "truth" registry the same way).
 */
export async function startForwarder(targetUrl: string): Promise<Forwarder> {
  const target = new URL(targetUrl);
  let down = false;
  const server = await startFaultServer((req, res) => {
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
  };
}
