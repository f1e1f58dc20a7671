/**
 * Trust material: the union of the configured trusted_root.json files (the
 * Sigstore TrustedRoot format), read once at start, and, with `trust.tuf`, the
 * trusted root a TUF repository last served (trust/ fetches it; this file only
 * parses and merges). The public-good root ships in assets/
 * (scripts/build-trust.mjs extracts it from @sigstore/tuf's seeds), so
 * verification never depends on a TUF mirror.
 */
import { createHash } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { json as sigstoreJson } from '@sigstore/core';
import { TrustedRoot } from '@sigstore/protobuf-specs';
import { toTrustMaterial, type TrustMaterial } from '@sigstore/verify';
import { readConfigFileSync } from '../config/read-file.js';
import { parseJson } from '../oci/json.js';

/** The trust.trustedRoot entry that names the root shipped with sigil. */
export const PUBLIC_GOOD = 'public-good';

/** The media types of the TrustedRoot format (v0.1 in both spellings, v0.2). */
const TRUSTED_ROOT_MEDIA_TYPE = /^application\/vnd\.dev\.sigstore\.trustedroot(\+json;version=0\.1|\.v0\.[12]\+json)$/;

/**
 * Certificate authorities that share what their trusted root requires of a
 * certificate. A root that lists CT logs requires an SCT; a root that lists
 * transparency logs requires a log entry (and a verified timestamp). A root
 * with neither — a private PKI given as bare CAs — is checked like cosign with
 * --insecure-ignore-sct --insecure-ignore-tlog: chain only, at the log's or
 * TSA's time when the signature has one, else at the current time.
 */
export interface CaProfile {
  /** The union material with only this profile's certificate authorities. */
  readonly material: TrustMaterial;
  readonly requireSct: boolean;
  readonly requireTlog: boolean;
}

export interface TrustBundle {
  /** The union of every root's CAs, transparency logs, CT logs and TSAs. */
  readonly material: TrustMaterial;
  /** sha256 over the canonical JSON of the distinct roots (order and paths do not count). */
  readonly fingerprint: string;
  /** The entries as configured (`public-good` or a path). */
  readonly sources: readonly string[];
  /** The CAs grouped by what their root requires; empty when no root lists a CA. */
  readonly caProfiles: readonly CaProfile[];
}

export interface LoadTrustOptions {
  /** Where the shipped public-good trusted_root.json is (see defaultPublicGoodPath). */
  readonly publicGoodPath: string;
}

/** assets/public-good/trusted_root.json of the installed package (dist/src/verify → package root). */
export function defaultPublicGoodPath(): string {
  return fileURLToPath(new URL('../../../assets/public-good/trusted_root.json', import.meta.url));
}

/** One parsed trusted root and the canonical JSON its fingerprint is taken over. */
export interface LoadedRoot {
  readonly root: TrustedRoot;
  readonly canonical: string;
}

function readRoot(entry: string, path: string): LoadedRoot {
  const label = entry === PUBLIC_GOOD ? `trusted root public-good (${path})` : `trusted root ${path}`;
  let text: string;
  try {
    text = readConfigFileSync(path).toString('utf8');
  } catch (e) {
    throw new Error(`${label}: cannot read: ${(e as Error).message}`, { cause: e });
  }
  return parseTrustedRoot(text, label);
}

/**
 * Parses one trusted_root.json document; `label` names it in errors ("trusted root <path>").
 * Throws for bad JSON, a document that is not a trusted root, a bad certificate or key, or a
 * root that lists nothing.
 */
