import { createHash, randomBytes, sign } from 'node:crypto';
import type { KeyObject } from 'node:crypto';

// A minimal DER encoder and X.509 v3 certificate builder for tests. node:crypto parses
// certificates (X509Certificate) but cannot create them; this writes exactly the DER that
// RFC 5280 asks for, so node/OpenSSL and sigstore-js parse it and re-encode it byte for byte
// (the SCT check in sigstore-js re-encodes the TBS after removing the SCT extension).

// --- DER primitives (X.690) ---------------------------------------------------------------

const TAG = Object.freeze({
  BOOLEAN: 0x01,
  INTEGER: 0x02,
  BIT_STRING: 0x03,
  OCTET_STRING: 0x04,
  NULL: 0x05,
  OID: 0x06,
  UTF8_STRING: 0x0c,
  PRINTABLE_STRING: 0x13,
  IA5_STRING: 0x16,
  UTC_TIME: 0x17,
  GENERALIZED_TIME: 0x18,
  SEQUENCE: 0x30,
  SET: 0x31,
});
const SHORT_LENGTH_MAX = 0x7f; // X.690 8.1.3.4: short form up to 127
const UTC_TIME_FIRST_YEAR = 1950; // RFC 5280 4.1.2.5: UTCTime for 1950..2049,
const UTC_TIME_LAST_YEAR = 2049; // GeneralizedTime otherwise

function encodeLength(n: number): Buffer {
  if (n <= SHORT_LENGTH_MAX) return Buffer.from([n]);
  const bytes: number[] = [];
  for (let v = n; v > 0; v = Math.floor(v / 256)) bytes.unshift(v & 0xff);
  return Buffer.from([0x80 | bytes.length, ...bytes]);
}

/** One DER TLV: a tag byte, a minimal length, the content. */
export function tlv(tag: number, content: Uint8Array): Buffer {
  return Buffer.concat([Buffer.from([tag]), encodeLength(content.length), content]);
}

function encodeOid(dotted: string): Buffer {
  const arcs = dotted.split('.').map((a) => BigInt(a));
  if (arcs.length < 2) throw new Error(`bad OID ${dotted}`);
  const out: number[] = [];
  const base128 = (v: bigint): void => {
    const chunk: number[] = [Number(v & 0x7fn)];
    for (let r = v >> 7n; r > 0n; r >>= 7n) chunk.unshift(Number(r & 0x7fn) | 0x80);
    out.push(...chunk);
  };
  base128(arcs[0] * 40n + arcs[1]);
  for (const a of arcs.slice(2)) base128(a);
  return Buffer.from(out);
}

function encodeUnsignedInteger(value: bigint | number | Uint8Array): Buffer {
  let bytes: Buffer;
  if (typeof value === 'bigint' || typeof value === 'number') {
    let v = BigInt(value);
    if (v < 0n) throw new Error('negative INTEGERs are not needed here');
    const arr: number[] = [];
    do {
      arr.unshift(Number(v & 0xffn));
      v >>= 8n;
    } while (v > 0n);
    bytes = Buffer.from(arr);
  } else {
    bytes = Buffer.from(value);
    let i = 0;
    while (i < bytes.length - 1 && bytes[i] === 0) i++;
    bytes = bytes.subarray(i);
  }
  // X.690 8.3.2: two's complement, so a set high bit needs a leading zero octet.
  return bytes[0] & 0x80 ? Buffer.concat([Buffer.from([0]), bytes]) : bytes;
}

function twoDigits(n: number): string {
  return String(n).padStart(2, '0');
}

function encodeTime(d: Date): Buffer {
  const y = d.getUTCFullYear();
  const rest = `${twoDigits(d.getUTCMonth() + 1)}${twoDigits(d.getUTCDate())}${twoDigits(d.getUTCHours())}${twoDigits(d.getUTCMinutes())}${twoDigits(d.getUTCSeconds())}Z`;
  if (y >= UTC_TIME_FIRST_YEAR && y <= UTC_TIME_LAST_YEAR) return tlv(TAG.UTC_TIME, Buffer.from(`${twoDigits(y % 100)}${rest}`, 'ascii'));
  return tlv(TAG.GENERALIZED_TIME, Buffer.from(`${String(y).padStart(4, '0')}${rest}`, 'ascii'));
}

