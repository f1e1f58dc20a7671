import { createPublicKey, type KeyObject } from 'node:crypto';
import type { SignedEntity } from '@sigstore/verify';

/**
 * The cheap check first: does the signature verify with the signer's own key? sigstore-js
 * checks timestamps, the certificate chain and the log entries before the signature, so a
 * forged signature next to a copied real certificate and log entry would otherwise cost a full
 * keyless verification (milliseconds of CPU each) before failing.
 */
export function requireSignatureBy(entity: SignedEntity, key: KeyObject | Buffer, whose: string): void {
  const k = Buffer.isBuffer(key) ? createPublicKey({ key, format: 'der', type: 'spki' }) : key;
  let ok: boolean;
  try {
    ok = entity.signature.verifySignature(k);
  } catch (e) {
    throw new Error(`signature does not verify with ${whose}: ${(e as Error).message}`);
  }
  if (!ok) throw new Error(`signature does not verify with ${whose}`);
}
