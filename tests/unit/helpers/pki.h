/* Test PKI generated at test start with the openssl CLI into a mkdtemp
 * directory (never stale, no key material checked in).  Header-only: every
 * tests/unit/test_*.c is one program, so helpers are #included.
 *
 * Files (kxt_pki_path(name)):
 *   ca.pem                      root CA (ECDSA P-256)
 *   int.pem                     intermediate CA, signed by the root
 *   server-rsa.pem/.key         RSA-2048 leaf   \  CN=localhost, SAN DNS:localhost,IP:127.0.0.1,
 *   server-ecdsa.pem/.key       ECDSA P-256 leaf >  issued by int; .pem = leaf + int
 *   server-ed25519.pem/.key     Ed25519 leaf    /
 *   server-p521.pem/.key        ECDSA P-521 leaf \ the same, for secp521r1 / Ed448 (conf-b)
 *   server-ed448.pem/.key       Ed448 leaf       /
 *   client.pem/.key             CN=ktlsx-client, EKU clientAuth, issued by int (+ int)
 *   other-ca.pem                an unrelated root CA
 *   other.pem/.key              localhost leaf issued by other-ca
 *   vhost-a.pem/.key            ECDSA leaf for DNS:a.example \ virtual hosts (test_hooks.c),
 *   vhost-b.pem/.key            ECDSA leaf for DNS:b.example / issued by int; .pem = leaf + int */
#ifndef KXT_HELPERS_PKI_H
#define KXT_HELPERS_PKI_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define KXT_UNUSED __attribute__((unused))

static char kxt_pki_dir[] = "/tmp/kxt_pki_XXXXXX";
static int kxt_pki_created;

static const char kxt_pki_script[] =
    "set -e\n"
    "cat > ext.cnf <<'CNF'\n"
    "[ v3_ca ]\n"
    "basicConstraints = critical, CA:TRUE\n"
    "keyUsage = critical, keyCertSign, cRLSign\n"
    "subjectKeyIdentifier = hash\n"
    "authorityKeyIdentifier = keyid:always\n"
    "[ v3_int ]\n"
    "basicConstraints = critical, CA:TRUE, pathlen:0\n"
    "keyUsage = critical, keyCertSign, cRLSign\n"
    "subjectKeyIdentifier = hash\n"
    "authorityKeyIdentifier = keyid:always\n"
    "[ server_ec ]\n"
    "basicConstraints = critical, CA:FALSE\n"
    "keyUsage = critical, digitalSignature\n"
    "extendedKeyUsage = serverAuth\n"
    "subjectAltName = DNS:localhost, IP:127.0.0.1\n"
    "[ server_rsa ]\n"
    "basicConstraints = critical, CA:FALSE\n"
    "keyUsage = critical, digitalSignature, keyEncipherment\n"
    "extendedKeyUsage = serverAuth\n"
    "subjectAltName = DNS:localhost, IP:127.0.0.1\n"
    "[ client ]\n"
    "basicConstraints = critical, CA:FALSE\n"
    "keyUsage = critical, digitalSignature\n"
    "extendedKeyUsage = clientAuth\n"
    "[ leaf_both ]\n"
    "basicConstraints = critical, CA:FALSE\n"
    "keyUsage = critical, digitalSignature\n"
    "extendedKeyUsage = serverAuth, clientAuth\n"
    "subjectAltName = DNS:localhost, IP:127.0.0.1\n"
    "[ vhost_a ]\n"
    "basicConstraints = critical, CA:FALSE\n"
    "keyUsage = critical, digitalSignature\n"
    "extendedKeyUsage = serverAuth\n"
    "subjectAltName = DNS:a.example\n"
    "[ vhost_b ]\n"
    "basicConstraints = critical, CA:FALSE\n"
    "keyUsage = critical, digitalSignature\n"
    "extendedKeyUsage = serverAuth\n"
    "subjectAltName = DNS:b.example\n"
    "CNF\n"
    "ec() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -pkeyopt ec_param_enc:named_curve -out \"$1\"; }\n"
    "sign() { openssl x509 -req -in \"$2\" -CA \"$1.pem\" -CAkey \"$1.key\" -CAcreateserial -out \"$3\" -days 30 -sha256 -extfile ext.cnf -extensions \"$4\"; }\n"
    "ec ca.key\n"
    "openssl req -new -x509 -key ca.key -out ca.pem -days 30 -sha256 -subj '/O=ktlsx test/CN=ktlsx Unit Root CA' -config ext.cnf -extensions v3_ca\n"
    "ec int.key\n"
    "openssl req -new -key int.key -subj '/O=ktlsx test/CN=ktlsx Unit Intermediate CA' -out int.csr\n"
    "sign ca int.csr int.pem v3_int\n"
    "openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out server-rsa.key\n"
    "ec server-ecdsa.key\n"
    "openssl genpkey -algorithm ED25519 -out server-ed25519.key\n"
    "openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-521 -pkeyopt ec_param_enc:named_curve -out server-p521.key\n"
    "openssl genpkey -algorithm ED448 -out server-ed448.key\n"
    "for t in rsa ecdsa ed25519 p521 ed448; do\n"
    "  ext=server_ec; [ $t = rsa ] && ext=server_rsa\n"
    "  openssl req -new -key server-$t.key -subj '/O=ktlsx test/CN=localhost' -out server-$t.csr\n"
    "  sign int server-$t.csr server-$t-leaf.pem $ext\n"
    "  cat server-$t-leaf.pem int.pem > server-$t.pem\n"
    "done\n"
    "ec client.key\n"
    "openssl req -new -key client.key -subj '/O=ktlsx test/CN=ktlsx-client' -out client.csr\n"
    "sign int client.csr client-leaf.pem client\n"
    "cat client-leaf.pem int.pem > client.pem\n"
    "ec other-ca.key\n"
    "openssl req -new -x509 -key other-ca.key -out other-ca.pem -days 30 -sha256 -subj '/O=unrelated/CN=Unrelated Root CA' -config ext.cnf -extensions v3_ca\n"
    "ec other.key\n"
    "openssl req -new -key other.key -subj '/O=unrelated/CN=localhost' -out other.csr\n"
    "sign other-ca other.csr other.pem leaf_both\n"
    "for v in a b; do\n"
    "  ec vhost-$v.key\n"
    "  openssl req -new -key vhost-$v.key -subj \"/O=ktlsx test/CN=$v.example\" -out vhost-$v.csr\n"
    "  sign int vhost-$v.csr vhost-$v-leaf.pem vhost_$v\n"
    "  cat vhost-$v-leaf.pem int.pem > vhost-$v.pem\n"
    "done\n"
    "openssl verify -CAfile ca.pem -untrusted int.pem -purpose sslserver server-rsa-leaf.pem server-ecdsa-leaf.pem server-ed25519-leaf.pem server-p521-leaf.pem server-ed448-leaf.pem\n"
    "openssl verify -CAfile ca.pem -untrusted int.pem -purpose sslclient client-leaf.pem\n";

