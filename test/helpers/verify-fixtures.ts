// Shared by test/unit/verify-*.test.ts: the real signature fixtures
// (test/fixtures/real, see test/fixtures/README.md), hand-built policies and
// trust bundles.
import { X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { rm, writeFile } from 'node:fs/promises';
import { after, before } from 'node:test';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Authority, Policy, TlogMode } from '../../src/config/types.js';
import type { Digest } from '../../src/oci/digest.js';
import { loadTrust, PUBLIC_GOOD, type TrustBundle } from '../../src/verify/trust.js';
import type { CandidateSignature, Outcome, SignatureCheck } from '../../src/verify/types.js';
import { sha256 } from './digest.js';
import { createPrivateSigstore, type PrivateSigstore } from './private-sigstore.js';
import { tempDir } from './temp.js';

export const REAL = fileURLToPath(new URL('../../../test/fixtures/real/', import.meta.url));
export const PUBLIC_GOOD_ROOT = fileURLToPath(new URL('../../../assets/public-good/trusted_root.json', import.meta.url));
export const CI = join(REAL, 'containers-image');
export const PGI_ROOT = join(REAL, 'cosign', 'trusted_root_pgi.json');
export const SIGN_PREDICATE = 'https://sigstore.dev/cosign/sign/v1';
export const ATTESTATION_PREDICATE = 'https://cosign.sigstore.dev/attestation/v1';
/** The in-toto subject of cosign/oci-attestation.sigstore.json. */
export const ATTESTATION_DIGEST = 'sha256:732112270d7e59418a8c080b134b24cabd67d250d0d0147a97ed95ba5c280aa4' as Digest;
export const OTHER_DIGEST = `sha256:${'ab'.repeat(32)}` as Digest;
/** What precedes the JSON in containers/image's signature-N files. */
const SIGSTORE_JSON_PREFIX = Buffer.from('\0sigstore-json\n', 'latin1');

export const read = (...parts: string[]): Buffer => readFileSync(join(...parts));
export const readText = (...parts: string[]): string => readFileSync(join(...parts), 'utf8');

export interface LegacyFixture {
  readonly candidate: Extract<CandidateSignature, { format: 'legacy' }>;
  /** sha256 of the fixture's manifest.json: the digest the payload names. */
  readonly digest: Digest;
}

/** A containers/image `dir-img-*` fixture as discovery would hand it over. */
export function legacyFixture(dir: string): LegacyFixture {
  const file = read(CI, dir, 'signature-1');
  if (!file.subarray(0, SIGSTORE_JSON_PREFIX.length).equals(SIGSTORE_JSON_PREFIX)) throw new Error(`${dir}/signature-1: unexpected prefix`);
  const doc = JSON.parse(file.subarray(SIGSTORE_JSON_PREFIX.length).toString('utf8')) as { payload: string; annotations: Record<string, string> };
  return {
    candidate: { format: 'legacy', source: `${dir} layer 0`, payload: Buffer.from(doc.payload, 'base64'), annotations: doc.annotations },
    digest: sha256(read(CI, dir, 'manifest.json')),
  };
}

export function bundleCandidate(bundle: Buffer, source = 'referrer 0'): CandidateSignature {
  return { format: 'bundle', source, bundle };
}

const escape = (s: string): string => s.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');

export function keyAuthority(pem: string, tlog: TlogMode, source = 'test key'): Authority {
  return { kind: 'key', pem, source, tlog };
}

/** A keyless authority as config/ compiles it: exact values become ^escaped$, patterns are used as given. */
export function keyless(issuer: string | RegExp, subject: string | RegExp): Authority {
  const re = (v: string | RegExp): RegExp => (typeof v === 'string' ? new RegExp(`^${escape(v)}$`) : v);
  return { kind: 'keyless', issuer: re(issuer), subject: re(subject), issuerText: String(issuer), subjectText: String(subject) };
}

export function policy(authorities: readonly Authority[], extra: Partial<Pick<Policy, 'annotations' | 'predicateTypes'>> = {}): Policy {
  return {
    name: 'test',
    match: ['**'],
    matchers: [/^.*$/],
    mode: 'enforce',
    authorities,
    annotations: extra.annotations ?? {},
    predicateTypes: extra.predicateTypes ?? [SIGN_PREDICATE],
    fingerprint: 'test',
  };
}

export function publicGoodTrust(): TrustBundle {
  return loadTrust([PUBLIC_GOOD], { publicGoodPath: PUBLIC_GOOD_ROOT });
}

/** The DER certificates of a PEM bundle, in file order. */
export function pemCertificates(pem: string): Buffer[] {
  return [...pem.matchAll(/-----BEGIN CERTIFICATE-----[^-]+-----END CERTIFICATE-----/g)].map((m) => new X509Certificate(m[0]).raw);
}

/**
 * A trusted_root.json that trusts the containers/image private PKI (intermediate + root) as
 * one certificate authority, with no transparency log, CT log or timestamp authority.
 */
export async function writePkiRoot(dir: string): Promise<string> {
  const chain = [...pemCertificates(readText(CI, 'pki_intermediate_crts.pem')), ...pemCertificates(readText(CI, 'pki_root_crts.pem'))];
  const root = {
    mediaType: 'application/vnd.dev.sigstore.trustedroot+json;version=0.1',
    tlogs: [],
    certificateAuthorities: [
      {
        subject: { organization: 'IT', commonName: 'Linuxera Root Certificate Authority' },
        certChain: { certificates: chain.map((der) => ({ rawBytes: der.toString('base64') })) },
        validFor: { start: '2024-10-01T00:00:00Z' },
      },
    ],
    ctlogs: [],
    timestampAuthorities: [],
  };
  const path = join(dir, 'pki_trusted_root.json');
  await writeFile(path, JSON.stringify(root, null, 2));
  return path;
}

/** The reason of the only check of an outcome (asserting there is exactly one failed check). */
export function onlyReason(outcome: Outcome): string {
  if (outcome.kind !== 'invalid' || outcome.checks.length !== 1) throw new Error(`expected one invalid check, got ${JSON.stringify(outcome)}`);
  const check = outcome.checks[0] as Extract<SignatureCheck, { ok: false }>;
  return check.reason;
}

/** A base64 signature with one bit flipped. */
export function flipSignatureBit(b64: string): string {
  const sig = Buffer.from(b64, 'base64');
  sig[sig.length - 1] ^= 0x01;
  return sig.toString('base64');
}

/** A private Sigstore in a temp dir and the trust of its root alone, for the tests of one suite. */
export interface SigstoreSuite {
  readonly dir: string;
  readonly sigstore: PrivateSigstore;
  readonly trust: TrustBundle;
}

/** Creates a SigstoreSuite before the enclosing suite's tests and removes its dir after them. */
export function privateSigstoreSuite(prefix: string): SigstoreSuite {
  let made: { dir: string; sigstore: PrivateSigstore; trust: TrustBundle } | undefined;
  const get = (): NonNullable<typeof made> => {
    if (made === undefined) throw new Error('privateSigstoreSuite: used outside its suite');
    return made;
  };
  before(async () => {
    const dir = await tempDir(prefix);
    const sigstore = await createPrivateSigstore(dir);
    made = { dir, sigstore, trust: loadTrust([sigstore.trustedRootPath], { publicGoodPath: PUBLIC_GOOD_ROOT }) };
  });
  after(() => (made ? rm(made.dir, { recursive: true, force: true }) : undefined));
  return {
    get dir() { return get().dir; },
    get sigstore() { return get().sigstore; },
    get trust() { return get().trust; },
  };
}
