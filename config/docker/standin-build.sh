#!/bin/sh
# Builds the Dockerfile with buildah where node:24-bookworm and the distroless runtime base
# cannot be pulled (no route to Docker Hub / gcr.io), using stand-in base images assembled
# from this machine's own files, then runs the result with runc: read-only root filesystem,
# uid 65532, /tmp a tmpfs, the store a bind mount, and executes the image's HEALTHCHECK.
# It checks the Dockerfile's steps and the image's layout, not the real bases' contents.
#
#   sudo sh config/docker/standin-build.sh        # Debian 12: apt-get install buildah runc
#
# The stand-ins: "node:24-bookworm" = dash + a few coreutils + Node 24 (scripts/node's) + npm
# (the machine's) + CA certificates; "distroless nodejs24:nonroot" = Node 24 at
# /nodejs/bin/node + its shared libraries + CA certificates + /etc/passwd with nonroot
# (65532), user 65532. `npm ci` in the build stage needs the npm registry.
set -eu
cd "$(dirname -- "$0")/../.."
work=${WORK:-/tmp/sigil-standin-build}
port=${PORT:-15000}
BA="buildah --root $work/storage --runroot $work/run --storage-driver vfs"
node=$(scripts/node -p process.execPath)
npm_dir=$(dirname "$(dirname "$(readlink -f "$(command -v npm)")")")

rm -rf "$work/build" "$work/runtime" "$work/bundle" "$work/store"
mkdir -p "$work/build" "$work/runtime" "$work/bundle" "$work/store"

libs_into() { # ROOT FILE...: copies the shared libraries FILE... need under ROOT
  root=$1; shift
  for lib in $(for f in "$@"; do ldd "$f" | awk '/=>/ {print $3} /ld-linux/ && !/=>/ {print $1}'; done | sort -u); do
    mkdir -p "$root$(dirname "$lib")"
    cp -L "$lib" "$root$lib"
  done
  mkdir -p "$root/lib64"
  cp -L /lib64/ld-linux-x86-64.so.2 "$root/lib64/"
}

b=$work/build
tools="/bin/dash /usr/bin/dirname /usr/bin/readlink /usr/bin/mkdir /usr/bin/env /usr/bin/rm /usr/bin/cp /usr/bin/ls /usr/bin/cat"
libs_into "$b" "$node" $tools
mkdir -p "$b/bin" "$b/usr/bin" "$b/usr/local/bin" "$b/usr/local/lib/node_modules" "$b/etc/ssl/certs" "$b/tmp" "$b/root"
cp /bin/dash "$b/bin/sh"
for t in $tools; do cp "$t" "$b/usr/bin/"; done
cp "$node" "$b/usr/local/bin/node"
cp -r "$npm_dir" "$b/usr/local/lib/node_modules/npm"
ln -s ../lib/node_modules/npm/bin/npm-cli.js "$b/usr/local/bin/npm"
cp -L /etc/ssl/certs/ca-certificates.crt "$b/etc/ssl/certs/"
printf 'root:x:0:0:root:/root:/bin/sh\n' >"$b/etc/passwd"
printf 'root:x:0:\n' >"$b/etc/group"
chmod 1777 "$b/tmp"

r=$work/runtime
libs_into "$r" "$node"
mkdir -p "$r/nodejs/bin" "$r/etc/ssl/certs" "$r/tmp" "$r/home/nonroot"
cp "$node" "$r/nodejs/bin/node"
cp -L /etc/ssl/certs/ca-certificates.crt "$r/etc/ssl/certs/"
printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' >"$r/etc/passwd"
printf 'root:x:0:\nnonroot:x:65532:\n' >"$r/etc/group"
chmod 1777 "$r/tmp"
chown 65532:65532 "$r/home/nonroot"

c=$($BA from scratch)
$BA copy "$c" "$b/" / >/dev/null
# NODE_EXTRA_CA_CERTS: npm then trusts the machine's CAs (e.g. a TLS-inspecting egress proxy)
$BA config --env PATH=/usr/local/bin:/usr/bin:/bin --env NODE_EXTRA_CA_CERTS=/etc/ssl/certs/ca-certificates.crt "$c"
$BA commit -q "$c" localhost/standin-node:24-bookworm >/dev/null
$BA rm "$c" >/dev/null
c=$($BA from scratch)
$BA copy "$c" "$r/" / >/dev/null
$BA config --entrypoint '["/nodejs/bin/node"]' --user 65532:65532 --workingdir /home/nonroot "$c"
$BA commit -q "$c" localhost/standin-distroless-nodejs24:nonroot >/dev/null
$BA rm "$c" >/dev/null

