/**
 * The compiled, frozen internal form of sigil's configuration. `load.ts`
 * parses YAML (with ${ENV} expansion), `schema.ts` validates it with YAML paths
 * in every message, and `compile.ts` produces this shape. Nothing outside
 * config/ sees raw YAML.
 */
import type { Condition } from './condition.js';

export type Mode = 'enforce' | 'warn' | 'off';
export type TlogMode = 'require' | 'ignore';

export interface ListenAddress {
  readonly host: string;
  readonly port: number;
}

export interface ServerConfig {
  readonly listen: ListenAddress;
  /** PEM contents, read at load time. */
  readonly tls?: { readonly cert: string; readonly key: string; readonly certPath: string; readonly keyPath: string };
  /** htpasswd file: user → bcrypt hash, read at load time. */
  readonly auth?: { readonly htpasswdPath: string; readonly users: ReadonlyMap<string, string> };
  readonly logLevel: string;
}

export interface UpstreamConfig {
  /** Registry host clients think they pull from (matched to ns= and first path segment). */
  readonly name: string;
  /**
   * Further routing names (`aliases`): matched to ns= and the first path segment like `name`;
   * policies, the content store and every answer still say `name`.
   */
  readonly aliases: readonly string[];
  /** Base URL, e.g. https://registry-1.docker.io (no trailing slash, no path). */
  readonly url: URL;
  readonly credentials?: { readonly username: string; readonly password: string };
  readonly tls?: {
    /** Extra CA bundle, PEM contents read at load time. */
    readonly ca?: string;
    readonly caPath?: string;
    readonly insecureSkipVerify: boolean;
  };
  /** Serve stale content from the store when this upstream fails (issue 4). */
  readonly staleIfError: boolean;
  /**
   * Hash blobs passing through and cut off a mismatch (extension `verifyBlobDigests`, default
   * true). Clients check blob digests themselves; turning it off trades that second check for
   * throughput (see docs/BENCHMARK.md). Manifests are always hashed and verified.
   */
  readonly verifyBlobDigests: boolean;
}

export type Authority =
  | {
      readonly kind: 'key';
      /** PEM text of the public key (from a file or inline). */
      readonly pem: string;
      /** Where it came from, for messages: a file path or "inline". */
      readonly source: string;
      readonly tlog: TlogMode;
    }
  | {
      readonly kind: 'keyless';
      /** Anchored; an exact `issuer` compiles to ^escaped$. */
      readonly issuer: RegExp;
      readonly subject: RegExp;
      /** The values as written, for messages and fingerprints. */
      readonly issuerText: string;
      readonly subjectText: string;
    };

/** A signed in-toto attestation a policy requires (`attestations[]`). */
export interface AttestationRequirement {
  readonly name: string;
  /** `predicateType` as written: one, or a list of which any meets the requirement. */
  readonly predicateTypes: readonly string[];
  /** CEL over `predicate` and `statement`; `true` when none is written. */
  readonly condition: Condition;
}

export interface Policy {
  readonly name: string;
  /** The globs as written. */
  readonly match: readonly string[];
  /** Compiled, anchored, one per glob. */
  readonly matchers: readonly RegExp[];
  readonly mode: Mode;
  /** "<upstream name>/<repository>" or a plain repository; as written. */
  readonly signatureRepository?: string;
  readonly authorities: readonly Authority[];
  readonly annotations: Readonly<Record<string, string>>;
  readonly predicateTypes: readonly string[];
  /** Attestations that must also be present, each met by one signed by an authority. Absent: none. */
  readonly attestations?: readonly AttestationRequirement[];
  /**
   * How many distinct authorities must verify, each by a signature of a distinct signer (N-of-M,
   * e.g. two-person release signing). Absent: 1, any one authority.
   */
  readonly threshold?: number;
  /** sha256 over the policy's canonical JSON: part of verdict cache keys. */
  readonly fingerprint: string;
}

export interface CacheConfig {
  readonly verifications: { readonly maxEntries: number; readonly ttlMs: number };
  /** tag → digest answers reused this long (extension: `cache.tags.ttl`, default 30s). */
  readonly tags: { readonly ttlMs: number };
  /** Manifests held in memory by digest (extension: `cache.manifests.maxBytes`, default 64 MiB). */
  readonly manifests: { readonly maxBytes: number };
  readonly store?: { readonly dir: string; readonly maxBytes: number };
  /** Several processes acting as one cache (`cache.shared`; needs `cache.store`). */
  readonly shared?: SharedConfig;
}

/** `cache.shared`: at least one of `s3` and `redis`; `peer` needs `redis`. */
export interface SharedConfig {
  /** The bucket holding the verified store as the second level behind each process's `cache.store`. */
  readonly s3?: SharedS3Config;
  /** Redis/Valkey: leases (one fetch at a time across processes), shared tag answers and verdicts. */
  readonly redis?: { readonly url: string };
  /** Where this process serves its in-flight downloads to peers, and how they reach it. */
  readonly peer?: SharedPeerConfig;
}

export interface SharedS3Config {
  /** Any S3-compatible endpoint; absent: AWS's own for `region`. */
  readonly endpoint?: string;
  readonly region: string;
  readonly bucket: string;
  /** Key prefix, '' or ending in '/'. */
  readonly prefix: string;
  readonly forcePathStyle: boolean;
  /** Absent: the AWS SDK's default chain (environment, instance role, …). */
  readonly credentials?: { readonly accessKeyId: string; readonly secretAccessKey: string; readonly sessionToken?: string };
  /** Extension: the bucket is evicted down to this many bytes (least recently used first) by one process at a time. */
  readonly maxBytes?: number;
  /** Extension: answer warm blob GETs with a 307 to a short-lived presigned URL (default false; never offline). */
  readonly redirect: boolean;
}

export interface SharedPeerConfig {
  readonly listen: ListenAddress;
  /** scheme://host:port peers use; https: the peer listener serves with server.tls's certificate. */
  readonly advertise: string;
  /** Shared secret every peer presents (Authorization: Bearer). */
  readonly token: string;
  /** Extension: PEM of the CA peers' certificates chain to (read at load), beside the system roots. */
  readonly ca?: string;
  readonly caPath?: string;
}

/** `trust.tuf`: a TUF repository that keeps a trusted root fresh (trust/ fetches it). */
export interface TufConfig {
  /** The repository's base URL, no trailing slash (metadata at <url>/N.root.json, targets at <url>/targets/). */
  readonly url: string;
  /** The initial TUF root.json (absolute); absent: public-good's, from @sigstore/tuf's seeds. */
  readonly rootPath?: string;
  /** Where verified metadata and the last verified trusted root are cached (absolute). */
  readonly cacheDir: string;
  /** How often the repository is asked for news. */
  readonly refreshMs: number;
}

export interface Config {
  readonly server: ServerConfig;
  readonly upstreams: readonly UpstreamConfig[];
  readonly defaultUpstream?: string;
  readonly trust: { readonly trustedRoot: readonly string[]; readonly tuf?: TufConfig };
  readonly policies: readonly Policy[];
  readonly cache: CacheConfig;
  /** Where the config came from: a path, or "built-in default". */
  readonly source: string;
}

/** One problem found while loading a config, with its YAML path ("policies[0].mode"). */
export interface ConfigProblem {
  readonly path: string;
  readonly message: string;
  readonly severity: 'error' | 'warning';
}
