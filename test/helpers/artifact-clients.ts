import semver from 'semver';
import { request } from 'undici';
import { sha256 } from './digest.js';

// The requests Flux's source-controller and `helm pull oci://` send, in their order and with
// their headers, for tests of sigil as those clients meet it (neither tool runs on this
// machine). Read from the tools' sources, not copied:
// - source-controller internal/controller/ocirepository_controller.go: getTagBySemver
//   (remote.List, then the highest tag in the range), getRevision (remote.Head, remote.Get when
//   HEAD fails), remote.Image by digest, the first layer (or the layerSelector's) read whole.
//   go-containerregistry pkg/v1/remote: the manifest Accept is allManifestMediaTypes joined
//   by "," (descriptor.go, image.go, index.go, fetcher.go); tags/list starts with n=1000
//   (options.go defaultPageSize) and follows `Link` (list.go).
// - helm pkg/registry/client.go Pull → oras.Copy; oras-go registry/remote: Resolve is a HEAD
//   with defaultManifestMediaTypes joined by ", " (manifest.go) that needs Content-Type,
//   Content-Length and Docker-Content-Digest (repository.go generateDescriptor); Fetch sends
//   the resolved media type alone as Accept and refuses any other Content-Type; Tags (helm's
//   semver lookup) follows `Link` with no `n`.

/** go-containerregistry's Accept for remote.Get / remote.Head / remote.Image. */
export const GGCR_ACCEPT = [
  'application/vnd.docker.distribution.manifest.v1+json',
  'application/vnd.docker.distribution.manifest.v1+prettyjws',
  'application/vnd.docker.distribution.manifest.v2+json',
  'application/vnd.oci.image.manifest.v1+json',
  'application/vnd.docker.distribution.manifest.list.v2+json',
  'application/vnd.oci.image.index.v1+json',
].join(',');

/** oras-go v2's Accept when it resolves a tag (helm pull). */
export const ORAS_ACCEPT = [
  'application/vnd.docker.distribution.manifest.v2+json',
  'application/vnd.docker.distribution.manifest.list.v2+json',
  'application/vnd.oci.image.manifest.v1+json',
  'application/vnd.oci.image.index.v1+json',
  'application/vnd.oci.artifact.manifest.v1+json',
].join(', ');

const GGCR_PAGE_SIZE = 1000;
/** A bound on `Link` pages followed, so a server that loops cannot hang a test. */
const MAX_PAGES = 20;

/** One request a tool sent and what it got. */
export interface Exchange {
  readonly method: string;
  readonly path: string;
  readonly status: number;
  readonly headers: Record<string, string | string[] | undefined>;
  readonly body: Buffer;
}

/** Where a tool's pull stopped (`failed`: the exchange it could not go on from) or what it got. */
export interface ToolPull {
  readonly exchanges: Exchange[];
  readonly failed?: Exchange;
  readonly tag?: string;
  readonly digest?: string;
  readonly manifest?: Buffer;
  /** Blob bytes by digest, as read. */
  readonly blobs: Map<string, Buffer>;
}

const header = (e: Exchange, name: string): string | undefined => {
  const v = e.headers[name];
  return Array.isArray(v) ? v[0] : v;
};
export { header as exchangeHeader };

async function exchange(base: string, method: string, path: string, headers: Record<string, string> = {}): Promise<Exchange> {
  const res = await request(`${base}${path}`, { method: method as 'GET' | 'HEAD', headers });
  const body = Buffer.from(await res.body.arrayBuffer());
  return { method, path, status: res.statusCode, headers: res.headers, body };
}

/** Every tag, page by page through `Link: <…>; rel="next"` (first page `n=1000` for go-containerregistry, none for oras-go). */
export async function listTags(base: string, repo: string, client: 'ggcr' | 'oras', log: Exchange[] = []): Promise<string[]> {
  let path: string | undefined = `/v2/${repo}/tags/list${client === 'ggcr' ? `?n=${GGCR_PAGE_SIZE}` : ''}`;
  const tags: string[] = [];
  for (let page = 0; path !== undefined && page < MAX_PAGES; page++) {
    const e = await exchange(base, 'GET', path);
    log.push(e);
    if (e.status !== 200) throw new Error(`GET ${path} → ${e.status}: ${e.body.toString().slice(0, 300)}`);
    tags.push(...(JSON.parse(e.body.toString()) as { tags: string[] | null }).tags ?? []);
    const link = header(e, 'link');
    path = link === undefined ? undefined : /^<([^>]+)>/.exec(link)?.[1];
  }
  return tags;
}

