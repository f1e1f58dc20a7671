import { createHash, generateKeyPairSync, randomInt, sign } from 'node:crypto';
import type { KeyObject } from 'node:crypto';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { buildCertificate, certPem, ext, keyIdentifier, name, randomSerial, signCertificate, spkiOf, tbsCertificate } from './x509.js';
import type { Extension } from './x509.js';
import { MerkleLog, signedCheckpoint } from './merkle.js';

// A throwaway Sigstore for tests: a Fulcio-like CA (root + intermediate, ECDSA P-256) that
// issues leaf certificates the way Fulcio does (embedded SCT from a private CT log), a Rekor
// log (ECDSA P-256) that hands out SETs, RFC 6962 inclusion proofs and signed checkpoints,
// and the trusted_root.json (sigstore protobuf-specs format) that trusts all of it — plus, when
// asked, a Rekor v2 log (rekor-v2.ts) and timestamp authorities (tsa.ts).
// Nothing here talks to the network.

export const TRUSTED_ROOT_MEDIA_TYPE = 'application/vnd.dev.sigstore.trustedroot+json;version=0.1';
/** Hosts in the trusted root. Never contacted; the checkpoint signer name must be a substring of the Rekor baseUrl. */
export const REKOR_NAME = 'rekor.sigil.test';
const REKOR_URL = `https://${REKOR_NAME}`;
const FULCIO_URL = 'https://fulcio.sigil.test';
const CTFE_URL = 'https://ctfe.sigil.test';
const CA_ORG = 'sigil-test';
/** Start of every validity window in the trusted root; backdated so tests can sign "in the past". */
const TRUST_START = new Date('2020-01-01T00:00:00.000Z');
const CA_NOT_AFTER = new Date('2099-12-31T23:59:59.000Z');
/** Fulcio issues certificates valid for 10 minutes. */
export const LEAF_VALIDITY_MS = 10 * 60 * 1000;
const TREE_ID_MAX = 2 ** 47; // Trillian tree IDs are int64; any positive number will do
const MS_PER_S = 1000;

export interface KeylessIdentity {
  /** SAN: an email (rfc822Name) when it contains '@' and no scheme, else a URI. */
  subject: string;
  /** OIDC issuer, in extensions 1.3.6.1.4.1.57264.1.1 and .8. */
  issuer: string;
  privateKey: KeyObject;
  publicPem: string;
  /** Leaf certificate (PEM), what cosign puts in `dev.sigstore.cosign/certificate`. */
  certPem: string;
  certDer: Buffer;
  /** Intermediate then root (PEM), what cosign puts in `dev.sigstore.cosign/chain`. */
  chainPem: string;
}

export interface IssueOptions {
  /** Default: now, truncated to the second (X.509 time has second precision). */
  notBefore?: Date;
  /** Default: notBefore + 10 minutes. */
  notAfter?: Date;
  /** Issue from a look-alike CA (same names, other keys) that the trusted root does not contain. */
  untrusted?: boolean;
  /** Embed an SCT from the private CT log (default true). false: no SCT extension (needs ctlogThreshold 0). */
  sct?: boolean;
}

export interface InclusionProof {
  logIndex: number;
  treeSize: number;
  /** base64 */
  rootHash: string;
  /** base64, leaf to root (RFC 6962 audit path) */
  hashes: string[];
  /** signed note: "<origin>\n<size>\n<root b64>\n\n— <name> <b64(keyhint||sig)>\n" */
  checkpoint: string;
}

export interface RekorEntry {
  kind: string;
  apiVersion: string;
  /** The canonicalized entry body (the leaf of the log). */
  body: Buffer;
  logIndex: number;
  /** Unix seconds. */
  integratedTime: number;
  /** hex SHA-256 of the Rekor key's SPKI DER. */
  logID: string;
  /** base64 ECDSA signature over canonical JSON {body, integratedTime, logID, logIndex}. */
  signedEntryTimestamp: string;
  inclusionProof: InclusionProof;
}

export interface RekorEntryOptions {
  /** Unix seconds; default now. */
  integratedTime?: number;
}

export interface PrivateSigstore {
  trustedRootPath: string;
  trustedRootJson: string;
  rootPem: string;
  intermediatePem: string;
  rekorPublicPem: string;
  /** hex */
  rekorLogId: string;
  ctPublicPem: string;
  /** hex */
  ctLogId: string;
  issueIdentity(subject: string, issuer: string, opts?: IssueOptions): KeylessIdentity;
  /** Appends a body (e.g. a hashedrekord or dsse entry object) to the log; returns SET, proof and checkpoint. */
  rekorEntry(body: object, opts?: RekorEntryOptions): RekorEntry;
}

