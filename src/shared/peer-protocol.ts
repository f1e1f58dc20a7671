/**
 * The peer protocol between replicas (peer-server.ts answers it, peer-client.ts asks it): one
 * resource, a store object by digest, read with `GET` (or `HEAD`) and `Authorization: Bearer
 * <cache.shared.peer.token>`, from byte 0 or — `Range: bytes=N-`, to resume — from byte N.
 * A 200 or 206 names the byte its body starts at in OFFSET_HEADER (an object still being written
 * has no known end, so a 206 of one has no Content-Range), and the body's length in
 * Content-Length when the object is complete. Pure; no I/O.
 */
import { isDigest, type Digest } from '../oci/digest.js';

/** Objects by digest: `<address>/sigil-peer/v1/objects/<digest>`. */
export const OBJECTS_PATH = '/sigil-peer/v1/objects/';

/** The byte of the object a 200/206 body starts at (decimal). */
export const OFFSET_HEADER = 'sigil-peer-offset';

/** An offset past any object a store holds (and exactly representable): 2^53 - 1 is beyond reason. */
const OFFSET_RE = /^bytes=(\d{1,15})-$/;

/** The URL of an object at a peer's (verified, canonical) address. */
export function objectUrl(address: string, digest: Digest): URL {
  return new URL(`${OBJECTS_PATH}${digest}`, address);
}

/** The digest a request path names; undefined: not an object path, or not a valid digest. */
export function digestOfPath(path: string): Digest | undefined {
  if (!path.startsWith(OBJECTS_PATH)) return undefined;
  const d = path.slice(OBJECTS_PATH.length);
  return isDigest(d) ? d : undefined;
}

/** The Range header for reading from `offset` (none from 0). */
export function rangeFrom(offset: number): string | undefined {
  return offset > 0 ? `bytes=${offset}-` : undefined;
}

/**
 * The offset a request's Range asks for: 0 without one, N for `bytes=N-`; undefined for any
 * other form (closed or suffix ranges, lists): peers only resume.
 */
export function offsetOfRange(header: string | undefined): number | undefined {
  if (header === undefined) return 0;
  const m = OFFSET_RE.exec(header.trim());
  return m ? Number(m[1]) : undefined;
}
