#!/usr/bin/env bash
# tests/certs/gen.sh OUTDIR — generate the ktlsx test PKI with the openssl CLI.
#
# Idempotent: when OUTDIR/.complete exists and is newer than this script
# nothing is done (fast path).  Files produced:
#   ca.pem ca.key                 root CA (ECDSA P-256, CN=ktlsx Test Root CA)
#   int.pem int.key               intermediate CA (ECDSA P-256), signed by the root
#   server-rsa.pem/.key           RSA-2048 leaf  \
#   server-ecdsa.pem/.key         P-256 leaf      > CN=localhost, SAN DNS:localhost,IP:127.0.0.1,
#   server-ed25519.pem/.key       Ed25519 leaf   /  issued by int; .pem = leaf + int (depth 2)
#   server-p521.pem/.key          P-521 leaf     \ the same, for ecdsa_secp521r1_sha512 and ed448
#   server-ed448.pem/.key         Ed448 leaf     /  (issue 13)
#   server-*-leaf.pem             the leaf alone
#   client.pem/.key               CN=ktlsx-client, EKU clientAuth, issued by int (+int in .pem)
#   expired.pem/.key              localhost leaf issued by the root, notAfter in the past
#   revoked.pem/.key              localhost leaf issued by the root, revoked
#                                 (expired, revoked, other: EKU serverAuth+clientAuth, so
#                                  they serve as bad server and bad client certificates)
#   crl.pem                       CRL of the root CA (lists revoked.pem)
#   crl-int.pem                   (empty) CRL of the intermediate, for checkers that want one per CA
#   crl-all.pem                   crl.pem + crl-int.pem
#   other-ca.pem other-ca.key     an unrelated root CA
#   other.pem/.key                localhost leaf issued by other-ca (self-contained, no chain)
#   wrongname.pem/.key            CN/SAN example.invalid, issued by int (+int in .pem)
#   ca-bundle.pem                 ca.pem + int.pem
set -euo pipefail

out=${1:?usage: gen.sh OUTDIR}
self=$(readlink -f "${BASH_SOURCE[0]}")
mkdir -p "$out"
out=$(cd "$out" && pwd)

if [[ -f $out/.complete && $out/.complete -nt $self ]]; then
  exit 0
fi

# Serialise concurrent runs into the same OUTDIR (e.g. parallel test scripts).
exec 9>"$out/.lock"
flock -w 120 9 || { echo "gen.sh: cannot lock $out/.lock" >&2; exit 1; }
if [[ -f $out/.complete && $out/.complete -nt $self ]]; then
  exit 0
fi

OPENSSL=${OPENSSL:-openssl}
tmp=$out/.work
rm -rf "$tmp" "$out/.complete"
mkdir -p "$tmp"

ossl() { # run openssl quietly, print its output only on failure
  local log=$tmp/openssl.log
  if ! timeout 60 "$OPENSSL" "$@" >"$log" 2>&1; then
    echo "gen.sh: openssl $* failed:" >&2
    cat "$log" >&2
    exit 1
  fi
}

genkey() { # genkey TYPE FILE
  case $1 in
    rsa)     ossl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$2" ;;
    ec)      ossl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -pkeyopt ec_param_enc:named_curve -out "$2" ;;
    ed25519) ossl genpkey -algorithm ED25519 -out "$2" ;;
    p521)    ossl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-521 -pkeyopt ec_param_enc:named_curve -out "$2" ;;
    ed448)   ossl genpkey -algorithm ED448 -out "$2" ;;
  esac
  chmod 600 "$2"
}

# Extension sections shared by every request/signing step.
cat >"$tmp/ext.cnf" <<'CNF'
[ v3_ca ]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always

[ v3_int ]
basicConstraints = critical, CA:TRUE, pathlen:0
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always

[ server_ec ]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = DNS:localhost, IP:127.0.0.1
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid

[ server_rsa ]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth
subjectAltName = DNS:localhost, IP:127.0.0.1
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid

[ client ]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = clientAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid

[ leaf_both ]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth, clientAuth
subjectAltName = DNS:localhost, IP:127.0.0.1
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid

[ wrongname ]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = DNS:example.invalid
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
CNF

