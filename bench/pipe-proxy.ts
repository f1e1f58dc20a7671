/**
 * The baseline: a bare node:http pipe proxy, run as its own process by bench/run.ts.
 * No routing, no hashing, no logging: http.request to the registry, res.pipe back.
 *
 *   node dist/bench/pipe-proxy.js <port> <upstream origin>
 */
import { Agent, createServer, request } from 'node:http';

const [portArg, upstreamArg] = process.argv.slice(2);
if (portArg === undefined || upstreamArg === undefined) {
  process.stderr.write('usage: pipe-proxy.js <port> <upstream origin>\n');
  process.exit(2);
}
const upstream = new URL(upstreamArg);
// keep-alive to the registry, as sigil's undici agent does
const agent = new Agent({ keepAlive: true });

const server = createServer((req, res) => {
  const up = request(
    { host: upstream.hostname, port: upstream.port, method: req.method, path: req.url, headers: { ...req.headers, host: upstream.host }, agent },
    (upRes) => {
      res.writeHead(upRes.statusCode ?? 502, upRes.headers);
      upRes.pipe(res);
    },
  );
  up.on('error', () => {
    if (!res.headersSent) res.writeHead(502).end();
    else res.destroy();
  });
  res.on('close', () => {
    if (!res.writableFinished) up.destroy();
  });
  req.pipe(up);
});

server.listen(Number(portArg), '127.0.0.1');
process.on('SIGTERM', () => {
  server.close(() => process.exit(0));
  server.closeAllConnections();
});
