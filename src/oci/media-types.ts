export const MT = Object.freeze({
  OCI_MANIFEST: 'application/vnd.oci.image.manifest.v1+json',
  OCI_INDEX: 'application/vnd.oci.image.index.v1+json',
  DOCKER_MANIFEST: 'application/vnd.docker.distribution.manifest.v2+json',
  DOCKER_MANIFEST_LIST: 'application/vnd.docker.distribution.manifest.list.v2+json',
  OCI_EMPTY: 'application/vnd.oci.empty.v1+json',
  OCI_CONFIG: 'application/vnd.oci.image.config.v1+json',
  OCI_LAYER_TGZ: 'application/vnd.oci.image.layer.v1.tar+gzip',
  DOCKER_CONFIG: 'application/vnd.docker.container.image.v1+json',
  DOCKER_LAYER_TGZ: 'application/vnd.docker.image.rootfs.diff.tar.gzip',
  COSIGN_SIMPLESIGNING: 'application/vnd.dev.cosign.simplesigning.v1+json',
  SIGSTORE_BUNDLE_V03: 'application/vnd.dev.sigstore.bundle.v0.3+json',
});

/** What sigil asks upstreams for when the client sent no Accept. */
export const DEFAULT_MANIFEST_ACCEPT = [
  MT.OCI_INDEX,
  MT.OCI_MANIFEST,
  MT.DOCKER_MANIFEST_LIST,
  MT.DOCKER_MANIFEST,
].join(', ');

export const INDEX_MEDIA_TYPES: ReadonlySet<string> = new Set([MT.OCI_INDEX, MT.DOCKER_MANIFEST_LIST]);

/** The configs of images a runtime runs; any other config (Flux's, Helm's, OCI's empty one) makes the manifest an artifact. */
export const IMAGE_CONFIG_MEDIA_TYPES: ReadonlySet<string> = new Set([MT.OCI_CONFIG, MT.DOCKER_CONFIG]);
