/**
 * What lets one replica trust another's address without trusting Redis: a lease's holder value is
 * the holder's advertised peer address with an HMAC-SHA256 over (lease key, address), keyed with
 * the shared peer token. Anyone who can write Redis but does not know the token cannot make a
 * replica contact (and present its token to) a host of their choosing, nor replay one lease's
 * value under another key. Pure; no I/O.
 */
import { createHash, createHmac, timingSafeEqual } from 'node:crypto';

/** Separates the address from its MAC in a lease value (never part of a canonical origin). */
const SEPARATOR = ' ';

/** Binds the MAC to its purpose and version: a MAC made for anything else never checks here. */
const MAC_CONTEXT = 'sigil-peer-holder/v1';

/** A MAC as written in a lease value: HMAC-SHA256, lower-case hex. */
const MAC_RE = /^[0-9a-f]{64}$/;

/**
 * The canonical form of a peer address — `http(s)://host:port` with nothing else (no path, query,
 * fragment or credentials) — or undefined when `text` is not one. Canonical: its URL's origin (a
 * default port left out, the host lower-case), so a signed address has exactly one spelling.
 */
export function peerOrigin(text: string): string | undefined {
  let u: URL;
  try {
    u = new URL(text);
  } catch {
    return undefined;
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') return undefined;
  if (u.username !== '' || u.password !== '' || u.search !== '' || u.hash !== '' || u.pathname !== '/') return undefined;
  return u.origin;
}

/**
 * A peer address that verifyHolder returned (or this replica's own, signed by itself): the only
 * kind peer-client.ts contacts, so that no address read from Redis reaches it unverified.
 */
export type PeerAddress = string & { readonly __verifiedPeerAddress: unique symbol };

function mac(token: string, key: string, address: string): Buffer {
  return createHmac('sha256', token).update(`${MAC_CONTEXT}\n${key}\n${address}`).digest();
}

/**
 * The lease value a holder stores under `key`: its address and the MAC. Throws on an address that
 * is not `http(s)://host:port` (the config's `cache.shared.peer.advertise` is checked at load).
 */
export function signHolder(token: string, key: string, address: string): string {
  const origin = peerOrigin(address);
  if (origin === undefined) throw new Error(`peer address ${JSON.stringify(address)} is not http(s)://host:port`);
  return `${origin}${SEPARATOR}${mac(token, key, origin).toString('hex')}`;
}

/**
 * The holder's address when `value` was signed with `token` for `key` (compared in constant time)
 * and names a well-formed `http(s)://host:port`; else undefined: contact nobody.
 */
export function verifyHolder(token: string, key: string, value: string): PeerAddress | undefined {
  const at = value.lastIndexOf(SEPARATOR);
  if (at <= 0) return undefined;
  const address = value.slice(0, at);
  const given = value.slice(at + SEPARATOR.length);
  if (!MAC_RE.test(given) || peerOrigin(address) !== address) return undefined;
  return timingSafeEqual(Buffer.from(given, 'hex'), mac(token, key, address)) ? (address as PeerAddress) : undefined;
}

/**
 * Whether a presented secret is the expected one, in time independent of where they differ (both
 * are hashed first, so their lengths are not compared either).
 */
export function sameSecret(presented: string, expected: string): boolean {
  const a = createHash('sha256').update(presented).digest();
  const b = createHash('sha256').update(expected).digest();
  return timingSafeEqual(a, b);
}