/** JSON with sorted keys and no whitespace: what Rekor signs (SET) and stores (bodies). */
export function canonicalJson(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(canonicalJson).join(',')}]`;
  if (v !== null && typeof v === 'object') {
    const o = v as Record<string, unknown>;
    const keys = Object.keys(o)
      .filter((k) => o[k] !== undefined)
      .sort();
    return `{${keys.map((k) => `${JSON.stringify(k)}:${canonicalJson(o[k])}`).join(',')}}`;
  }
  return JSON.stringify(v);
}

/** The tlog entry as a Sigstore bundle carries it (protobuf-specs JSON). */
export function toBundleTlogEntry(e: RekorEntry, opts: { inclusionProof?: boolean; inclusionPromise?: boolean } = {}): Record<string, unknown> {
  return {
    logIndex: String(e.logIndex),
    logId: { keyId: Buffer.from(e.logID, 'hex').toString('base64') },
    kindVersion: { kind: e.kind, version: e.apiVersion },
    integratedTime: String(e.integratedTime),
    ...(opts.inclusionPromise === false ? {} : { inclusionPromise: { signedEntryTimestamp: e.signedEntryTimestamp } }),
    ...(opts.inclusionProof === false
      ? {}
      : {
          inclusionProof: {
            logIndex: String(e.inclusionProof.logIndex),
            rootHash: e.inclusionProof.rootHash,
            treeSize: String(e.inclusionProof.treeSize),
            hashes: e.inclusionProof.hashes,
            checkpoint: { envelope: e.inclusionProof.checkpoint },
          },
        }),
    canonicalizedBody: e.body.toString('base64'),
  };
}

/** The `dev.sigstore.cosign/bundle` annotation of a legacy .sig layer (cosign's field order). */
export function toLegacyBundleAnnotation(e: RekorEntry): string {
  return JSON.stringify({
    SignedEntryTimestamp: e.signedEntryTimestamp,
    Payload: { body: e.body.toString('base64'), integratedTime: e.integratedTime, logIndex: e.logIndex, logID: e.logID },
  });
}

const sha256 = (...parts: Uint8Array[]): Buffer => {
  const h = createHash('sha256');
  for (const p of parts) h.update(p);
  return h.digest();
};

// --- CA ------------------------------------------------------------------------------------

interface Ca {
  rootKey: KeyObject;
  rootDer: Buffer;
  intermediateKey: KeyObject;
  intermediateSpki: Buffer;
  intermediateDer: Buffer;
  intermediateName: Buffer;
  intermediateKeyId: Buffer;
}

const p256 = (): { privateKey: KeyObject; publicKey: KeyObject } => generateKeyPairSync('ec', { namedCurve: 'prime256v1' });

function createCa(): Ca {
  const root = p256();
  const rootSpki = spkiOf(root.publicKey);
  const rootName = name({ organization: CA_ORG, commonName: 'sigil-test-root' });
  const rootKeyId = keyIdentifier(rootSpki);
  const rootDer = buildCertificate(
    {
      serial: randomSerial(),
      issuer: rootName,
      subject: rootName,
      notBefore: TRUST_START,
      notAfter: CA_NOT_AFTER,
      spki: rootSpki,
      extensions: [ext.keyUsage('ca'), ext.basicConstraints(true, 1), ext.subjectKeyId(rootKeyId), ext.authorityKeyId(rootKeyId)],
    },
    root.privateKey,
  );
  const inter = p256();
  const interSpki = spkiOf(inter.publicKey);
  const interName = name({ organization: CA_ORG, commonName: 'sigil-test-intermediate' });
  const interKeyId = keyIdentifier(interSpki);
  const interDer = buildCertificate(
    {
      serial: randomSerial(),
      issuer: rootName,
      subject: interName,
      notBefore: TRUST_START,
      notAfter: CA_NOT_AFTER,
      spki: interSpki,
      extensions: [
        ext.keyUsage('ca'),
        ext.extKeyUsageCodeSigning(),
        ext.basicConstraints(true, 0),
        ext.subjectKeyId(interKeyId),
        ext.authorityKeyId(rootKeyId),
      ],
    },
    root.privateKey,
  );
  return {
    rootKey: root.privateKey,
    rootDer,
    intermediateKey: inter.privateKey,
    intermediateSpki: interSpki,
    intermediateDer: interDer,
    intermediateName: interName,
    intermediateKeyId: interKeyId,
  };
}

function uint(n: number | bigint, bytes: number): Buffer {
  const b = Buffer.alloc(bytes);
  let v = BigInt(n);
  for (let i = bytes - 1; i >= 0; i--) {
    b[i] = Number(v & 0xffn);
    v >>= 8n;
  }
  return b;
}

function logKey(key: { publicKey: KeyObject }, baseUrl: string): Record<string, unknown> {
  const spki = spkiOf(key.publicKey);
  return {
    baseUrl,
    hashAlgorithm: 'SHA2_256',
    publicKey: { rawBytes: spki.toString('base64'), keyDetails: 'PKIX_ECDSA_P256_SHA_256', validFor: { start: TRUST_START.toISOString() } },
    logId: { keyId: sha256(spki).toString('base64') },
  };
}

class Sigstore implements PrivateSigstore {
  readonly trustedRootPath: string;
  readonly trustedRootJson: string;
  readonly rootPem: string;
  readonly intermediatePem: string;
  readonly rekorPublicPem: string;
  readonly rekorLogId: string;
  readonly ctPublicPem: string;
  readonly ctLogId: string;
  readonly #ca: Ca;
  readonly #rogue: Ca;
  readonly #rekorKey: KeyObject;
  readonly #ctKey: KeyObject;
  readonly #treeId = randomInt(1, TREE_ID_MAX);
  readonly #tree = new MerkleLog();

  constructor(dir: string, extra: MoreTrust) {
    this.#ca = createCa();
    this.#rogue = createCa();
    const rekor = p256();
    const ct = p256();
    this.#rekorKey = rekor.privateKey;
    this.#ctKey = ct.privateKey;
    this.rootPem = certPem(this.#ca.rootDer);
    this.intermediatePem = certPem(this.#ca.intermediateDer);
    this.rekorPublicPem = rekor.publicKey.export({ type: 'spki', format: 'pem' }) as string;
    this.ctPublicPem = ct.publicKey.export({ type: 'spki', format: 'pem' }) as string;
    this.rekorLogId = sha256(spkiOf(rekor.publicKey)).toString('hex');
    this.ctLogId = sha256(spkiOf(ct.publicKey)).toString('hex');
    const root = {
      mediaType: TRUSTED_ROOT_MEDIA_TYPE,
      tlogs: [logKey(rekor, REKOR_URL), ...(extra.tlogs ?? []).map((l) => l.trustedRootLog())],
      certificateAuthorities: [
        {
          subject: { organization: CA_ORG, commonName: 'sigil-test-root' },
          uri: FULCIO_URL,
          certChain: {
            certificates: [{ rawBytes: this.#ca.intermediateDer.toString('base64') }, { rawBytes: this.#ca.rootDer.toString('base64') }],
          },
          validFor: { start: TRUST_START.toISOString() },
        },
      ],
      ctlogs: [logKey(ct, CTFE_URL)],
      timestampAuthorities: (extra.timestampAuthorities ?? []).map((t) => t.trustedRootEntry()),
    };
    this.trustedRootJson = `${JSON.stringify(root, null, 2)}\n`;
    this.trustedRootPath = join(dir, 'trusted_root.json');
  }

  issueIdentity(subject: string, issuer: string, opts: IssueOptions = {}): KeylessIdentity {
    const ca = opts.untrusted ? this.#rogue : this.#ca;
    const key = p256();
    const spki = spkiOf(key.publicKey);
    const notBefore = opts.notBefore ?? new Date(Math.floor(Date.now() / MS_PER_S) * MS_PER_S);
    const notAfter = opts.notAfter ?? new Date(notBefore.getTime() + LEAF_VALIDITY_MS);
    const isEmail = subject.includes('@') && !subject.includes('://');
    const fields = {
      serial: randomSerial(),
      issuer: ca.intermediateName,
      subject: name({}), // Fulcio leaves have an empty subject; the identity is the SAN
      notBefore,
      notAfter,
      spki,
    };
    // Fulcio's extension order (see the public-good leaf in shared/fixtures): SCTs last.
    const exts: Extension[] = [
      ext.keyUsage('leaf'),
      ext.extKeyUsageCodeSigning(),
      ext.subjectKeyId(keyIdentifier(spki)),
      ext.authorityKeyId(ca.intermediateKeyId),
      ext.subjectAltName(isEmail ? { email: subject } : { uri: subject }),
      ext.fulcioIssuerV1(issuer),
      ext.fulcioIssuerV2(issuer),
    ];
    if (opts.sct !== false) {
      // RFC 6962 3.2: the SCT signs the precertificate TBS, which for an embedded SCT is the
      // final TBS without the SCT extension, plus the SHA-256 of the issuer's SPKI.
      const precertTbs = tbsCertificate({ ...fields, extensions: exts }, ca.intermediateKey);
      exts.push(ext.sctList(this.#sctList(precertTbs, ca.intermediateSpki, notBefore.getTime())));
    }
    const certDer = signCertificate(tbsCertificate({ ...fields, extensions: exts }, ca.intermediateKey), ca.intermediateKey);
    return {
      subject,
      issuer,
      privateKey: key.privateKey,
      publicPem: key.publicKey.export({ type: 'spki', format: 'pem' }) as string,
      certPem: certPem(certDer),
      certDer,
      chainPem: certPem(ca.intermediateDer) + certPem(ca.rootDer),
    };
  }

  /** TLS-encoded SignedCertificateTimestampList with one v1 SCT (RFC 6962 3.2, 3.3). */
  #sctList(precertTbs: Buffer, issuerSpki: Buffer, timestampMs: number): Buffer {
    const ts = uint(timestampMs, 8);
    const noExtensions = uint(0, 2);
    const signed = Buffer.concat([
      Buffer.from([0x00, 0x00]), // sct_version v1, signature_type certificate_timestamp
      ts,
      uint(1, 2), // entry_type precert_entry
      sha256(issuerSpki), // issuer_key_hash
      uint(precertTbs.length, 3),
      precertTbs,
      noExtensions,
    ]);
    const sig = sign('sha256', signed, this.#ctKey);
    const sct = Buffer.concat([
      Buffer.from([0x00]),
      Buffer.from(this.ctLogId, 'hex'),
      ts,
      noExtensions,
      Buffer.from([0x04, 0x03]), // hash sha256, signature ecdsa (RFC 5246 7.4.1.4.1)
      uint(sig.length, 2),
      sig,
    ]);
    const item = Buffer.concat([uint(sct.length, 2), sct]);
    return Buffer.concat([uint(item.length, 2), item]);
  }

  rekorEntry(body: object, opts: RekorEntryOptions = {}): RekorEntry {
    const { kind, apiVersion } = body as { kind?: unknown; apiVersion?: unknown };
    if (typeof kind !== 'string' || typeof apiVersion !== 'string') throw new Error('rekor body needs kind and apiVersion');
    const canonical = Buffer.from(canonicalJson(body), 'utf8');
    const inclusion = this.#tree.append(canonical);
    const logIndex = inclusion.logIndex;
    const integratedTime = opts.integratedTime ?? Math.floor(Date.now() / MS_PER_S);
    const setPayload = { body: canonical.toString('base64'), integratedTime, logID: this.rekorLogId, logIndex };
    const signedEntryTimestamp = sign('sha256', Buffer.from(canonicalJson(setPayload), 'utf8'), this.#rekorKey).toString('base64');
    // A signed note as Rekor v1 writes it: origin "<name> - <tree id>".
    const checkpoint = signedCheckpoint(`${REKOR_NAME} - ${this.#treeId}`, inclusion, {
      name: REKOR_NAME,
      keyId: Buffer.from(this.rekorLogId, 'hex'),
      sign: (note) => sign('sha256', note, this.#rekorKey),
    });
    return {
      kind,
      apiVersion,
      body: canonical,
      logIndex,
      integratedTime,
      logID: this.rekorLogId,
      signedEntryTimestamp,
      inclusionProof: {
        logIndex,
        treeSize: inclusion.treeSize,
        rootHash: inclusion.rootHash.toString('base64'),
        hashes: inclusion.hashes.map((h) => h.toString('base64')),
        checkpoint,
      },
    };
  }
}

/**
 * More trust material for the root: further transparency logs (a Rekor v2 log, rekor-v2.ts) and
 * timestamp authorities (tsa.ts), listed after the private Rekor.
 */
export interface MoreTrust {
  tlogs?: ReadonlyArray<{ trustedRootLog(): Record<string, unknown> }>;
  timestampAuthorities?: ReadonlyArray<{ trustedRootEntry(): Record<string, unknown> }>;
}

/** Creates the CA, the logs and `<dir>/trusted_root.json` (listing `extra` too). */
export async function createPrivateSigstore(dir: string, extra: MoreTrust = {}): Promise<PrivateSigstore> {
  const s = new Sigstore(dir, extra);
  await mkdir(dir, { recursive: true });
  await writeFile(s.trustedRootPath, s.trustedRootJson);
  return s;
}
