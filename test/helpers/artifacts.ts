import { gzipSync } from 'node:zlib';
import { sha256 } from './digest.js';
import { pushBlob, pushManifest, tarFile, type PushTarget } from './push.js';

// Non-image artifacts written as the tools that make them write them (field order, config,
// annotations), for tests of sigil with what Flux, Helm and ORAS users push. Read from the
// tools' sources, not copied:
// - `flux push artifact`: fluxcd/pkg oci/push.go (an empty go-containerregistry image, config
//   media type and annotations set, one tar+gzip layer appended), oci/meta.go (annotations),
//   oci/globals.go (media types); go-containerregistry pkg/v1/manifest.go and config.go (JSON
//   field order). The config is what go-containerregistry up to v0.21.5 marshals for that
//   image (rootfs and history of the appended layer, zero times), as the CLI built on
//   fluxcd/pkg oci before v0.69 writes it (oci v0.69 sets `created` in it; go-containerregistry
//   v0.21.6 stops appending rootfs and history to a non-image config): only its bytes differ.
// - `helm push`: helm/helm pkg/registry/client.go (Push, tagManifest: no manifest mediaType
//   field, layers sorted by digest), chart.go (generateOCIAnnotations), constants.go;
//   image-spec specs-go/v1 Manifest and Descriptor (field order), pkg/chart Metadata (config).
// - `oras push --artifact-type` / `oras attach`: oras-go pack.go packManifestV1_1 (the empty
//   config descriptor with its `data`, a `created` annotation, `subject` for attach).
// Go's encoding/json sorts map keys (annotations) and writes struct fields in declaration order.

export const ARTIFACT_MEDIA = Object.freeze({
  OCI_MANIFEST: 'application/vnd.oci.image.manifest.v1+json',
  OCI_EMPTY: 'application/vnd.oci.empty.v1+json',
  FLUX_CONFIG: 'application/vnd.cncf.flux.config.v1+json',
  FLUX_CONTENT: 'application/vnd.cncf.flux.content.v1.tar+gzip',
  HELM_CONFIG: 'application/vnd.cncf.helm.config.v1+json',
  HELM_CHART: 'application/vnd.cncf.helm.chart.content.v1.tar+gzip',
});
export const OCI_ANNOTATION = Object.freeze({
  CREATED: 'org.opencontainers.image.created',
  SOURCE: 'org.opencontainers.image.source',
  REVISION: 'org.opencontainers.image.revision',
  TITLE: 'org.opencontainers.image.title',
  VERSION: 'org.opencontainers.image.version',
  DESCRIPTION: 'org.opencontainers.image.description',
});
const GO_ZERO_TIME = '0001-01-01T00:00:00Z';
const EMPTY_JSON = Buffer.from('{}');
const FIXED_CREATED = '2025-01-01T00:00:00Z';

/** What was pushed: the manifest as the registry holds it, and each blob's bytes by digest. */
export interface PushedArtifact {
  readonly digest: string;
  readonly manifest: Buffer;
  readonly mediaType: string;
  readonly config: { readonly digest: string; readonly size: number; readonly mediaType: string };
  readonly layers: ReadonlyArray<{ readonly digest: string; readonly size: number; readonly mediaType: string }>;
  readonly blobs: ReadonlyMap<string, Buffer>;
}

function sorted(r: Record<string, string>): Record<string, string> {
  return Object.fromEntries(Object.keys(r).sort().map((k) => [k, r[k]]));
}

async function push(
  t: PushTarget,
  repo: string,
  reference: string,
  doc: Record<string, unknown>,
  config: { bytes: Buffer; mediaType: string },
  layers: Array<{ bytes: Buffer; mediaType: string }>,
): Promise<PushedArtifact> {
  const blobs = new Map<string, Buffer>();
  for (const b of [config, ...layers]) blobs.set(await pushBlob(t, repo, b.bytes), b.bytes);
  const manifest = Buffer.from(JSON.stringify(doc), 'utf8');
  const digest = await pushManifest(t, repo, reference, manifest, ARTIFACT_MEDIA.OCI_MANIFEST);
  const d = (b: { bytes: Buffer; mediaType: string }) => ({ digest: sha256(b.bytes), size: b.bytes.length, mediaType: b.mediaType });
  return { digest, manifest, mediaType: ARTIFACT_MEDIA.OCI_MANIFEST, config: d(config), layers: layers.map(d), blobs };
}

export interface FluxArtifactOptions {
  /** The pushed directory's one file; default a Kubernetes manifest naming the tag. */
  file?: { path: string; content: string };
  /** `--source` and `--revision` (required by the CLI). */
  source?: string;
  revision?: string;
  /** RFC 3339; the CLI writes the push time (`--reproducible`: 1970-01-01T00:00:00Z). */
  created?: string;
  /** `--annotations k=v`. */
  annotations?: Record<string, string>;
}

