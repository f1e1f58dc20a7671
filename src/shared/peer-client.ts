import type { Readable } from 'node:stream';
import { rootCertificates } from 'node:tls';
import { Agent, request } from 'undici';
import type { Digest } from '../oci/digest.js';
import { USER_AGENT } from '../upstream/limits.js';
import type { PeerAddress } from './peer-auth.js';
import { OFFSET_HEADER, objectUrl, rangeFrom } from './peer-protocol.js';

/** Replicas share a network: one that does not take a connection within this is treated as gone (the upstream is asked). */
export const PEER_CONNECT_TIMEOUT_MS = 2_000;

/** A peer answers headers at once (from its store, or as soon as a follower of its write exists). */
export const PEER_ANSWER_TIMEOUT_MS = 5_000;

/**
 * A peer body that moves no byte this long is dead. Longer than the upstream client's body idle
 * timeout (upstream/limits.ts, 30 s): a holder whose own upstream stalls fails its write first,
 * and that failure is what the follower sees.
 */
export const PEER_BODY_IDLE_MS = 45_000;

/** An answer that is not an object is read this far to reuse its socket (the peer server's are empty), then cut. */
const DISCARD_MAX_BYTES = 64 * 1024;

/** Idle keep-alive sockets to a peer are reused this long (below the peer server's idle timeout). */
const PEER_KEEP_ALIVE_MS = 30_000;

export interface PeerTimeouts {
  readonly connectMs: number;
  readonly answerMs: number;
  readonly bodyIdleMs: number;
}

/** Why a peer gave no object: `absent` (404: not stored and not being written there), `busy` (503), `refused` (401), `unreachable`, `bad-answer`. */
export type PeerFailure = 'absent' | 'busy' | 'refused' | 'unreachable' | 'bad-answer';

export type PeerAnswer =
  | {
      readonly kind: 'ok';
      /** 200 from byte 0, 206 from `offset`. */
      readonly status: 200 | 206;
      readonly offset: number;
      /** The object's whole size when the peer has it complete; undefined while it is being written there. */
      readonly size: number | undefined;
      /** The bytes from `offset`; errors (never ends early) when the peer's stream fails. Unchecked: the caller's store writer hashes them. */
      readonly body: Readable;
    }
  | { readonly kind: 'failed'; readonly reason: PeerFailure; readonly detail: string };

/**
 * Reads store objects from other replicas (peer-protocol.ts) on one undici agent: TLS to the
 * system roots plus `cache.shared.peer.ca`, the peer token as a Bearer credential. It contacts
 * only a PeerAddress (one whose lease value's MAC checked: peer-auth.ts), so the token goes
 * nowhere else.
 */
export class PeerClient {
  readonly #token: string;
  readonly #agent: Agent;
  readonly #timeouts: PeerTimeouts;

  constructor(opts: { readonly token: string; readonly ca?: string | undefined; readonly timeouts?: Partial<PeerTimeouts> | undefined }) {
    this.#token = opts.token;
    this.#timeouts = { connectMs: PEER_CONNECT_TIMEOUT_MS, answerMs: PEER_ANSWER_TIMEOUT_MS, bodyIdleMs: PEER_BODY_IDLE_MS, ...opts.timeouts };
    this.#agent = new Agent({
      connect: { timeout: this.#timeouts.connectMs, ...(opts.ca !== undefined ? { ca: [...rootCertificates, opts.ca] } : {}) },
      headersTimeout: this.#timeouts.answerMs,
      bodyTimeout: this.#timeouts.bodyIdleMs,
      keepAliveTimeout: PEER_KEEP_ALIVE_MS,
      allowH2: false,
    });
  }

  /** The object `digest` at the peer `address`, from byte `offset`. */
  async open(address: PeerAddress, digest: Digest, offset = 0, signal?: AbortSignal): Promise<PeerAnswer> {
    const range = rangeFrom(offset);
    let res;
    try {
      res = await request(objectUrl(address, digest), {
        method: 'GET',
        headers: { 'user-agent': USER_AGENT, authorization: `Bearer ${this.#token}`, ...(range !== undefined ? { range } : {}) },
        dispatcher: this.#agent,
        ...(signal !== undefined ? { signal } : {}),
      });
    } catch (err) {
      return failed('unreachable', `${address}: ${(err as Error).message}`);
    }
    const { statusCode: status, headers, body } = res;
    const fail = (reason: PeerFailure, detail: string): PeerAnswer => {
      body.dump({ limit: DISCARD_MAX_BYTES }).catch(() => {}); // an error answer is empty: the socket is reused
      return failed(reason, `${address}: ${detail}`);
    };
    if (status === 404) return fail('absent', 'not stored and not being written there');
    if (status === 503) return fail('busy', 'serving as many peer streams as it takes');
    if (status === 401) return fail('refused', 'refused the peer token');
    if (status !== 200 && status !== 206) return fail('bad-answer', `answered ${status}`);
    const at = header(headers, OFFSET_HEADER);
    if (at !== String(offset) || (status === 200) !== (offset === 0)) return fail('bad-answer', `answered ${status} from byte ${at ?? '?'} to a read from byte ${offset}`);
    const length = header(headers, 'content-length');
    const size = length !== undefined && /^\d{1,15}$/.test(length) ? offset + Number(length) : undefined;
    return { kind: 'ok', status, offset, size, body };
  }

  close(): Promise<void> {
    return this.#agent.destroy(); // streams still open are cut (their readers see an error)
  }
}

function failed(reason: PeerFailure, detail: string): PeerAnswer {
  return { kind: 'failed', reason, detail };
}

function header(headers: Record<string, string | string[] | undefined>, name: string): string | undefined {
  const v = headers[name];
  return Array.isArray(v) ? v[0] : v;
}
