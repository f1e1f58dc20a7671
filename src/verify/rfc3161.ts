/**
 * RFC 3161 timestamps: a timestamp authority's signed time over a signature's bytes, from a
 * bundle's `timestampVerificationData` or cosign's legacy `dev.sigstore.cosign/rfc3161timestamp`
 * annotation. `tsaTime` checks one against the trusted roots' timestamp authorities, each check
 * with its own reason, before @sigstore/verify's Verifier checks it again (and stays the gate: its
 * failures only say "timestamp could not be verified"). It also asks what sigstore-js does not
 * and Go's verifiers (cosign) do: the authority's certificate has the critical timeStamping EKU.
 */
import { createPublicKey } from 'node:crypto';
import { RFC3161Timestamp, type X509Certificate } from '@sigstore/core';
import type { TrustMaterial } from '@sigstore/verify';
import { parseJson } from '../oci/json.js';

export const RFC3161_TIMESTAMP_ANNOTATION = 'dev.sigstore.cosign/rfc3161timestamp';
/** RFC 3161 2.3: the TSA's certificate has exactly this EKU, critical. */
const EKU_OID = '2.5.29.37';
const TIME_STAMPING_OID = '1.3.6.1.5.5.7.3.8';
const BASE64 = /^[A-Za-z0-9+/]+={0,2}$/;

type TimestampAuthority = TrustMaterial['timestampAuthorities'][number];

/** Reads the fields every check needs, so that a malformed token fails here with its reason. */
function parsed(ts: RFC3161Timestamp): RFC3161Timestamp {
  try {
    void [ts.signingTime.toISOString(), ts.signerSerialNumber, ts.signerIssuer];
  } catch (e) {
    throw new Error(`the RFC 3161 timestamp does not parse: ${(e as Error).message}`);
  }
  return ts;
}

/**
 * cosign's annotation: `{"SignedRFC3161Timestamp": "<base64 DER TimeStampResp>"}` (Go's JSON of
 * its bundle.RFC3161Timestamp), a timestamp over the raw (base64-decoded) signature bytes.
 */
export function parseTimestampAnnotation(text: string): RFC3161Timestamp {
  const doc = parseJson(text, RFC3161_TIMESTAMP_ANNOTATION);
  const b64 = doc !== null && typeof doc === 'object' && !Array.isArray(doc) ? (doc as Record<string, unknown>).SignedRFC3161Timestamp : undefined;
  if (typeof b64 !== 'string' || !BASE64.test(b64)) throw new Error('no base64 SignedRFC3161Timestamp in it');
  try {
    return parsed(RFC3161Timestamp.parse(Buffer.from(b64, 'base64')));
  } catch (e) {
    throw new Error((e as Error).message.startsWith('the RFC 3161') ? (e as Error).message : `the RFC 3161 timestamp does not parse: ${(e as Error).message}`);
  }
}

function hasTimeStampingEku(cert: X509Certificate): boolean {
  try {
    const eku = cert.extension(EKU_OID);
    if (eku === undefined || !eku.critical) return false;
    // extnValue: an OCTET STRING holding SEQUENCE OF KeyPurposeId.
    const purposes = (eku.valueObj.subs[0]?.subs ?? []).map((s) => s.toOID());
    return purposes.length === 1 && purposes[0] === TIME_STAMPING_OID;
  } catch {
    return false;
  }
}

/** sigstore-js's end of time (the largest Date) stands for a window with no end. */
const END_OF_TIME_MS = 8.64e15;
const iso = (d: Date): string => (d.getTime() >= END_OF_TIME_MS ? 'no end' : d.toISOString());

/** The authorities whose certificate signed the token (by serial and issuer, as RFC 5652 names a signer). */
function signersOf(ts: RFC3161Timestamp, authorities: readonly TimestampAuthority[]): TimestampAuthority[] {
  return authorities.filter((a) => a.certChain.length > 0 && a.certChain[0].serialNumber.equals(ts.signerSerialNumber) && a.certChain[0].issuer.equals(ts.signerIssuer));
}

/**
 * The time a timestamp vouches for, once it is shown to be a token of a timestamp authority of
 * the trusted roots, within that authority's validity there, over exactly `signature`; throws an
 * Error naming the check that failed.
 */
export function tsaTime(token: RFC3161Timestamp, signature: Buffer, authorities: readonly TimestampAuthority[]): Date {
  if (authorities.length === 0) throw new Error('an RFC 3161 timestamp, but no trusted root lists a timestamp authority');
  const ts = parsed(token);
  const time = ts.signingTime;
  const signers = signersOf(ts, authorities);
  if (signers.length === 0) {
    throw new Error(`the RFC 3161 timestamp is signed by a timestamp authority no trusted root lists (certificate serial ${ts.signerSerialNumber.toString('hex')})`);
  }
  const reasons: string[] = [];
  for (const authority of signers) {
    const [leaf] = authority.certChain;
    if (!hasTimeStampingEku(leaf)) {
      reasons.push("its timestamp authority's certificate lacks the critical timeStamping extended key usage (RFC 3161 2.3)");
    } else if (time < authority.validFor.start || time > authority.validFor.end) {
      reasons.push(`its time ${time.toISOString()} is outside the validity of its timestamp authority in the trusted roots (${iso(authority.validFor.start)} to ${iso(authority.validFor.end)})`);
    } else if (!authority.certChain.every((c) => c.validForDate(time))) {
      reasons.push(`its timestamp authority's certificate chain is not valid at its time ${time.toISOString()}`);
    } else {
      try {
        ts.verify(signature, createPublicKey({ key: leaf.publicKey, format: 'der', type: 'spki' }));
        return time;
      } catch (e) {
        const message = (e as Error).message;
        reasons.push(/message imprint/.test(message) ? "it is not over this signature's bytes" : `it does not verify: ${message}`);
      }
    }
  }
  throw new Error(`the RFC 3161 timestamp does not count: ${[...new Set(reasons)].join('; ')}`);
}
