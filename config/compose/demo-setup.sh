#!/bin/sh
# The docker-compose demo's one-shot job (service demo-setup, image demo-tools.Dockerfile).
# Runs again on every `docker compose up`: the key pair is created only once; the images are
# pushed and signed again (a new layer timestamp gives them new digests, which are signed).
#
#   /keys   volume signing-key: cosign.key (encrypted with $COSIGN_PASSWORD) and cosign.pub
#   /trust  volume trust:       cosign.pub only, mounted read-only into sigil
# (CRANE, COSIGN, KEYS and TRUST may be overridden: test/unit/deploy-compose.test.ts runs
# this script with stand-ins for crane and cosign.)
#
# Result, in $REGISTRY (registry:5000):
#   demo/app:signed     signed with /keys/cosign.key           -> sigil serves it
#   demo/app:unsigned   no signature                           -> sigil: 403 DENIED
#   demo/app:other-key  signed with a throwaway key            -> sigil: 403 DENIED
set -eu
PATH="$PATH:/busybox" # crane's debug image keeps its shell tools there

CRANE=${CRANE:-/ko-app/crane}
COSIGN=${COSIGN:-/ko-app/cosign}
KEYS=${KEYS:-/keys}
TRUST=${TRUST:-/trust}
REGISTRY=${REGISTRY:-registry:5000}
REPO="$REGISTRY/demo/app"
REGISTRY_WAIT_SECONDS=60 # registry:2 answers within a second or two of starting
: "${COSIGN_PASSWORD:?COSIGN_PASSWORD must be set (it encrypts the demo key)}"

log() { printf 'demo-setup: %s\n' "$*" >&2; }

# 1. The registry is up when its catalog answers.
waited=0
until "$CRANE" catalog --insecure "$REGISTRY" >/dev/null 2>&1; do
  waited=$((waited + 1))
  if [ "$waited" -ge "$REGISTRY_WAIT_SECONDS" ]; then
    log "registry $REGISTRY did not answer within ${REGISTRY_WAIT_SECONDS}s"
    exit 1
  fi
  sleep 1
done

# 2. The key pair, once. sigil gets the public key only.
if [ ! -f "$KEYS/cosign.key" ]; then
  log "generating the cosign key pair in $KEYS"
  (cd "$KEYS" && "$COSIGN" generate-key-pair)
fi
cp "$KEYS/cosign.pub" "$TRUST/cosign.pub.tmp"
chmod 0644 "$TRUST/cosign.pub.tmp"
mv "$TRUST/cosign.pub.tmp" "$TRUST/cosign.pub"

# 3. Three one-file images, for this machine's architecture (so `docker pull` takes them).
case "$(uname -m)" in
  x86_64 | amd64) arch=amd64 ;;
  aarch64 | arm64) arch=arm64 ;;
  *) arch=$(uname -m) ;;
esac
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

push_image() { # TAG TEXT: pushes $REPO:TAG holding /hello.txt = TEXT, prints its digest
  mkdir -p "$work/$1"
  printf '%s\n' "$2" >"$work/$1/hello.txt"
  tar -C "$work/$1" -cf "$work/$1.tar" hello.txt
  "$CRANE" append --insecure -f "$work/$1.tar" -t "$REPO:$1" >/dev/null
  "$CRANE" mutate --insecure "$REPO:$1" --set-platform "linux/$arch" -t "$REPO:$1" >/dev/null
  "$CRANE" digest --insecure "$REPO:$1"
}

signed=$(push_image signed "this image is signed with the demo key")
unsigned=$(push_image unsigned "this image carries no signature")
other=$(push_image other-key "this image is signed, but with a key sigil does not trust")

# 4. Signatures: cosign's classic layout (tag sha256-<hex>.sig beside the image), no Rekor
#    upload (the policy says tlog: ignore), plain HTTP to the demo registry. By digest, so the
#    signature names exactly what was pushed.
"$COSIGN" sign --yes --key "$KEYS/cosign.key" --tlog-upload=false --allow-http-registry "$REPO@$signed"

mkdir -p "$work/stranger"
(cd "$work/stranger" && COSIGN_PASSWORD=throwaway "$COSIGN" generate-key-pair)
COSIGN_PASSWORD=throwaway "$COSIGN" sign --yes --key "$work/stranger/cosign.key" --tlog-upload=false \
  --allow-http-registry "$REPO@$other"

log "pushed $REPO:signed    $signed (signed with $KEYS/cosign.key)"
log "pushed $REPO:unsigned  $unsigned (no signature)"
log "pushed $REPO:other-key $other (signed with a key sigil does not trust)"
log "done; sigil starts next and trusts $TRUST/cosign.pub"
