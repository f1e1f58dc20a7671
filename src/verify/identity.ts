/**
 * Keyless identity: who a Fulcio (or private CA) certificate names, and
 * whether a keyless authority accepts it. sigstore-js matches the SAN as an
 * unanchored RegExp, so matching is done here, on the extracted values, and a
 * match must span the whole value.
 */
import { ASN1Obj, type X509Certificate } from '@sigstore/core';
import type { Authority } from '../config/types.js';
import { IDENTITY_MAX_CHARS, IDENTITY_MAX_SANS } from './limits.js';

/** Fulcio's OIDC issuer extensions: v1 holds raw bytes, v2 a DER UTF8String. */
const OID_ISSUER_V1 = '1.3.6.1.4.1.57264.1.1';
const OID_ISSUER_V2 = '1.3.6.1.4.1.57264.1.8';
/** Fulcio's otherName SAN for identities that are neither e-mail nor URI (e.g. a username). */
const OID_OTHERNAME_USERNAME = '1.3.6.1.4.1.57264.1.7';
/** GeneralName CHOICE tags (RFC 5280 §4.2.1.6). */
const GN_OTHER_NAME = 0;
const GN_RFC822 = 1;
const GN_DNS = 2;
const GN_URI = 6;
const UTF8_STRING = 12;

export interface CertificateIdentity {
  /** SAN values in certificate order: e-mail addresses, URIs, Fulcio usernames, DNS names. */
  readonly sans: readonly string[];
  /** The OIDC issuer (v2 extension, else v1); empty when the certificate has none (private PKI). */
  readonly issuer: string;
}

function otherName(gn: ASN1Obj): string | undefined {
  // OtherName ::= SEQUENCE { type-id OID, value [0] EXPLICIT ANY }
  const [oid, wrapped] = gn.subs;
  if (oid === undefined || wrapped === undefined || oid.toOID() !== OID_OTHERNAME_USERNAME) return undefined;
  const inner = wrapped.subs[0];
  return inner?.tag.number === UTF8_STRING ? inner.value.toString('utf8') : undefined;
}

/** The SAN values and the OIDC issuer of a certificate. */
export function certificateIdentity(cert: X509Certificate): CertificateIdentity {
  const sans: string[] = [];
  // extnValue is an OCTET STRING wrapping GeneralNames ::= SEQUENCE OF GeneralName
  for (const gn of cert.extSubjectAltName?.valueObj.subs[0]?.subs ?? []) {
    if (!gn.tag.isContextSpecific()) continue;
    switch (gn.tag.number) {
      case GN_RFC822:
      case GN_URI:
      case GN_DNS:
        sans.push(gn.value.toString('utf8'));
        break;
      case GN_OTHER_NAME: {
        const name = otherName(gn);
        if (name !== undefined) sans.push(name);
        break;
      }
      default:
        break;
    }
  }
  let issuer = '';
  const v2 = cert.extension(OID_ISSUER_V2);
  if (v2 !== undefined) {
    const obj = ASN1Obj.parseBuffer(Buffer.from(v2.value));
    if (obj.tag.number === UTF8_STRING) issuer = obj.value.toString('utf8');
  } else {
    issuer = cert.extension(OID_ISSUER_V1)?.value.toString('utf8') ?? '';
  }
  return { sans, issuer };
}

/**
 * Whether `re` matches all of `value`. The config compiles anchored RegExps;
 * requiring the match to span the value keeps that true even for a pattern
 * that was not anchored (`repo.*` must not accept `repo-evil.example`).
 */
export function matchesWhole(re: RegExp, value: string): boolean {
  const r = re.global || re.sticky ? new RegExp(re.source, re.flags.replace(/[gy]/g, '')) : re;
  const m = r.exec(value);
  return m !== null && m.index === 0 && m[0].length === value.length;
}

export type IdentityMatch =
  | { readonly ok: true; readonly subject: string; readonly issuer: string }
  | { readonly ok: false; readonly reason: string };

/** Checks a certificate identity against a keyless authority (issuer first, then any SAN). */
export function matchIdentity(authority: Extract<Authority, { kind: 'keyless' }>, id: CertificateIdentity): IdentityMatch {
  // Bounded before any pattern runs: the RegExp's time grows with the value's length (IDENTITY_MAX_CHARS).
  if (id.sans.length > IDENTITY_MAX_SANS) return { ok: false, reason: `certificate has ${id.sans.length} subject alternative names, more than IDENTITY_MAX_SANS (${IDENTITY_MAX_SANS})` };
  const long = [id.issuer, ...id.sans].find((v) => v.length > IDENTITY_MAX_CHARS);
  if (long !== undefined) {
    const what = long === id.issuer ? 'issuer' : 'subject alternative name';
    return { ok: false, reason: `certificate ${what} of ${long.length} characters exceeds IDENTITY_MAX_CHARS (${IDENTITY_MAX_CHARS})` };
  }
  if (!matchesWhole(authority.issuer, id.issuer)) {
    const shown = id.issuer === '' ? 'is absent (no Fulcio issuer extension)' : JSON.stringify(id.issuer);
    return { ok: false, reason: `certificate issuer ${shown} does not match ${authority.issuer.source}` };
  }
  const subject = id.sans.find((san) => matchesWhole(authority.subject, san));
  if (subject === undefined) {
    const shown = id.sans.length === 0 ? 'none (no subject alternative name)' : id.sans.map((s) => JSON.stringify(s)).join(', ');
    return { ok: false, reason: `certificate subject ${shown} does not match ${authority.subject.source}` };
  }
  return { ok: true, subject, issuer: id.issuer };
}