export function parseTrustedRoot(text: string, label: string): LoadedRoot {
  let raw: unknown;
  try {
    raw = parseJson(text, label);
  } catch (e) {
    throw new Error((e as Error).message, { cause: e });
  }
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) throw new Error(`${label}: not a JSON object`);
  const mediaType = (raw as { mediaType?: unknown }).mediaType;
  if (typeof mediaType !== 'string' || !TRUSTED_ROOT_MEDIA_TYPE.test(mediaType)) {
    throw new Error(`${label}: mediaType ${JSON.stringify(mediaType)} is not a Sigstore trusted root`);
  }
  let root: TrustedRoot;
  try {
    root = TrustedRoot.fromJSON(raw);
    toTrustMaterial(root); // parses every certificate and key now, so a bad one names its file
  } catch (e) {
    throw new Error(`${label}: invalid trusted root: ${(e as Error).message}`, { cause: e });
  }
  const lists = [root.certificateAuthorities, root.tlogs, root.ctlogs, root.timestampAuthorities];
  if (lists.every((l) => l.length === 0)) {
    throw new Error(`${label}: lists no certificate authority, transparency log, CT log or timestamp authority`);
  }
  return { root, canonical: sigstoreJson.canonicalize(raw) };
}

function union(roots: readonly TrustedRoot[], cas: TrustedRoot['certificateAuthorities']): TrustedRoot {
  return {
    mediaType: 'application/vnd.dev.sigstore.trustedroot.v0.2+json',
    certificateAuthorities: cas,
    tlogs: roots.flatMap((r) => r.tlogs),
    ctlogs: roots.flatMap((r) => r.ctlogs),
    timestampAuthorities: roots.flatMap((r) => r.timestampAuthorities),
  };
}

/**
 * Loads and merges trusted roots. Each entry is a trusted_root.json path or
 * `public-good`. Throws an Error naming the file for a missing file, bad JSON
 * or a document that is not a trusted root.
 */
export function loadTrust(entries: readonly string[], opts: LoadTrustOptions): TrustBundle {
  return mergeTrust(readTrustedRoots(entries, opts), entries);
}

/** Reads every entry (a path or `public-good`) as loadTrust does, without merging them. */
export function readTrustedRoots(entries: readonly string[], opts: LoadTrustOptions): LoadedRoot[] {
  if (entries.length === 0) throw new Error('no trusted root configured');
  return entries.map((entry) => readRoot(entry, entry === PUBLIC_GOOD ? opts.publicGoodPath : entry));
}

/**
 * The trust material of parsed roots: their union, the fingerprint over the distinct roots
 * (order and duplicates do not count) and the CA profiles. `sources` says where they came from.
 */
export function mergeTrust(loaded: readonly LoadedRoot[], sources: readonly string[]): TrustBundle {
  const distinct = new Map<string, LoadedRoot>();
  for (const l of loaded) {
    const hash = createHash('sha256').update(l.canonical).digest('hex');
    if (!distinct.has(hash)) distinct.set(hash, l);
  }
  const hashes = [...distinct.keys()].sort();
  const roots = hashes.map((h) => (distinct.get(h) as LoadedRoot).root);
  const fingerprint = createHash('sha256').update(hashes.join('\n')).digest('hex');

  const groups = new Map<string, { requireSct: boolean; requireTlog: boolean; cas: TrustedRoot['certificateAuthorities'] }>();
  for (const root of roots) {
    if (root.certificateAuthorities.length === 0) continue;
    const requireSct = root.ctlogs.length > 0;
    const requireTlog = root.tlogs.length > 0;
    const key = `${requireSct}/${requireTlog}`;
    const group = groups.get(key) ?? { requireSct, requireTlog, cas: [] };
    group.cas.push(...root.certificateAuthorities);
    groups.set(key, group);
  }
  // Stricter profiles first: a certificate is tried against them before a bare-CA root.
  const strictness = (g: { requireSct: boolean; requireTlog: boolean }): number => Number(g.requireSct) + Number(g.requireTlog);
  const caProfiles = [...groups.values()].sort((a, b) => strictness(b) - strictness(a)).map((g) => ({
    material: toTrustMaterial(union(roots, g.cas)),
    requireSct: g.requireSct,
    requireTlog: g.requireTlog,
  }));
  return {
    material: toTrustMaterial(union(roots, roots.flatMap((r) => r.certificateAuthorities))),
    fingerprint,
    sources: [...sources],
    caProfiles,
  };
}
