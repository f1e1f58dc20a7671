import { createHash } from 'node:crypto';
import type { Digest } from '../../src/oci/digest.js';

// Digests computed by the tests themselves, with node:crypto directly: the expected side of an
// assertion must not come from the code under test (src/oci/digest.ts).

/** The sha256 of `bytes` in hex (a string is hashed as UTF-8). */
export function sha256Hex(bytes: Uint8Array | string): string {
  return createHash('sha256').update(bytes).digest('hex');
}

/** The OCI digest `sha256:<hex>` of `bytes`. */
export function sha256(bytes: Uint8Array | string): Digest {
  return `sha256:${sha256Hex(bytes)}`;
}

/** The OCI digest `sha512:<hex>` of `bytes`. */
export function sha512(bytes: Uint8Array | string): Digest {
  return `sha512:${createHash('sha512').update(bytes).digest('hex')}`;
}