# --- root CA (self-signed; `openssl ca` database for expired/revoked/CRL) ---
genkey ec "$tmp/ca.key"
ossl req -new -x509 -key "$tmp/ca.key" -out "$tmp/ca.pem" -days 3650 -sha256 \
  -subj "/O=ktlsx test/CN=ktlsx Test Root CA" \
  -config "$tmp/ext.cnf" -extensions v3_ca

mkdir -p "$tmp/db/new"
: >"$tmp/db/index.txt"
echo 1000 >"$tmp/db/serial"
echo 1000 >"$tmp/db/crlnumber"
cat >"$tmp/ca.cnf" <<CNF
[ ca ]
default_ca = root

[ root ]
dir = $tmp/db
database = \$dir/index.txt
new_certs_dir = \$dir/new
serial = \$dir/serial
crlnumber = \$dir/crlnumber
certificate = $tmp/ca.pem
private_key = $tmp/ca.key
default_md = sha256
default_days = 825
default_crl_days = 3650
policy = anything
unique_subject = no
copy_extensions = none
email_in_dn = no

[ anything ]
commonName = supplied
organizationName = optional

[ leaf_both ]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth, clientAuth
subjectAltName = DNS:localhost, IP:127.0.0.1
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid

[ crl_ext ]
authorityKeyIdentifier = keyid:always
CNF

# sign_x509 ISSUER_PREFIX CSR OUT EXT_SECTION [DAYS]
sign_x509() {
  ossl x509 -req -in "$2" -CA "$tmp/$1.pem" -CAkey "$tmp/$1.key" -CAcreateserial \
    -out "$3" -days "${5:-825}" -sha256 -extfile "$tmp/ext.cnf" -extensions "$4"
}
csr() { # csr KEY SUBJ OUT
  ossl req -new -key "$1" -subj "$2" -out "$3"
}

# --- intermediate CA ---
genkey ec "$tmp/int.key"
csr "$tmp/int.key" "/O=ktlsx test/CN=ktlsx Test Intermediate CA" "$tmp/int.csr"
sign_x509 ca "$tmp/int.csr" "$tmp/int.pem" v3_int 3650

# --- server leaves (issued by the intermediate) ---
for t in rsa ecdsa ed25519 p521 ed448; do
  case $t in rsa) kt=rsa ext=server_rsa ;; ecdsa) kt=ec ext=server_ec ;; *) kt=$t ext=server_ec ;; esac
  genkey $kt "$tmp/server-$t.key"
  csr "$tmp/server-$t.key" "/O=ktlsx test/CN=localhost" "$tmp/server-$t.csr"
  sign_x509 int "$tmp/server-$t.csr" "$tmp/server-$t-leaf.pem" $ext
  cat "$tmp/server-$t-leaf.pem" "$tmp/int.pem" >"$tmp/server-$t.pem"
done

# --- client (clientAuth) ---
genkey ec "$tmp/client.key"
csr "$tmp/client.key" "/O=ktlsx test/CN=ktlsx-client" "$tmp/client.csr"
sign_x509 int "$tmp/client.csr" "$tmp/client-leaf.pem" client
cat "$tmp/client-leaf.pem" "$tmp/int.pem" >"$tmp/client.pem"

# --- wrong name ---
genkey ec "$tmp/wrongname.key"
csr "$tmp/wrongname.key" "/O=ktlsx test/CN=example.invalid" "$tmp/wrongname.csr"
sign_x509 int "$tmp/wrongname.csr" "$tmp/wrongname-leaf.pem" wrongname
cat "$tmp/wrongname-leaf.pem" "$tmp/int.pem" >"$tmp/wrongname.pem"

# --- expired + revoked: issued directly by the root with `openssl ca` ---
genkey ec "$tmp/expired.key"
csr "$tmp/expired.key" "/O=ktlsx test/CN=localhost" "$tmp/expired.csr"
ossl ca -batch -config "$tmp/ca.cnf" -extensions leaf_both -notext \
  -startdate 20200101000000Z -enddate 20210101000000Z \
  -in "$tmp/expired.csr" -out "$tmp/expired.pem"

genkey ec "$tmp/revoked.key"
csr "$tmp/revoked.key" "/O=ktlsx test/CN=localhost" "$tmp/revoked.csr"
ossl ca -batch -config "$tmp/ca.cnf" -extensions leaf_both -notext -days 825 \
  -in "$tmp/revoked.csr" -out "$tmp/revoked.pem"