/** `flux push artifact oci://<registry>/<repo>:<tag> --path=… --source=… --revision=…`. */
export async function pushFluxArtifact(t: PushTarget, repo: string, tag: string, opts: FluxArtifactOptions = {}): Promise<PushedArtifact> {
  const file = opts.file ?? { path: 'deploy/app.yaml', content: `apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: app\ndata:\n  tag: "${tag}"\n` };
  const tar = tarFile(file.path, Buffer.from(file.content));
  const layer = gzipSync(tar);
  const config = Buffer.from(
    JSON.stringify({
      architecture: '',
      created: GO_ZERO_TIME,
      history: [{ created: GO_ZERO_TIME }],
      os: '',
      rootfs: { type: 'layers', diff_ids: [sha256(tar)] },
      config: {},
    }),
  );
  const annotations = sorted({
    [OCI_ANNOTATION.CREATED]: opts.created ?? FIXED_CREATED,
    [OCI_ANNOTATION.SOURCE]: opts.source ?? 'https://github.com/acme/app',
    [OCI_ANNOTATION.REVISION]: opts.revision ?? `${tag}@sha1:${sha256(tag).slice(7, 47)}`,
    ...(opts.annotations ?? {}),
  });
  const doc = {
    schemaVersion: 2,
    mediaType: ARTIFACT_MEDIA.OCI_MANIFEST,
    config: { mediaType: ARTIFACT_MEDIA.FLUX_CONFIG, size: config.length, digest: sha256(config) },
    layers: [{ mediaType: ARTIFACT_MEDIA.FLUX_CONTENT, size: layer.length, digest: sha256(layer) }],
    annotations,
  };
  return push(t, repo, tag, doc, { bytes: config, mediaType: ARTIFACT_MEDIA.FLUX_CONFIG }, [{ bytes: layer, mediaType: ARTIFACT_MEDIA.FLUX_CONTENT }]);
}

export interface HelmChartOptions {
  description?: string;
  appVersion?: string;
  /** RFC 3339; `helm push` writes the push time. */
  created?: string;
}

/**
 * `helm push <name>-<version>.tgz oci://<registry>/<dir>`: the chart lands in `<dir>/<name>`
 * under the tag `<version>` with `+` written as `_` (a tag may not hold `+`).
 */
export async function pushHelmChart(t: PushTarget, dir: string, name: string, version: string, opts: HelmChartOptions = {}): Promise<PushedArtifact & { tag: string; repository: string }> {
  const description = opts.description ?? 'A Helm chart for Kubernetes';
  const appVersion = opts.appVersion ?? '1.16.0';
  const chartYaml = `apiVersion: v2\nname: ${name}\ndescription: ${description}\ntype: application\nversion: ${version}\nappVersion: "${appVersion}"\n`;
  const chart = gzipSync(tarFile(`${name}/Chart.yaml`, Buffer.from(chartYaml)));
  // chart.Metadata in struct order, empty fields omitted
  const config = Buffer.from(JSON.stringify({ name, version, description, apiVersion: 'v2', appVersion, type: 'application' }));
  const annotations = sorted({
    [OCI_ANNOTATION.DESCRIPTION]: description,
    [OCI_ANNOTATION.TITLE]: name,
    [OCI_ANNOTATION.VERSION]: version,
    [OCI_ANNOTATION.CREATED]: opts.created ?? FIXED_CREATED,
  });
  const doc = {
    schemaVersion: 2,
    config: { mediaType: ARTIFACT_MEDIA.HELM_CONFIG, digest: sha256(config), size: config.length },
    layers: [{ mediaType: ARTIFACT_MEDIA.HELM_CHART, digest: sha256(chart), size: chart.length }],
    annotations,
  };
  const repository = `${dir}/${name}`;
  const tag = version.replaceAll('+', '_');
  const pushed = await push(t, repository, tag, doc, { bytes: config, mediaType: ARTIFACT_MEDIA.HELM_CONFIG }, [{ bytes: chart, mediaType: ARTIFACT_MEDIA.HELM_CHART }]);
  return { ...pushed, tag, repository };
}

export interface OrasArtifactOptions {
  /** `--artifact-type` (required with the empty config). */
  artifactType: string;
  /** Files (`name:mediaType` on the command line): title, media type, content. */
  files: Array<{ name: string; mediaType: string; content: Buffer }>;
  /** `oras attach --artifact-type … <subject>`: the manifest it refers to. */
  subject?: { digest: string; size: number; mediaType: string };
  created?: string;
}

/** `oras push --artifact-type T <registry>/<repo>:<tag> file:type…` (or `oras attach` with a subject): an OCI 1.1 artifact with the empty config. */
export async function pushOrasArtifact(t: PushTarget, repo: string, reference: string | undefined, opts: OrasArtifactOptions): Promise<PushedArtifact> {
  const emptyConfig = { mediaType: ARTIFACT_MEDIA.OCI_EMPTY, digest: sha256(EMPTY_JSON), size: EMPTY_JSON.length, data: EMPTY_JSON.toString('base64') };
  const layers = opts.files.map((f) => ({ bytes: f.content, mediaType: f.mediaType, title: f.name }));
  const doc = {
    schemaVersion: 2,
    mediaType: ARTIFACT_MEDIA.OCI_MANIFEST,
    artifactType: opts.artifactType,
    config: emptyConfig,
    layers: layers.map((l) => ({ mediaType: l.mediaType, digest: sha256(l.bytes), size: l.bytes.length, annotations: { [OCI_ANNOTATION.TITLE]: l.title } })),
    ...(opts.subject ? { subject: { mediaType: opts.subject.mediaType, digest: opts.subject.digest, size: opts.subject.size } } : {}),
    annotations: { [OCI_ANNOTATION.CREATED]: opts.created ?? FIXED_CREATED },
  };
  const ref = reference ?? sha256(JSON.stringify(doc));
  return push(t, repo, ref, doc, { bytes: EMPTY_JSON, mediaType: ARTIFACT_MEDIA.OCI_EMPTY }, layers);
}
