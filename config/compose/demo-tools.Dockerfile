# The demo job's tools (docker-compose.yml, service demo-setup): crane and cosign with a shell.
#
# ghcr.io/sigstore/cosign/cosign is distroless (cosign at /ko-app/cosign, no shell), so its
# binary is added to crane's "debug" image, which has busybox (/busybox/sh) beside crane
# (/ko-app/crane). Both are static Go binaries. Pin by digest for anything but a demo.
# cosign stays on v2: v3 signs with a signing config that uploads to the public Rekor and
# Fulcio by default, while the demo signs offline (--tlog-upload=false).
ARG COSIGN_IMAGE=ghcr.io/sigstore/cosign/cosign:v2.4.1
ARG CRANE_IMAGE=gcr.io/go-containerregistry/crane:debug

FROM ${COSIGN_IMAGE} AS cosign

FROM ${CRANE_IMAGE}
COPY --from=cosign /ko-app/cosign /ko-app/cosign
ENTRYPOINT ["/busybox/sh"]
