import type { Config, UpstreamConfig } from '../config/types.js';
import { SigilError } from '../errors.js';
import { isDigest } from '../oci/digest.js';
import { resolvePathName } from '../oci/image-name.js';
import { isReference } from '../oci/reference.js';

export type Endpoint =
  | { readonly kind: 'manifest'; readonly reference: string }
  | { readonly kind: 'blob'; readonly digest: string }
  | { readonly kind: 'tags' }
  | { readonly kind: 'referrers'; readonly digest: string }
  | { readonly kind: 'upload' };

export interface Routed {
  readonly upstream: UpstreamConfig;
  /** The repository at the upstream (prefix stripped, `library/` added for docker.io). */
  readonly repository: string;
  /** The name as the client wrote it, for answers that echo it (tags/list, Link). */
  readonly clientName: string;
  readonly endpoint: Endpoint;
}

// distribution-spec end-1..end-12: the last path elements say which API is meant.
const PATH_RE = /^(.+)\/(manifests|blobs|referrers)\/([^/]+)$/;
const TAGS_RE = /^(.+)\/tags\/list$/;
const UPLOAD_RE = /^(.+)\/blobs\/uploads(?:\/.*)?$/;

/**
 * Splits the part of a /v2/ path after "/v2/" into a name and an endpoint. `path` is the router's
 * `*` parameter, already percent-decoded once (find-my-way): it is not decoded again, so that one
 * image has one name. A `%` left in it (`sec%252fapp` arrives as `sec%2fapp`) is a character no
 * name, tag or digest may hold: refused below, never another spelling of `sec/app`.
 */
export function parseV2Path(path: string): { name: string; endpoint: Endpoint } {
  let m = UPLOAD_RE.exec(path);
  if (m) return { name: m[1], endpoint: { kind: 'upload' } };
  m = TAGS_RE.exec(path);
  if (m) return { name: m[1], endpoint: { kind: 'tags' } };
  m = PATH_RE.exec(path);
  if (!m) throw new SigilError({ code: 'NAME_UNKNOWN', message: `no registry API at /v2/${path}` });
  const [, name, what, ref] = m;
  switch (what) {
    case 'manifests':
      if (!isReference(ref)) throw new SigilError({ code: 'TAG_INVALID', message: `invalid manifest reference '${ref}'` });
      return { name, endpoint: { kind: 'manifest', reference: ref } };
    case 'blobs':
      if (!isDigest(ref)) throw new SigilError({ code: 'DIGEST_INVALID', message: `invalid blob digest '${ref}'` });
      return { name, endpoint: { kind: 'blob', digest: ref } };
    default:
      if (!isDigest(ref)) throw new SigilError({ code: 'DIGEST_INVALID', message: `invalid referrers digest '${ref}'` });
      return { name, endpoint: { kind: 'referrers', digest: ref } };
  }
}

/** CONTRACT "Routing of /v2/<path>": the name and `ns=` resolved by oci/image-name.ts, then the endpoint. */
export function route(config: Config, rest: string, ns: string | undefined): Routed {
  const { name, endpoint } = parseV2Path(rest);
  const { upstream, repository } = resolvePathName(config, name, ns);
  return { upstream, repository, clientName: name, endpoint };
}
