#!/bin/sh
# `ktlsx probe` agrees with the booted kernel: exit 0 ("ktls: usable"),
# TLS 1.3 AES-128-GCM (and every other suite) in both directions, TLS 1.3
# re-key only on >= 6.14, handshake genl family as the kernel config says.
# kmod-timeout: 40
. "$KMOD_LIB"
. /suite/lib-ktlsx.sh

tests="ktlsx-probe ktlsx-probe-tls13-aes128gcm ktlsx-probe-ciphers ktlsx-probe-rekey ktlsx-probe-handshake-genl"
kx_ready $tests || exit 0

out=$(timeout 20 ktlsx probe 2>&1)
rc=$?
echo "$out"
line() { echo "$out" | grep "^$1:" | head -1; }

if [ "$rc" -eq 0 ] && [ "$(line ktls)" = "ktls: usable" ]; then
	pass ktlsx-probe
else
	fail ktlsx-probe "exit $rc, '$(line ktls)' (tls-ulp: '$(line tls-ulp)')"
fi

l=$(line tls13-aes-128-gcm)
info "probe: $l"
if [ "$l" = "tls13-aes-128-gcm: tx=yes rx=yes" ]; then
	pass ktlsx-probe-tls13-aes128gcm
else
	fail ktlsx-probe-tls13-aes128gcm "got '$l'"
fi

# every suite the engine offloads is in the kernel since 5.11 (ChaCha20)
bad=
for v in tls12 tls13; do
	for c in aes-128-gcm aes-256-gcm chacha20-poly1305; do
		l=$(line "$v-$c")
		[ "$l" = "$v-$c: tx=yes rx=yes" ] || bad="$bad '$l'"
	done
done
if [ -z "$bad" ]; then pass ktlsx-probe-ciphers; else fail ktlsx-probe-ciphers "not tx=yes rx=yes:$bad"; fi

l=$(line tls13-rekey)
info "probe: $l (kernel $KMOD_KERNEL)"
if kver_ge 6.14; then want=yes; else want=no; fi
case "$l" in
"tls13-rekey: $want"|"tls13-rekey: $want "*) pass ktlsx-probe-rekey ;;
*) fail ktlsx-probe-rekey "kernel $KMOD_KERNEL wants '$want', got '$l'" ;;
esac

l=$(line handshake-genl)
info "probe: $l"
hs=$(kconfig NET_HANDSHAKE)
if [ "$hs" = y ]; then want=yes; elif [ -z "$hs" ]; then want=no; else want=; fi
case "$want:$l" in
":"*) skip ktlsx-probe-handshake-genl "CONFIG_NET_HANDSHAKE=$hs (module): either answer is right" ;;
"yes:handshake-genl: yes"|"no:handshake-genl: no"*) pass ktlsx-probe-handshake-genl ;;
*) fail ktlsx-probe-handshake-genl "CONFIG_NET_HANDSHAKE=${hs:-unset} but '$l'" ;;
esac
exit 0