/** DER builders, each returning one complete TLV. */
export const der = Object.freeze({
  seq: (...items: Uint8Array[]): Buffer => tlv(TAG.SEQUENCE, Buffer.concat(items)),
  set: (...items: Uint8Array[]): Buffer => tlv(TAG.SET, Buffer.concat(items)),
  int: (v: bigint | number | Uint8Array): Buffer => tlv(TAG.INTEGER, encodeUnsignedInteger(v)),
  bool: (b: boolean): Buffer => tlv(TAG.BOOLEAN, Buffer.from([b ? 0xff : 0x00])),
  null: (): Buffer => tlv(TAG.NULL, Buffer.alloc(0)),
  oid: (dotted: string): Buffer => tlv(TAG.OID, encodeOid(dotted)),
  octets: (b: Uint8Array): Buffer => tlv(TAG.OCTET_STRING, b),
  bits: (b: Uint8Array, unusedBits = 0): Buffer => tlv(TAG.BIT_STRING, Buffer.concat([Buffer.from([unusedBits]), b])),
  utf8: (s: string): Buffer => tlv(TAG.UTF8_STRING, Buffer.from(s, 'utf8')),
  printable: (s: string): Buffer => tlv(TAG.PRINTABLE_STRING, Buffer.from(s, 'ascii')),
  ia5: (s: string): Buffer => tlv(TAG.IA5_STRING, Buffer.from(s, 'ascii')),
  time: encodeTime,
  /** [n] EXPLICIT: constructed context-specific tag around one complete TLV. */
  explicit: (n: number, inner: Uint8Array): Buffer => tlv(0xa0 | n, inner),
  /** [n] IMPLICIT on a primitive type: context-specific tag around the raw content. */
  implicit: (n: number, content: Uint8Array): Buffer => tlv(0x80 | n, content),
});

// --- X.509 ---------------------------------------------------------------------------------

export const OID = Object.freeze({
  COMMON_NAME: '2.5.4.3',
  ORGANIZATION: '2.5.4.10',
  SUBJECT_KEY_ID: '2.5.29.14',
  KEY_USAGE: '2.5.29.15',
  SUBJECT_ALT_NAME: '2.5.29.17',
  BASIC_CONSTRAINTS: '2.5.29.19',
  AUTHORITY_KEY_ID: '2.5.29.35',
  EXT_KEY_USAGE: '2.5.29.37',
  CODE_SIGNING: '1.3.6.1.5.5.7.3.3',
  TIME_STAMPING: '1.3.6.1.5.5.7.3.8',
  FULCIO_ISSUER_V1: '1.3.6.1.4.1.57264.1.1', // raw bytes of the issuer URL
  FULCIO_ISSUER_V2: '1.3.6.1.4.1.57264.1.8', // DER UTF8String of the issuer URL
  CT_PRECERT_SCTS: '1.3.6.1.4.1.11129.2.4.2', // RFC 6962 3.3
  ECDSA_SHA256: '1.2.840.10045.4.3.2',
  ECDSA_SHA384: '1.2.840.10045.4.3.3',
  RSA_SHA256: '1.2.840.113549.1.1.11',
  ED25519: '1.3.101.112',
});

export interface Extension {
  oid: string;
  critical?: boolean;
  /** extnValue's content (the bytes inside the OCTET STRING). */
  value: Buffer;
}

export function extension(e: Extension): Buffer {
  return der.seq(der.oid(e.oid), ...(e.critical ? [der.bool(true)] : []), der.octets(e.value));
}

