import { createServer as createHttpServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo, Socket } from 'node:net';
import { Transform, type Readable, type TransformCallback } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { Logger } from 'pino';
import type { ListenAddress, ServerConfig, SharedPeerConfig } from '../config/types.js';
import { isSigilError } from '../errors.js';
import type { Digest } from '../oci/digest.js';
import type { ContentStore } from '../store/content-store.js';
import { sameSecret } from './peer-auth.js';
import { OBJECTS_PATH, OFFSET_HEADER, digestOfPath, offsetOfRange } from './peer-protocol.js';

/**
 * Peer streams served at once; past it a peer is answered 503 and fetches from the upstream as a
 * single process would. Each stream holds about a chunk of a follower or a store read plus socket
 * buffers (~1 MiB, store/limits.ts READ_CHUNK_BYTES): 64 bounds that to tens of MiB whatever the
 * number of replicas.
 */
export const MAX_PEER_STREAMS = 64;

/**
 * Connections the peer listener keeps open at once (with or without the token); past it a new one
 * is closed at once. Only replicas talk here, each on a few keep-alive sockets per stream it
 * follows (MAX_PEER_STREAMS): 256 leaves room for them, while a flood on the peer port (anyone who
 * reaches it, token or not) costs the process at most that many file descriptors, not all of them
 * (its store and upstream sockets need them). A replica refused meanwhile asks the upstream.
 */
export const MAX_PEER_CONNECTIONS = 256;

/**
 * A peer socket that moves no byte for this long is closed. Longer than the peer client's own
 * body idle timeout (peer-client.ts), so a follower learns of a stall from its own clock; short
 * enough that a dead peer's sockets do not pile up.
 */
export const PEER_SOCKET_IDLE_MS = 60_000;

/** A peer sends its request line and headers within this (they are a few hundred bytes). */
export const PEER_HEADERS_TIMEOUT_MS = 10_000;

/**
 * Requests without the token are logged at most once in this long, with how many were refused
 * since: whoever can reach the peer port must not be able to flood the log.
 */
export const PEER_REFUSAL_LOG_MS = 60_000;

export interface PeerServerOptions {
  readonly peer: Pick<SharedPeerConfig, 'listen' | 'advertise' | 'token'>;
  /** server.tls: the certificate the listener serves when the advertised address is https. */
  readonly tls?: ServerConfig['tls'] | undefined;
  readonly content: ContentStore;
  readonly logger: Logger;
  /** Overrides MAX_PEER_STREAMS. */
  readonly maxStreams?: number | undefined;
  /** Overrides MAX_PEER_CONNECTIONS. */
  readonly maxConnections?: number | undefined;
  /** The clock of PEER_REFUSAL_LOG_MS (tests); default performance.now. */
  readonly now?: (() => number) | undefined;
}

/** What answers one request for an object: its body from `offset`, and its size when complete. */
interface Found {
  readonly body: Readable;
  readonly size: number | undefined;
}

/**
 * The peer listener (cache.shared.peer.listen): serves this replica's store objects — committed,
 * or still being written (a follower of the write, which holds back the last bytes until the
 * digest checks: content-store.ts, follower.ts) — to other replicas presenting the peer token.
 * It never starts a write and never contacts anyone. Protocol: peer-protocol.ts.
 */
export class PeerServer {
  readonly #o: PeerServerOptions;
  readonly #server: Server;
  #streams = 0;
  #connections = 0;
  /** Requests refused without the token since the last line logged about them, and when that was. */
  #refused = 0;
  #refusalLoggedAt = -Infinity;