const HELM_CHART_LAYER = 'application/vnd.cncf.helm.chart.content.v1.tar+gzip';

/**
 * The highest tag in `range` the way source-controller's getTagBySemver picks it: tags with
 * two dots at least, a leading `v` allowed (fluxcd/pkg version.ParseVersion on Masterminds
 * semver; npm's semver agrees on such tags). Undefined when none matches.
 */
export function fluxSemverTag(tags: readonly string[], range: string, layerMediaType?: string): string | undefined {
  const r = new semver.Range(range);
  // convertOCIToSemVerTag: for a Helm chart layer, `_` in a tag stands for `+`
  const chart = layerMediaType === HELM_CHART_LAYER;
  const versions = tags.flatMap((t) => {
    const text = chart ? t.replaceAll('_', '+') : t;
    // ParseVersion: strings.SplitN(v, ".", 3) must give three parts, i.e. two dots at least
    const v = text.split('.').length >= 3 ? semver.parse(text.replace(/^v/, '')) : null;
    return v !== null && r.test(v) ? [{ t, v }] : [];
  });
  versions.sort((a, b) => semver.rcompare(a.v, b.v));
  return versions[0]?.t;
}

/**
 * An OCIRepository's reconcile: `ref.tag` or `ref.semver` resolved, the revision by HEAD, the
 * artifact by digest, its first layer (or the first of `layerSelector.mediaType`).
 */
export async function fluxPull(base: string, repo: string, ref: { tag?: string; semver?: string; layerMediaType?: string }): Promise<ToolPull> {
  const exchanges: Exchange[] = [];
  const blobs = new Map<string, Buffer>();
  let tag = ref.tag ?? 'latest';
  if (ref.semver !== undefined) {
    const picked = fluxSemverTag(await listTags(base, repo, 'ggcr', exchanges), ref.semver, ref.layerMediaType);
    if (picked === undefined) throw new Error(`no match found for semver: ${ref.semver}`);
    tag = picked;
  }
  let resolved = await exchange(base, 'HEAD', `/v2/${repo}/manifests/${tag}`, { accept: GGCR_ACCEPT });
  exchanges.push(resolved);
  if (resolved.status !== 200) {
    resolved = await exchange(base, 'GET', `/v2/${repo}/manifests/${tag}`, { accept: GGCR_ACCEPT });
    exchanges.push(resolved);
    if (resolved.status !== 200) return { exchanges, failed: resolved, tag, blobs };
  }
  const digest = header(resolved, 'docker-content-digest');
  if (digest === undefined) return { exchanges, failed: resolved, tag, blobs };
  const m = await exchange(base, 'GET', `/v2/${repo}/manifests/${digest}`, { accept: GGCR_ACCEPT });
  exchanges.push(m);
  if (m.status !== 200 || sha256(m.body) !== digest) return { exchanges, failed: m, tag, digest, blobs };
  const layers = (JSON.parse(m.body.toString()) as { layers: Array<{ digest: string; mediaType: string }> }).layers;
  const first = ref.layerMediaType === undefined ? layers[0] : layers.find((l) => l.mediaType === ref.layerMediaType);
  if (first !== undefined) {
    const b = await exchange(base, 'GET', `/v2/${repo}/blobs/${first.digest}`);
    exchanges.push(b);
    if (b.status !== 200 || sha256(b.body) !== first.digest) return { exchanges, failed: b, tag, digest, manifest: m.body, blobs };
    blobs.set(first.digest, b.body);
  }
  return { exchanges, tag, digest, manifest: m.body, blobs };
}

/**
 * What source-controller's own cosign check (`verify.provider: cosign`) reads for `digest`
 * (internal/oci/cosign Verify; cosign pkg/cosign GetBundles, ociremote): the referrers of the
 * digest (go-containerregistry remote.Referrers: Accept OCI index, no filter), each listed
 * manifest and its first layer (a bundle); with no referrers, the `sha256-<hex>.sig` manifest
 * and its config and layers (VerifyImageSignatures). `failed` is set when any answer was not 200.
 */
