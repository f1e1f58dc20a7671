#!/bin/sh
# Makes the files the kustomization turns into the Secret sigil-tls (without them,
# `kubectl apply -k` stops and names the missing file, instead of pods waiting in
# ContainerCreating for a Secret that does not exist):
#
#   config/kubernetes/tls/generate.sh 10.96.0.50 sigil.internal.example
#
# ADDRESS: each IP address or DNS name the nodes reach sigil at (the Service's fixed
# clusterIP, a load balancer's name; see 40-service.yaml). The certificate also names
# sigil.sigil.svc, which the ServiceMonitor checks when Prometheus scrapes the pods.
#
# Writes, next to this script:
#   ca.crt, ca.key    a private CA, made on the first run and kept (ca.key never leaves this
#                     directory). Install ca.crt on every node: hosts.toml `ca = ...`
#                     (docs/DEPLOY.md, "Kubernetes").
#   tls.crt, tls.key  sigil's certificate, signed by that CA, valid DAYS (default 365).
# Run it again to renew the certificate or change its addresses: the CA stays, so the
# nodes need nothing new. Then `kubectl apply -k config/kubernetes`.
# With cert-manager instead: delete the secretGenerator from kustomization.yaml and issue a
# Certificate into the Secret sigil-tls (it writes tls.crt, tls.key and ca.crt the same way).
set -eu
usage() { echo "usage: $0 ADDRESS... (the IPs and DNS names the nodes reach sigil at); DAYS=365 by default" >&2; exit 2; }
[ $# -ge 1 ] || usage
days=${DAYS:-365}
case "$days" in '' | *[!0-9]*) echo "$0: DAYS must be a number of days, got '$days'" >&2; exit 2 ;; esac

san="DNS:sigil.sigil.svc"
for a in "$@"; do
  case "$a" in
    *:*) san="$san,IP:$a" ;;                                      # IPv6
    *[!0-9.]*)
      case "$a" in *[!a-zA-Z0-9.-]* | .* | -*) echo "$0: '$a' is neither an IP address nor a DNS name" >&2; exit 2 ;; esac
      san="$san,DNS:$a" ;;
    *) san="$san,IP:$a" ;;                                        # IPv4
  esac
done

dir=$(CDPATH='' cd -- "$(dirname -- "$0")" && pwd)
umask 077
if [ ! -f "$dir/ca.key" ]; then
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 3650 \
    -subj "/CN=sigil CA" -keyout "$dir/ca.key" -out "$dir/ca.crt" \
    -addext "basicConstraints=critical,CA:TRUE,pathlen:0" -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
  echo "made a CA: $dir/ca.crt (install it on every node), $dir/ca.key (keep it here)"
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
printf 'subjectAltName=%s\nbasicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n' "$san" > "$work/ext"
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj "/CN=sigil" \
  -keyout "$work/tls.key" -out "$work/tls.csr" 2>/dev/null
openssl x509 -req -in "$work/tls.csr" -CA "$dir/ca.crt" -CAkey "$dir/ca.key" -set_serial "0x$(openssl rand -hex 16)" \
  -days "$days" -extfile "$work/ext" -out "$work/tls.crt" 2>/dev/null
mv "$work/tls.key" "$dir/tls.key"
mv "$work/tls.crt" "$dir/tls.crt"
chmod 644 "$dir/tls.crt" "$dir/ca.crt"
echo "made $dir/tls.crt for $san, valid $days days"
