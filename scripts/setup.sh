#!/bin/sh
# One-time set-up on a fresh Debian/Ubuntu machine: Node 24 (when the local node
# is older than 22), the Debian packages the tests use as real peers
# (distribution registry, containerd, skopeo, podman, redis-server), npm dependencies, and a build.
set -e
cd "$(dirname -- "$0")/.."
need=""
# npm (any version) is only needed to fetch Node 24 and the dependencies: Debian's will do.
for pair in npm:npm docker-registry:docker-registry containerd:containerd skopeo:skopeo podman:podman ctr:containerd openssl:openssl setpriv:util-linux redis-server:redis-server; do
  cmd=${pair%%:*}; pkg=${pair#*:}
  command -v "$cmd" >/dev/null 2>&1 || need="$need $pkg"
done
if [ -n "$need" ]; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $need
fi
node24=$(scripts/node -p 'process.execPath')
echo "setup: using node $("$node24" --version) at $node24"
PATH="$(dirname "$node24"):$PATH" npm ci --no-audit --no-fund
PATH="$(dirname "$node24"):$PATH" npm run build
