import { execFileSync } from 'node:child_process';
import { createHash, generateKeyPairSync, randomBytes } from 'node:crypto';
import type { KeyObject } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { buildCertificate, certPem, der, ext, keyIdentifier, name, OID, randomSerial, spkiOf, type Extension } from './x509.js';

// A throwaway RFC 3161 timestamp authority for tests: a root CA and a TSA certificate (ECDSA
// P-256, critical EKU timeStamping as RFC 3161 2.3 asks) built here, and `openssl ts -reply`
// signing the tokens (node:crypto cannot write CMS). A token stamps the current time: to test a
// time outside a window, move the window (the certificate's, or the trusted root's validFor).
// Nothing here talks to the network.

const TRUST_START = new Date('2020-01-01T00:00:00.000Z');
const NOT_AFTER = new Date('2099-12-31T23:59:59.000Z');
const SHA256_OID = '2.16.840.1.101.3.4.2.1';
const NONCE_BYTES = 8;
const TSA_CONFIG = `[ tsa ]
default_tsa = tsa_config
[ tsa_config ]
serial = ./serial
crypto_device = builtin
signer_digest = sha256
default_policy = 1.3.6.1.4.1.57264.3.1
digests = sha256, sha384, sha512
accuracy = secs:1
ordering = no
tsa_name = no
ess_cert_id_chain = no
ess_cert_id_alg = sha256
`;

export interface TsaOptions {
  /** The TSA certificate's validity (default 2020 to 2099). */
  notBefore?: Date;
  notAfter?: Date;
}

/** What a trusted root lists of the TSA: its validity window there and, to list a look-alike, another EKU. */
export interface ListingOptions {
  validFor?: { start: Date; end?: Date };
  /**
   * List a certificate with the TSA's serial, names and key but another extended key usage
   * (openssl refuses to sign tokens with such a certificate itself): codeSigning instead of
   * timeStamping; timeStamping and codeSigning; timeStamping, not critical.
   */
  eku?: TsaEku;
}

/** The extended key usages a look-alike TSA certificate can carry instead of the critical timeStamping alone. */
export type TsaEku = 'codeSigning' | 'timeStampingAndCodeSigning' | 'timeStampingNotCritical';

const OTHER_EKUS: Readonly<Record<TsaEku, Extension>> = {
  codeSigning: ext.extKeyUsageCodeSigning(),
  timeStampingAndCodeSigning: { oid: OID.EXT_KEY_USAGE, critical: true, value: der.seq(der.oid(OID.TIME_STAMPING), der.oid(OID.CODE_SIGNING)) },
  timeStampingNotCritical: { ...ext.extKeyUsageTimeStamping(), critical: false },
};

export class TestTsa {
  readonly commonName: string;
  /** The TSA certificate (DER) and its issuing root (DER). */
  readonly leafDer: Buffer;
  readonly rootDer: Buffer;
  readonly #dir: string;
  readonly #reissue: (eku: TsaEku) => Buffer;
  #queries = 0;

  constructor(dir: string, commonName = 'sigil-test-tsa', opts: TsaOptions = {}) {
    this.commonName = commonName;
    this.#dir = dir;
    const root = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
    const leaf = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
    const rootName = name({ organization: 'sigil-test', commonName: `${commonName}-root` });
    const rootKeyId = keyIdentifier(spkiOf(root.publicKey));
    this.rootDer = buildCertificate(
      {
        serial: randomSerial(), issuer: rootName, subject: rootName, notBefore: TRUST_START, notAfter: NOT_AFTER, spki: spkiOf(root.publicKey),
        extensions: [ext.keyUsage('ca'), ext.basicConstraints(true, 0), ext.subjectKeyId(rootKeyId), ext.authorityKeyId(rootKeyId)],
      },
      root.privateKey,
    );
    const fields = {
      serial: randomSerial(), issuer: rootName, subject: name({ organization: 'sigil-test', commonName }),
      notBefore: opts.notBefore ?? TRUST_START, notAfter: opts.notAfter ?? NOT_AFTER, spki: spkiOf(leaf.publicKey),
    };
    const issue = (eku: Extension): Buffer =>
      buildCertificate({ ...fields, extensions: [ext.keyUsage('leaf'), eku, ext.subjectKeyId(keyIdentifier(fields.spki)), ext.authorityKeyId(rootKeyId)] }, root.privateKey);
    this.leafDer = issue(ext.extKeyUsageTimeStamping());
    this.#reissue = (eku) => issue(OTHER_EKUS[eku]);
    this.#writeFiles(leaf.privateKey);
  }

  #writeFiles(key: KeyObject): void {
    mkdirSync(this.#dir, { recursive: true });
    writeFileSync(join(this.#dir, 'key.pem'), key.export({ type: 'pkcs8', format: 'pem' }));
    writeFileSync(join(this.#dir, 'cert.pem'), certPem(this.leafDer));
    writeFileSync(join(this.#dir, 'chain.pem'), certPem(this.rootDer));
    writeFileSync(join(this.#dir, 'serial'), '01\n');
    writeFileSync(join(this.#dir, 'tsa.cnf'), TSA_CONFIG);
  }

  /** A TimeStampResp (DER) granting a token over SHA-256(`data`) at the current time, as a TSA answers. */
  timestamp(data: Uint8Array): Buffer {
    // RFC 3161 2.4.1 TimeStampReq: v1, messageImprint, nonce, certReq (as cosign asks).
    const query = der.seq(
      der.int(1),
      der.seq(der.seq(der.oid(SHA256_OID), der.null()), der.octets(createHash('sha256').update(data).digest())),
      der.int(randomBytes(NONCE_BYTES)),
      der.bool(true),
    );
    const n = ++this.#queries;
    const [queryFile, replyFile] = [join(this.#dir, `q${n}.tsq`), join(this.#dir, `r${n}.tsr`)];
    writeFileSync(queryFile, query);
    execFileSync('openssl', ['ts', '-reply', '-config', 'tsa.cnf', '-queryfile', queryFile, '-inkey', 'key.pem', '-signer', 'cert.pem', '-chain', 'chain.pem', '-out', replyFile], {
      cwd: this.#dir,
      stdio: 'ignore',
    });
    return readFileSync(replyFile);
  }

  /** The trusted root's `timestampAuthorities[]` item for this TSA (default validFor: from 2020, open-ended). */
  trustedRootEntry(listing: ListingOptions = {}): Record<string, unknown> {
    const validFor = listing.validFor ?? { start: TRUST_START };
    const leaf = listing.eku ? this.#reissue(listing.eku) : this.leafDer;
    return {
      subject: { organization: 'sigil-test', commonName: this.commonName },
      uri: `https://${this.commonName}.sigil.test/api/v1/timestamp`,
      certChain: { certificates: [{ rawBytes: leaf.toString('base64') }, { rawBytes: this.rootDer.toString('base64') }] },
      validFor: { start: validFor.start.toISOString(), ...(validFor.end ? { end: validFor.end.toISOString() } : {}) },
    };
  }
}

/** cosign's `dev.sigstore.cosign/rfc3161timestamp` annotation: the TimeStampResp, base64, in Go's JSON. */
export function rfc3161Annotation(timeStampResp: Buffer): string {
  return JSON.stringify({ SignedRFC3161Timestamp: timeStampResp.toString('base64') });
}
