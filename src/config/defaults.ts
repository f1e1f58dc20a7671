/**
 * The built-in configuration, used when neither --config, $SIGIL_CONFIG nor
 * config/sigil.yaml exists (CONTRACT.md "Config lookup order"), so that
 * `sigil serve` works out of the box: public upstreams, every image in `warn`
 * mode. It goes through the same parse → validate → compile path as a file.
 * `config/sigil.yaml` holds the same content with comments; a unit test checks
 * that both compile to the same policies and upstreams, without warnings.
 */

/** The `source` of a config that came from `DEFAULT_CONFIG_YAML`. */
export const BUILT_IN_SOURCE = 'built-in default';

export const DEFAULT_CONFIG_YAML = `\
server:
  listen: 0.0.0.0:5000
  logLevel: info
upstreams:
  - name: docker.io
    url: https://registry-1.docker.io
  - name: ghcr.io
    url: https://ghcr.io
  - name: quay.io
    url: https://quay.io
  - name: registry.k8s.io
    url: https://registry.k8s.io
  - name: gcr.io
    url: https://gcr.io
  - name: public.ecr.aws
    url: https://public.ecr.aws
defaultUpstream: docker.io
trust:
  trustedRoot: [public-good]
policies:
  - name: default-warn
    match: ["**"]
    mode: warn
    authorities:
      - keyless:
          issuerRegExp: ^.*$
          subjectRegExp: ^.*$
`;