# --format docker: the OCI image format has no HEALTHCHECK (buildah drops it with a warning)
$BA bud --format docker --network host \
  --build-arg BUILD_IMAGE=localhost/standin-node:24-bookworm \
  --build-arg RUNTIME_IMAGE=localhost/standin-distroless-nodejs24:nonroot \
  -t localhost/sigil:standin -f Dockerfile .

c=$($BA from localhost/sigil:standin)
rootfs=$($BA mount "$c")
cleanup() {
  runc delete -f sigil-standin >/dev/null 2>&1 || true
  $BA rm "$c" >/dev/null 2>&1 || true
}
trap cleanup EXIT
$BA inspect --type image localhost/sigil:standin >"$work/image.json"
field() { "$node" -e 'const c = JSON.parse(require("node:fs").readFileSync(process.argv[1], "utf8")).Docker.config; console.log(JSON.stringify(process.argv[2].split(".").reduce((o, k) => o[k], c)))' "$work/image.json" "$1"; }
entrypoint=$(field Entrypoint)
healthcheck=$(field Healthcheck.Test)
sed -e "s/listen: 0.0.0.0:5000/listen: 127.0.0.1:$port/" config/sigil.yaml >"$work/sigil.yaml"
chown 65532:65532 "$work/store"

cd "$work/bundle"
runc spec
ROOTFS=$rootfs WORK=$work ENTRYPOINT=$entrypoint "$node" -e '
  const fs = require("node:fs");
  const c = JSON.parse(fs.readFileSync("config.json", "utf8"));
  c.root = { path: process.env.ROOTFS, readonly: true };
  c.process.terminal = false;
  c.process.user = { uid: 65532, gid: 65532 };
  c.process.cwd = "/opt/sigil";
  c.process.args = [...JSON.parse(process.env.ENTRYPOINT), "serve"];
  c.process.env = ["PATH=/usr/bin:/bin", "NODE_ENV=production", "SIGIL_CONFIG=/etc/sigil/sigil.yaml"];
  c.linux.namespaces = c.linux.namespaces.filter((n) => n.type !== "network");
  c.mounts.push(
    { destination: "/tmp", type: "tmpfs", source: "tmpfs", options: ["nosuid", "nodev", "mode=1777"] },
    { destination: "/var/lib/sigil", type: "bind", source: `${process.env.WORK}/store`, options: ["rbind", "rw"] },
    { destination: "/etc/sigil/sigil.yaml", type: "bind", source: `${process.env.WORK}/sigil.yaml`, options: ["rbind", "ro"] },
  );
  fs.writeFileSync("config.json", JSON.stringify(c, null, 1));
'
runc run -d sigil-standin >"$work/sigil.log" 2>&1
sleep 2
# the HEALTHCHECK's command as Docker runs it (["CMD", argv...]), pointed at this port
if "$node" -e '
  const test = JSON.parse(process.argv[1]);
  const env = `SIGIL_HEALTHCHECK_URL=http://127.0.0.1:${process.argv[2]}/healthz`;
  const r = require("node:child_process").spawnSync("runc", ["exec", "--user", "65532:65532", "--env", env, "sigil-standin", ...test.slice(1)], { stdio: "inherit" });
  process.exit(test[0] === "CMD" && r.status === 0 ? 0 : 1);
' "$healthcheck" "$port"; then
  echo "standin-build: HEALTHCHECK passed"
else
  echo "standin-build: HEALTHCHECK failed" >&2
  cat "$work/sigil.log" >&2
  exit 1
fi
if runc exec --user 65532:65532 sigil-standin /nodejs/bin/node -e 'require("node:fs").writeFileSync("/opt/sigil/x", "")' 2>/dev/null; then
  echo "standin-build: the root filesystem is writable" >&2
  exit 1
fi
runc kill sigil-standin TERM
sleep 1
grep -q '"msg":"stopped"' "$work/sigil.log" && echo "standin-build: served, answered the healthcheck, stopped cleanly on SIGTERM"