/** An X.501 Name: one RDN per attribute, PrintableString when the value allows it. */
export function name(attrs: { organization?: string; commonName?: string }): Buffer {
  const rdn = (oid: string, v: string): Buffer =>
    der.set(der.seq(der.oid(oid), /^[A-Za-z0-9 '()+,\-./:=?]*$/.test(v) ? der.printable(v) : der.utf8(v)));
  const rdns: Buffer[] = [];
  if (attrs.organization !== undefined) rdns.push(rdn(OID.ORGANIZATION, attrs.organization));
  if (attrs.commonName !== undefined) rdns.push(rdn(OID.COMMON_NAME, attrs.commonName));
  return der.seq(...rdns);
}

export const ext = Object.freeze({
  basicConstraints: (ca: boolean, pathLen?: number): Extension => ({
    oid: OID.BASIC_CONSTRAINTS,
    critical: true,
    value: ca ? der.seq(der.bool(true), ...(pathLen === undefined ? [] : [der.int(pathLen)])) : der.seq(),
  }),
  /** keyUsage for a leaf (digitalSignature) or a CA (keyCertSign + cRLSign). RFC 5280 4.2.1.3. */
  keyUsage: (kind: 'leaf' | 'ca'): Extension => ({
    oid: OID.KEY_USAGE,
    critical: true,
    value: kind === 'leaf' ? der.bits(Buffer.from([0x80]), 7) : der.bits(Buffer.from([0x06]), 1),
  }),
  extKeyUsageCodeSigning: (): Extension => ({ oid: OID.EXT_KEY_USAGE, value: der.seq(der.oid(OID.CODE_SIGNING)) }),
  /** RFC 3161 2.3: a TSA's certificate has exactly this EKU, and it is critical. */
  extKeyUsageTimeStamping: (): Extension => ({ oid: OID.EXT_KEY_USAGE, critical: true, value: der.seq(der.oid(OID.TIME_STAMPING)) }),
  subjectKeyId: (keyId: Buffer): Extension => ({ oid: OID.SUBJECT_KEY_ID, value: der.octets(keyId) }),
  authorityKeyId: (keyId: Buffer): Extension => ({ oid: OID.AUTHORITY_KEY_ID, value: der.seq(der.implicit(0, keyId)) }),
  /** SAN with one rfc822Name ([1]) or URI ([6]); critical because Fulcio leaves have an empty subject. */
  subjectAltName: (san: { email: string } | { uri: string }): Extension => ({
    oid: OID.SUBJECT_ALT_NAME,
    critical: true,
    value: der.seq('email' in san ? der.implicit(1, Buffer.from(san.email, 'ascii')) : der.implicit(6, Buffer.from(san.uri, 'ascii'))),
  }),
  fulcioIssuerV1: (issuer: string): Extension => ({ oid: OID.FULCIO_ISSUER_V1, value: Buffer.from(issuer, 'utf8') }),
  fulcioIssuerV2: (issuer: string): Extension => ({ oid: OID.FULCIO_ISSUER_V2, value: der.utf8(issuer) }),
  /** RFC 6962 3.3: extnValue = OCTET STRING holding the TLS-encoded SignedCertificateTimestampList. */
  sctList: (tlsList: Buffer): Extension => ({ oid: OID.CT_PRECERT_SCTS, value: der.octets(tlsList) }),
});

/** The key identifier Fulcio and most CAs use: SHA-1 of the SPKI (RFC 5280 4.2.1.2 method 1 is close enough). */
export function keyIdentifier(spkiDer: Buffer): Buffer {
  return createHash('sha1').update(spkiDer).digest();
}

export function spkiOf(key: KeyObject): Buffer {
  return key.export({ type: 'spki', format: 'der' });
}

interface SigAlg {
  algId: Buffer;
  hash: string | null;
}
function signatureAlgorithm(key: KeyObject): SigAlg {
  switch (key.asymmetricKeyType) {
    case 'ec': {
      const curve = key.asymmetricKeyDetails?.namedCurve;
      if (curve === 'prime256v1') return { algId: der.seq(der.oid(OID.ECDSA_SHA256)), hash: 'sha256' };
      if (curve === 'secp384r1') return { algId: der.seq(der.oid(OID.ECDSA_SHA384)), hash: 'sha384' };
      throw new Error(`unsupported issuer curve ${String(curve)}`);
    }
    case 'rsa':
      return { algId: der.seq(der.oid(OID.RSA_SHA256), der.null()), hash: 'sha256' };
    case 'ed25519':
      return { algId: der.seq(der.oid(OID.ED25519)), hash: null };
    default:
      throw new Error(`unsupported issuer key type ${String(key.asymmetricKeyType)}`);
  }
}

export interface CertificateFields {
  serial: Buffer;
  issuer: Buffer; // DER Name
  subject: Buffer; // DER Name
  notBefore: Date;
  notAfter: Date;
  spki: Buffer; // DER SubjectPublicKeyInfo
  extensions: Extension[];
}

/** The DER TBSCertificate (RFC 5280 4.1) for fields signed by issuerKey's algorithm. */
export function tbsCertificate(f: CertificateFields, issuerKey: KeyObject): Buffer {
  const { algId } = signatureAlgorithm(issuerKey);
  return der.seq(
    der.explicit(0, der.int(2)), // v3
    der.int(f.serial),
    algId,
    f.issuer,
    der.seq(der.time(f.notBefore), der.time(f.notAfter)),
    f.subject,
    f.spki,
    ...(f.extensions.length > 0 ? [der.explicit(3, der.seq(...f.extensions.map(extension)))] : []),
  );
}

/** Signs a DER TBSCertificate into a complete DER Certificate. */
export function signCertificate(tbs: Buffer, issuerKey: KeyObject): Buffer {
  const { algId, hash } = signatureAlgorithm(issuerKey);
  return der.seq(tbs, algId, der.bits(sign(hash, tbs, issuerKey)));
}

export function buildCertificate(f: CertificateFields, issuerKey: KeyObject): Buffer {
  return signCertificate(tbsCertificate(f, issuerKey), issuerKey);
}

const PEM_LINE = 64; // RFC 7468 2: lines of exactly 64 base64 characters
export function toPem(label: string, derBytes: Buffer): string {
  const b64 = derBytes.toString('base64');
  const lines: string[] = [];
  for (let i = 0; i < b64.length; i += PEM_LINE) lines.push(b64.slice(i, i + PEM_LINE));
  return `-----BEGIN ${label}-----\n${lines.join('\n')}\n-----END ${label}-----\n`;
}

export function certPem(derBytes: Buffer): string {
  return toPem('CERTIFICATE', derBytes);
}

const SERIAL_BYTES = 20; // RFC 5280 4.1.2.2: at most 20 octets
/** A positive random serial number. */
export function randomSerial(): Buffer {
  const s = randomBytes(SERIAL_BYTES);
  s[0] &= 0x7f;
  if (s[0] === 0) s[0] = 1;
  return s;
}
