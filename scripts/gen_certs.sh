#!/usr/bin/env bash
# Certificates and SuperNode keys for a TLS Flower deployment on this machine.
#
#   scripts/gen_certs.sh CERT_DIR [NUM_SUPERNODES] [HOSTNAMES]
#
# Writes (never overwrites: an existing CERT_DIR is an error):
#   CERT_DIR/ca.crt, ca.key             a self-signed CA (10 years)
#   CERT_DIR/server.pem, server.key     the SuperLink certificate, signed by the CA, with
#                                       SANs IP:127.0.0.1, DNS:localhost and HOSTNAMES
#                                       (comma-separated, e.g. "superlink,example.org")
#   CERT_DIR/supernodes/node-I.key(.pub) one ECDSA P-384 OpenSSH key pair per SuperNode
#                                       (what `flwr supernode register` and
#                                       `flower-supernode --auth-supernode-private-key` take)
# NUM_SUPERNODES defaults to 2; 0 writes no keys (TLS without SuperNode authentication).
# Used by `fl-sim cluster up --tls CERT_DIR`. Needs openssl and ssh-keygen.
set -euo pipefail

usage() { echo "usage: $0 CERT_DIR [NUM_SUPERNODES] [HOSTNAMES]" >&2; exit 2; }
[ $# -ge 1 ] && [ $# -le 3 ] || usage
dir=$1
n=${2:-2}
extra=${3:-}
[[ "$n" =~ ^[0-9]+$ ]] || { echo "$0: NUM_SUPERNODES must be a number, got '$n'" >&2; exit 2; }
for tool in openssl ssh-keygen; do
  command -v "$tool" >/dev/null || { echo "$0: $tool not found" >&2; exit 2; }
done
if [ -e "$dir" ] && [ -n "$(ls -A "$dir" 2>/dev/null)" ]; then
  echo "$0: $dir exists and is not empty; refusing to overwrite keys" >&2; exit 2
fi
mkdir -p "$dir/supernodes"
umask 077

san="IP:127.0.0.1,DNS:localhost"
if [ -n "$extra" ]; then
  IFS=',' read -ra names <<<"$extra"
  for h in "${names[@]}"; do san="$san,DNS:$h"; done
fi

openssl req -x509 -newkey rsa:3072 -nodes -days 3650 -subj "/CN=fl-sim local CA" \
  -keyout "$dir/ca.key" -out "$dir/ca.crt" \
  -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
  2>/dev/null
openssl req -newkey rsa:3072 -nodes -subj "/CN=localhost" \
  -keyout "$dir/server.key" -out "$dir/server.csr" 2>/dev/null
cat >"$dir/server.ext" <<EOF
basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=$san
EOF
openssl x509 -req -in "$dir/server.csr" -CA "$dir/ca.crt" -CAkey "$dir/ca.key" \
  -CAcreateserial -days 825 -sha256 -extfile "$dir/server.ext" -out "$dir/server.pem" 2>/dev/null
rm -f "$dir/server.csr" "$dir/server.ext" "$dir/ca.srl"
openssl verify -CAfile "$dir/ca.crt" "$dir/server.pem" >/dev/null

for ((i = 0; i < n; i++)); do
  ssh-keygen -q -t ecdsa -b 384 -N "" -C "fl-sim-supernode-$i" -f "$dir/supernodes/node-$i.key"
done
chmod 644 "$dir/ca.crt" "$dir/server.pem" "$dir"/supernodes/*.pub 2>/dev/null || true
echo "wrote CA, SuperLink certificate ($san) and $n SuperNode key pair(s) to $dir"