export async function cosignLookups(base: string, repo: string, digest: string): Promise<ToolPull> {
  const exchanges: Exchange[] = [];
  const blobs = new Map<string, Buffer>();
  const refs = await exchange(base, 'GET', `/v2/${repo}/referrers/${digest}`, { accept: 'application/vnd.oci.image.index.v1+json' });
  exchanges.push(refs);
  if (refs.status !== 200 || header(refs, 'content-type') !== 'application/vnd.oci.image.index.v1+json') return { exchanges, failed: refs, digest, blobs };
  const listed = (JSON.parse(refs.body.toString()) as { manifests: Array<{ digest: string }> }).manifests;
  const manifests = listed.length > 0 ? listed.map((m) => m.digest) : [`${digest.replace(':', '-')}.sig`];
  for (const ref of manifests) {
    const m = await exchange(base, 'GET', `/v2/${repo}/manifests/${ref}`, { accept: GGCR_ACCEPT });
    exchanges.push(m);
    if (m.status !== 200) return { exchanges, failed: m, digest, blobs };
    const doc = JSON.parse(m.body.toString()) as { config: { digest: string }; layers: Array<{ digest: string }> };
    const wanted = listed.length > 0 ? doc.layers.slice(0, 1) : [doc.config, ...doc.layers];
    for (const d of wanted) {
      const b = await exchange(base, 'GET', `/v2/${repo}/blobs/${d.digest}`);
      exchanges.push(b);
      if (b.status !== 200 || sha256(b.body) !== d.digest) return { exchanges, failed: b, digest, blobs };
      blobs.set(d.digest, b.body);
    }
  }
  return { exchanges, digest, blobs };
}

/** The media types `helm pull` copies (helm pkg/registry/client.go Pull: allowedMediaTypes, without provenance). */
const HELM_ALLOWED = new Set([
  'application/vnd.oci.image.index.v1+json',
  'application/vnd.oci.image.manifest.v1+json',
  'application/vnd.cncf.helm.config.v1+json',
  'application/vnd.cncf.helm.chart.content.v1.tar+gzip',
  'application/tar+gzip',
]);

/** `helm pull oci://<host>/<repo> --version <tag>`: oras-go's Resolve (HEAD), Fetch by digest, then the chart's config and content blobs. */
export async function helmPull(base: string, repo: string, tag: string): Promise<ToolPull> {
  const exchanges: Exchange[] = [];
  const blobs = new Map<string, Buffer>();
  const head = await exchange(base, 'HEAD', `/v2/${repo}/manifests/${tag}`, { accept: ORAS_ACCEPT });
  exchanges.push(head);
  const mediaType = header(head, 'content-type')?.split(';')[0].trim();
  const digest = header(head, 'docker-content-digest');
  if (head.status !== 200 || mediaType === undefined || digest === undefined || header(head, 'content-length') === undefined) {
    return { exchanges, failed: head, tag, blobs };
  }
  const m = await exchange(base, 'GET', `/v2/${repo}/manifests/${digest}`, { accept: mediaType });
  exchanges.push(m);
  if (m.status !== 200 || header(m, 'content-type')?.split(';')[0].trim() !== mediaType || sha256(m.body) !== digest) {
    return { exchanges, failed: m, tag, digest, blobs };
  }
  const doc = JSON.parse(m.body.toString()) as { config: { mediaType: string; digest: string }; layers: Array<{ mediaType: string; digest: string }> };
  for (const d of [doc.config, ...doc.layers].filter((x) => HELM_ALLOWED.has(x.mediaType))) {
    const b = await exchange(base, 'GET', `/v2/${repo}/blobs/${d.digest}`);
    exchanges.push(b);
    if (b.status !== 200 || sha256(b.body) !== d.digest) return { exchanges, failed: b, tag, digest, manifest: m.body, blobs };
    blobs.set(d.digest, b.body);
  }
  return { exchanges, tag, digest, manifest: m.body, blobs };
}

/** The exchanges as lines, for assertion messages. */
export function describePull(p: ToolPull): string {
  return p.exchanges.map((e) => `${e.method} ${e.path} → ${e.status}${e.status >= 400 ? ` ${e.body.toString().slice(0, 300)}` : ''}`).join('\n');
}