/* A path inside the PKI directory (a small ring so one call can use several). */
KXT_UNUSED static const char *kxt_pki_path(const char *name)
{
    static char bufs[8][512];
    static unsigned next;
    char *b = bufs[next++ % 8];
    snprintf(b, sizeof bufs[0], "%s/%s", kxt_pki_dir, name);
    return b;
}

KXT_UNUSED static int kxt_pki_setup(void)
{
    if (mkdtemp(kxt_pki_dir) == NULL) {
        perror("mkdtemp");
        return -1;
    }
    kxt_pki_created = 1;
    FILE *f = fopen(kxt_pki_path("gen.sh"), "w");
    if (!f) return -1;
    fwrite(kxt_pki_script, 1, sizeof kxt_pki_script - 1, f);
    if (fclose(f) != 0) return -1;
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "cd '%s' && sh gen.sh > gen.log 2>&1", kxt_pki_dir);
    if (system(cmd) != 0) {
        fprintf(stderr, "certificate generation failed; see %s/gen.log\n", kxt_pki_dir);
        return -1;
    }
    return 0;
}

KXT_UNUSED static void kxt_pki_cleanup(void)
{
    if (!kxt_pki_created) return;
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", kxt_pki_dir);
    if (system(cmd) != 0) fprintf(stderr, "cannot remove %s\n", kxt_pki_dir);
}

/* cmocka group fixtures for a test program whose tests share the PKI. */
KXT_UNUSED static int kxt_pki_group_setup(void **state)
{
    (void)state;
    return kxt_pki_setup();
}

KXT_UNUSED static int kxt_pki_group_teardown(void **state)
{
    (void)state;
    kxt_pki_cleanup();
    return 0;
}

#endif