  constructor(opts: PeerServerOptions) {
    this.#o = opts;
    const https = new URL(opts.peer.advertise).protocol === 'https:';
    if (https && opts.tls === undefined) throw new Error('cache.shared.peer.advertise is https: the peer listener needs server.tls');
    const handler = (req: IncomingMessage, res: ServerResponse): void => {
      this.#handle(req, res).catch((err: unknown) => {
        this.#o.logger.error({ path: req.url, err: String(err) }, 'peer request failed');
        res.destroy();
      });
    };
    this.#server = https && opts.tls ? createHttpsServer({ cert: opts.tls.cert, key: opts.tls.key }, handler) : createHttpServer(handler);
    this.#server.headersTimeout = PEER_HEADERS_TIMEOUT_MS;
    this.#server.requestTimeout = PEER_HEADERS_TIMEOUT_MS; // a request has no body: its end is its headers
    this.#server.setTimeout(PEER_SOCKET_IDLE_MS); // no 'timeout' listener: the idle socket is destroyed
    this.#server.maxConnections = opts.maxConnections ?? MAX_PEER_CONNECTIONS;
    this.#server.on('connection', (socket: Socket) => {
      this.#connections++;
      socket.once('close', () => this.#connections--);
    });
  }

  /** Listens on `peer.listen` (port 0: any free port); resolves with the address bound. */
  listen(at: ListenAddress = this.#o.peer.listen): Promise<AddressInfo> {
    return new Promise((resolve, reject) => {
      this.#server.once('error', reject);
      this.#server.listen(at.port, at.host, () => {
        this.#server.off('error', reject);
        resolve(this.#server.address() as AddressInfo);
      });
    });
  }

  /** Peer streams being served now. */
  get streams(): number {
    return this.#streams;
  }

  /** Connections open now (authenticated or not). */
  get connections(): number {
    return this.#connections;
  }

  /** Stops listening and cuts the streams still being served (their peers see an aborted body). */
  close(): Promise<void> {
    return new Promise((resolve) => {
      this.#server.close(() => resolve());
      this.#server.closeAllConnections();
    });
  }

  /** One line per PEER_REFUSAL_LOG_MS at most, naming the latest request and how many were refused. */
  #logRefusal(log: Record<string, unknown>): void {
    this.#refused++;
    const now = (this.#o.now ?? (() => performance.now()))();
    if (now - this.#refusalLoggedAt < PEER_REFUSAL_LOG_MS) return;
    this.#o.logger.warn({ ...log, refused: this.#refused }, 'peer request without the peer token refused');
    this.#refusalLoggedAt = now;
    this.#refused = 0;
  }

  async #handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const log = { peer: req.socket.remoteAddress, method: req.method, path: req.url };
    // Before anything else, and the same answer whatever was asked: nothing is revealed without the token.
    const auth = req.headers.authorization ?? '';
    if (!auth.startsWith('Bearer ') || !sameSecret(auth.slice('Bearer '.length), this.#o.peer.token)) {
      this.#logRefusal(log);
      return end(res, 401, { 'www-authenticate': 'Bearer' });
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') return end(res, 405, { allow: 'GET, HEAD' });
    if (req.headers['transfer-encoding'] !== undefined || (req.headers['content-length'] ?? '0') !== '0') return end(res, 400, { connection: 'close' });
    const digest = digestOfPath(req.url ?? '');
    if (digest === undefined) return end(res, req.url?.startsWith(OBJECTS_PATH) ? 400 : 404);
    const offset = offsetOfRange(req.headers.range);
    if (offset === undefined) return end(res, 416);
    if (this.#streams >= (this.#o.maxStreams ?? MAX_PEER_STREAMS)) return end(res, 503, { 'retry-after': '1' });
    this.#streams++;
    res.once('close', () => this.#streams--);
    let found: Found | null | 'past-end';
    try {
      found = await this.#find(digest, offset);
    } catch (err) {
      this.#o.logger.warn({ ...log, err: String(err) }, 'peer read failed');
      return end(res, 500);
    }
    if (found === null) return end(res, 404);
    if (found === 'past-end') return end(res, 416);
    const { body, size } = found;
    const headers: Record<string, string> = { 'content-type': 'application/octet-stream', [OFFSET_HEADER]: String(offset) };
    if (size !== undefined) headers['content-length'] = String(size - offset);
    if (size !== undefined && offset > 0) headers['content-range'] = `bytes ${offset}-${size - 1}/${size}`;
    res.writeHead(offset > 0 ? 206 : 200, headers);
    res.flushHeaders(); // now: a follower's first bytes may be a while (the peer's headers timeout runs)
    if (req.method === 'HEAD') {
      body.destroy();
      res.end();
      return;
    }
    try {
      await pipeline(body, res);
      this.#o.logger.debug({ ...log, digest, offset, size }, 'peer stream served');
    } catch (err) {
      // the peer sees its body cut off (never a short one passed as complete); why is said here
      const code = isSigilError(err) ? err.code : undefined;
      this.#o.logger.warn({ ...log, digest, offset, code, err: String(err) }, 'peer stream failed');
    }
  }

  /** The object from `offset`: committed (a store read), else being written here (a follower), else null. */
  async #find(digest: Digest, offset: number): Promise<Found | null | 'past-end'> {
    const { content } = this.#o;
    const stat = await content.stat(digest);
    if (stat !== null) {
      if (offset > 0 && offset >= stat.size) return 'past-end';
      const body = await content.openRead(digest, offset > 0 ? { start: offset, end: stat.size - 1 } : undefined);
      if (body !== null) return { body, size: stat.size };
    }
    // Never beginWrite here: for a digest not in flight it would begin a write (a temp file, and a
    // write a local pull of it would follow until destroyed).
    const follower = content.followWrite(digest);
    if (follower === undefined) return null;
    return { body: offset > 0 ? skipping(follower, offset) : follower, size: undefined };
  }
}

/** `source` without its first `n` bytes; an error when it ends before them (a range past its end). */
function skipping(source: Readable, n: number): Readable {
  let left = n;
  const skip = new Transform({
    transform(chunk: Buffer, _enc, cb: TransformCallback) {
      if (left >= chunk.length) {
        left -= chunk.length;
        return cb();
      }
      const rest = left > 0 ? chunk.subarray(left) : chunk;
      left = 0;
      cb(null, rest);
    },
    flush(cb: TransformCallback) {
      cb(left > 0 ? new Error(`peer read: the object ends ${left} bytes before offset ${n}`) : null);
    },
  });
  source.on('error', (err) => skip.destroy(err));
  skip.on('close', () => source.destroy());
  return source.pipe(skip);
}

function end(res: ServerResponse, status: number, headers: Record<string, string> = {}): void {
  res.writeHead(status, { 'content-length': '0', ...headers });
  res.end();
}
