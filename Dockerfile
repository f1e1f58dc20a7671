# syntax=docker/dockerfile:1
#
# sigil's container image.
#
#   docker build -t sigil:local .
#   docker run --rm -p 5000:5000 --read-only --tmpfs /tmp sigil:local        # built-in default config (warn)
#   docker run --rm -p 5000:5000 --read-only --tmpfs /tmp \
#     -v "$PWD/my-sigil.yaml:/etc/sigil/sigil.yaml:ro" -v sigil-store:/var/lib/sigil sigil:local
#   docker run --rm -v "$PWD/my-sigil.yaml:/etc/sigil/sigil.yaml:ro" sigil:local config check
#   docker run --rm sigil:local verify ghcr.io/acme/app:1.4.2
#
# Runtime base: gcr.io/distroless/nodejs24-debian12:nonroot. It holds Node 24, glibc, CA
# certificates and nothing else: no shell, no package manager, no npm, hence fewer CVEs to
# triage and nothing for an intruder to use. Its `nonroot` user is 65532. The consequences:
# bin/sigil (a sh script that picks a Node through scripts/node) cannot run here, so the
# entrypoint calls node on dist/src/main.js directly; and the HEALTHCHECK is a `node -e`
# script, as there is no curl. For a base with a shell, `node:24-bookworm-slim` works with the
# same layout once /nodejs/bin/node is replaced by /usr/local/bin/node in HEALTHCHECK and
# ENTRYPOINT (exec-form instructions expand no variables). Pin both bases by digest in production.
#
# Read-only root filesystem: sigil writes nothing but its content store (cache.store.dir,
# under the /var/lib/sigil volume); /tmp is left writable for Node itself (mount a tmpfs).
# The config is /etc/sigil/sigil.yaml ($SIGIL_CONFIG; a copy of config/sigil.yaml, the
# built-in default, until you mount yours). Relative paths in a config resolve against the
# working directory, /opt/sigil: use absolute paths (/etc/sigil/keys/..., /etc/sigil/tls/...).

ARG BUILD_IMAGE=node:24-bookworm
ARG RUNTIME_IMAGE=gcr.io/distroless/nodejs24-debian12:nonroot

FROM ${BUILD_IMAGE} AS build
ENV npm_config_audit=false npm_config_fund=false npm_config_update_notifier=false
WORKDIR /src
COPY package.json package-lock.json ./
RUN npm ci
COPY tsconfig.json ./
COPY scripts/node scripts/node
COPY src src
# Only src/ is in the build context (see .dockerignore), so tsc compiles sigil and nothing
# else (tsconfig.json also names test/ and bench/). Then the dev dependencies go.
RUN npm run build && npm prune --omit=dev
# The store volume's mount point, owned by the runtime user (the runtime base has no shell to mkdir/chown).
RUN mkdir -p /out/var/lib/sigil/store

FROM ${RUNTIME_IMAGE}
# Root while the files go in (the base's user is already 65532, and WORKDIR would create
# /opt/sigil for it): the runtime user must not be able to change sigil's code or config,
# read-only root filesystem or not.
USER 0:0
LABEL org.opencontainers.image.title="sigil" \
      org.opencontainers.image.description="OCI registry proxy that only lets signed images through" \
      org.opencontainers.image.licenses="Apache-2.0"
WORKDIR /opt/sigil
COPY --from=build /src/package.json ./package.json
COPY --from=build /src/node_modules ./node_modules
COPY --from=build /src/dist/src ./dist/src
COPY assets ./assets
COPY config/sigil.yaml /etc/sigil/sigil.yaml
COPY --from=build --chown=65532:65532 /out/var/lib/sigil /var/lib/sigil
ENV NODE_ENV=production SIGIL_CONFIG=/etc/sigil/sigil.yaml
USER 65532:65532
EXPOSE 5000
VOLUME ["/var/lib/sigil"]
# Liveness of the process on its default listener. With server.tls or another port, set
# SIGIL_HEALTHCHECK_URL (e.g. https://127.0.0.1:5443/healthz; the certificate is not checked:
# this only asks whether the process answers).
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
  CMD ["/nodejs/bin/node", "-e", "const u=new URL(process.env.SIGIL_HEALTHCHECK_URL||'http://127.0.0.1:5000/healthz');require(u.protocol==='https:'?'node:https':'node:http').get(u,{timeout:4000,rejectUnauthorized:false},(r)=>process.exit(r.statusCode===200?0:1)).on('timeout',function(){this.destroy(new Error('timeout'))}).on('error',()=>process.exit(1))"]
ENTRYPOINT ["/nodejs/bin/node", "/opt/sigil/dist/src/main.js"]
CMD ["serve"]
