#!/usr/bin/env bash
# tools/demo-certs.sh OUTDIR — throwaway CA and server certificate for `make run`.
# Produces OUTDIR/ca.pem, OUTDIR/server.pem (leaf + intermediate, CN=localhost,
# SAN DNS:localhost, IP:127.0.0.1, ECDSA P-256) and OUTDIR/server.key.
# Reuses tests/certs/gen.sh (the full test PKI lands in OUTDIR/pki); fast when present.
set -euo pipefail
out=${1:?usage: demo-certs.sh OUTDIR}
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
mkdir -p "$out"
"$root/tests/certs/gen.sh" "$out/pki"
for f in ca.pem:ca.pem server-ecdsa.pem:server.pem server-ecdsa.key:server.key; do
  src=$out/pki/${f%%:*} dst=$out/${f##*:}
  if [[ ! -f $dst || $src -nt $dst ]]; then
    install -m "$([[ $dst == *.key ]] && echo 600 || echo 644)" "$src" "$dst"
  fi
done
