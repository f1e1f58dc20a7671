import { SigilError } from '../errors.js';
import { isDigest, type Digest } from '../oci/digest.js';

/**
 * Where each catalog record lives: its namespace and key. The one file that builds and parses
 * catalog keys (distribution's registry/storage/paths.go `pathFor`): callers pass typed parts.
 *
 *   tag        <upstream>/<repository>:<tag>
 *   manifest   <upstream>/<repository>@<digest>
 *   blob       <upstream>/<repository>@<digest>
 *   referrers  <upstream>/<repository>@<digest>
 *   verdict    <upstream>/<repository>@<digest>|<policy fingerprint>
 *
 * The format is what stores on disk already hold: it must not change. Parts are validated by
 * the routes, the mirror spec and the layout's ref names before they reach here; building a key
 * refuses the characters that would make it parse back as something else.
 */
export interface RepositoryRef {
  readonly upstream: string;
  readonly repository: string;
}

export interface TagRef extends RepositoryRef {
  readonly tag: string;
}

/** A manifest, blob or referrers record: an object by digest in one repository. */
export interface ObjectRef extends RepositoryRef {
  readonly digest: Digest;
}

export interface VerdictRef extends ObjectRef {
  readonly policyFingerprint: string;
}

/** One catalog record, typed by its namespace. */
export type RecordRef =
  | ({ readonly kind: 'tag' } & TagRef)
  | ({ readonly kind: 'manifest' } & ObjectRef)
  | ({ readonly kind: 'blob' } & ObjectRef)
  | ({ readonly kind: 'referrers' } & ObjectRef)
  | ({ readonly kind: 'verdict' } & VerdictRef);

export type RecordKind = RecordRef['kind'];

/** The ref type of records of one kind. */
export type RefOf<K extends RecordKind> = Extract<RecordRef, { kind: K }>;

/** The catalog's metadata namespaces: each document is about one object (see `catalogSubject`). */
export const CATALOG_NAMESPACES: readonly RecordKind[] = ['tag', 'manifest', 'blob', 'referrers', 'verdict'];

/** The key of a record (its namespace is its kind). */
export function keyOf(ref: RecordRef): string {
  const repo = repositoryPart(ref);
  switch (ref.kind) {
    case 'tag':
      if (/[:/@|]/.test(ref.tag) || ref.tag === '') throw badPart('tag', ref.tag);
      return `${repo}:${ref.tag}`;
    case 'manifest':
    case 'blob':
    case 'referrers':
      return `${repo}@${digestPart(ref.digest)}`;
    case 'verdict':
      return `${repo}@${digestPart(ref.digest)}|${ref.policyFingerprint}`;
  }
}

/**
 * A string naming one record, for callers that keep records in sets and maps (an import's
 * bookkeeping); opaque: never parsed outside this file.
 */
export function recordId(ref: RecordRef): string {
  return `${ref.kind}\0${keyOf(ref)}`;
}

/** The parts of a key of namespace `kind`; undefined when it does not parse (a damaged or foreign document). */
export function parseKey<K extends RecordKind>(kind: K, key: string): RefOf<K> | undefined;
export function parseKey(kind: RecordKind, key: string): RecordRef | undefined {
  const slash = key.indexOf('/');
  if (slash <= 0) return undefined;
  const upstream = key.slice(0, slash);
  const rest = key.slice(slash + 1);
  if (kind === 'tag') {
    const colon = rest.lastIndexOf(':');
    if (colon <= 0 || colon === rest.length - 1) return undefined;
    return { kind, upstream, repository: rest.slice(0, colon), tag: rest.slice(colon + 1) };
  }
  const bar = kind === 'verdict' ? rest.indexOf('|') : -1;
  if (kind === 'verdict' && bar < 0) return undefined;
  const object = bar < 0 ? rest : rest.slice(0, bar);
  const at = object.lastIndexOf('@');
  if (at <= 0) return undefined;
  const digest = object.slice(at + 1);
  if (!isDigest(digest)) return undefined;
  const base = { upstream, repository: object.slice(0, at), digest };
  return kind === 'verdict' ? { kind, ...base, policyFingerprint: rest.slice(bar + 1) } : { kind, ...base };
}

/**
 * The object a catalog document is about, so that a metadata sweep can drop documents of
 * objects no longer stored: for a tag the digest it points at (its value), for every other
 * record the digest in its key. undefined when the key or value does not parse (or the
 * namespace is not the catalog's): such a document is left alone.
 */
export function catalogSubject(ns: string, key: string, value: unknown): Digest | undefined {
  if (ns === 'tag') {
    const d = typeof value === 'object' && value !== null ? (value as { digest?: unknown }).digest : undefined;
    return typeof d === 'string' && isDigest(d) ? d : undefined;
  }
  if (!(CATALOG_NAMESPACES as readonly string[]).includes(ns)) return undefined;
  const ref = parseKey(ns as Exclude<RecordKind, 'tag'>, key);
  return ref?.digest;
}

function repositoryPart(ref: RepositoryRef): string {
  if (ref.upstream === '' || ref.upstream.includes('/') || /[@|]/.test(ref.upstream)) throw badPart('upstream', ref.upstream);
  if (ref.repository === '' || /[:@|]/.test(ref.repository)) throw badPart('repository', ref.repository);
  return `${ref.upstream}/${ref.repository}`;
}

function digestPart(digest: Digest): Digest {
  if (!isDigest(digest)) throw badPart('digest', digest);
  return digest;
}

function badPart(what: string, value: unknown): SigilError {
  return new SigilError({ code: 'INTERNAL', message: `catalog: not a ${what} for a record key: ${JSON.stringify(String(value)).slice(0, 160)}` });
}
