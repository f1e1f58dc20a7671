import { createServer } from 'node:http';
import type { IncomingHttpHeaders, IncomingMessage, ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';

export interface RecordedRequest {
  method: string;
  url: string;
  headers: Record<string, string | string[] | undefined>;
}

export interface FaultServer {
  url: string;
  host: string;
  requests: Array<RecordedRequest>;
  stop(): Promise<void>;
}

export type FaultHandler = (req: IncomingMessage, res: ServerResponse) => void | Promise<void>;

/**
 * An in-process HTTP server on 127.0.0.1 for faults a real registry cannot produce (hangs,
 * truncated bodies, wrong digests, resets). Records every request before the handler runs;
 * a handler that throws or rejects answers 500 (or resets if headers were sent).
 * stop() destroys open sockets, so a handler that never answers cannot hang a test.
 */
export async function startFaultServer(handler: FaultHandler): Promise<FaultServer> {
  const requests: RecordedRequest[] = [];
  const sockets = new Set<Socket>();
  const server = createServer((req, res) => {
    requests.push({ method: req.method ?? '', url: req.url ?? '', headers: { ...(req.headers as IncomingHttpHeaders) } });
    const fail = (err: unknown): void => {
      if (!res.headersSent) {
        res.writeHead(500, { 'content-type': 'text/plain' });
        res.end(`fault-server handler failed: ${String(err)}`);
      } else {
        res.destroy();
      }
    };
    try {
      const r = handler(req, res);
      if (r instanceof Promise) r.catch(fail);
    } catch (err) {
      fail(err);
    }
  });
  server.on('connection', (s) => {
    sockets.add(s);
    s.once('close', () => sockets.delete(s));
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const { port } = server.address() as AddressInfo;
  let stopping: Promise<void> | undefined;
  return {
    url: `http://127.0.0.1:${port}`,
    host: `127.0.0.1:${port}`,
    requests,
    stop(): Promise<void> {
      stopping ??= new Promise<void>((resolve) => {
        server.close(() => resolve());
        for (const s of sockets) s.destroy();
      });
      return stopping;
    },
  };
}

/** Answers 200 `{}` (application/json) to everything and records it. */
export async function startRecordingServer(): Promise<FaultServer> {
  return startFaultServer((req, res) => {
    req.resume();
    req.once('end', () => {
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': '2' });
      res.end('{}');
    });
  });
}