ossl ca -batch -config "$tmp/ca.cnf" -revoke "$tmp/revoked.pem" -crl_reason keyCompromise
ossl ca -batch -config "$tmp/ca.cnf" -gencrl -crlexts crl_ext -out "$tmp/crl.pem"

# Empty CRL for the intermediate (for verifiers with crl_check_all semantics).
sed -e "s#^certificate = .*#certificate = $tmp/int.pem#" \
    -e "s#^private_key = .*#private_key = $tmp/int.key#" \
    -e "s#^dir = .*#dir = $tmp/intdb#" "$tmp/ca.cnf" >"$tmp/int-ca.cnf"
mkdir -p "$tmp/intdb/new"; : >"$tmp/intdb/index.txt"; echo 1000 >"$tmp/intdb/serial"; echo 1000 >"$tmp/intdb/crlnumber"
ossl ca -batch -config "$tmp/int-ca.cnf" -gencrl -crlexts crl_ext -out "$tmp/crl-int.pem"
cat "$tmp/crl.pem" "$tmp/crl-int.pem" >"$tmp/crl-all.pem"

# --- unrelated CA + leaf ---
genkey ec "$tmp/other-ca.key"
ossl req -new -x509 -key "$tmp/other-ca.key" -out "$tmp/other-ca.pem" -days 3650 -sha256 \
  -subj "/O=unrelated/CN=Unrelated Root CA" -config "$tmp/ext.cnf" -extensions v3_ca
genkey ec "$tmp/other.key"
csr "$tmp/other.key" "/O=unrelated/CN=localhost" "$tmp/other.csr"
sign_x509 other-ca "$tmp/other.csr" "$tmp/other.pem" leaf_both

cat "$tmp/ca.pem" "$tmp/int.pem" >"$tmp/ca-bundle.pem"

# --- self-check: the chains must verify as intended ---
chk() { # chk EXPECT(ok|fail) ARGS...
  local want=$1; shift
  if timeout 20 "$OPENSSL" verify "$@" >"$tmp/verify.log" 2>&1; then got=ok; else got=fail; fi
  if [[ $got != "$want" ]]; then
    echo "gen.sh: self-check failed (wanted $want): openssl verify $*" >&2
    cat "$tmp/verify.log" >&2; exit 1
  fi
}
for t in rsa ecdsa ed25519 p521 ed448; do
  chk ok -CAfile "$tmp/ca.pem" -untrusted "$tmp/int.pem" -purpose sslserver -verify_hostname localhost -verify_ip 127.0.0.1 "$tmp/server-$t-leaf.pem"
done
chk ok   -CAfile "$tmp/ca.pem" -untrusted "$tmp/int.pem" -purpose sslclient "$tmp/client-leaf.pem"
chk fail -CAfile "$tmp/ca.pem" -untrusted "$tmp/int.pem" -verify_hostname localhost "$tmp/wrongname-leaf.pem"
chk fail -CAfile "$tmp/ca.pem" "$tmp/expired.pem"
chk ok   -CAfile "$tmp/ca.pem" "$tmp/revoked.pem"
chk fail -CAfile "$tmp/ca.pem" -CRLfile "$tmp/crl.pem" -crl_check "$tmp/revoked.pem"
chk fail -CAfile "$tmp/ca.pem" -untrusted "$tmp/int.pem" "$tmp/other.pem"

# --- publish ---
for f in ca ca-bundle int client client-leaf wrongname wrongname-leaf expired revoked \
         other-ca other crl crl-int crl-all \
         server-rsa server-ecdsa server-ed25519 server-rsa-leaf server-ecdsa-leaf server-ed25519-leaf \
         server-p521 server-ed448 server-p521-leaf server-ed448-leaf; do
  cp "$tmp/$f.pem" "$out/$f.pem"
done
for f in ca int client wrongname expired revoked other-ca other server-rsa server-ecdsa server-ed25519 \
         server-p521 server-ed448; do
  install -m 600 "$tmp/$f.key" "$out/$f.key"
done
rm -rf "$tmp"
touch "$out/.complete"
