import { createHmac, timingSafeEqual } from 'node:crypto';

/**
 * A value stored in Redis with its MAC: HMAC-SHA256 under `cache.shared.peer.token` over a domain
 * tag, the full key it is stored at and its JSON text. Anyone who can write to Redis but lacks
 * the token can neither forge a record nor move a genuine one to another key.
 */
export interface Sealed {
  /** The value's JSON text, exactly as MACed. */
  readonly body: string;
  /** HMAC-SHA256, hex. */
  readonly mac: string;
}

/** Keeps these MACs apart from any other use of the token (the peer leases sign `key + address`). */
const DOMAIN = 'sigil shared record v1';

function mac(token: string, key: string, body: string): Buffer {
  return createHmac('sha256', token).update(`${DOMAIN}\0${key}\0${body}`).digest();
}

/** `value` sealed for storing at `key`. */
export function seal(token: string, key: string, value: unknown): Sealed {
  const body = JSON.stringify(value);
  return { body, mac: mac(token, key, body).toString('hex') };
}

/**
 * The value of a record read from `key`, when it is a Sealed whose MAC checks for that very key;
 * else undefined (not sealed, sealed for another key or with another token, altered).
 */
export function unseal(token: string, key: string, record: unknown): unknown {
  if (typeof record !== 'object' || record === null) return undefined;
  const { body, mac: given } = record as Partial<Sealed>;
  if (typeof body !== 'string' || typeof given !== 'string' || !/^[0-9a-f]{64}$/.test(given)) return undefined;
  if (!timingSafeEqual(Buffer.from(given, 'hex'), mac(token, key, body))) return undefined;
  try {
    return JSON.parse(body) as unknown;
  } catch {
    return undefined;
  }
}
