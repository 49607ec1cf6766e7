#!/bin/sh
# Kernel capabilities: tls module, tls_stat, crypto drivers, handshake genl.
# kmod-timeout: 60
. "$KMOD_LIB"

info "kernel $(uname -r) ($(uname -v))"

if [ "$(kconfig TLS)" = "" ]; then
	fail tls-module "CONFIG_TLS not set in $KMOD_CONFIG"
elif modprobe tls && [ -d /sys/module/tls ] && [ -r /proc/net/tls_stat ]; then
	pass tls-module
	info "tls_stat: $(awk '{printf "%s=%s ", $1, $2}' /proc/net/tls_stat)"
else
	cat /tmp/modprobe-tls.log 2>/dev/null
	fail tls-module "modprobe tls failed or /proc/net/tls_stat missing"
fi

# AES-GCM through AES-NI (crypto_simd/cryptd deps must resolve via modules.dep;
# with plain insmod the kernel silently falls back to generic gcm)
modprobe aesni_intel 2>&1
modprobe gcm 2>&1
if ! grep -q -w aes /proc/cpuinfo; then
	skip aesni-gcm "CPU has no AES-NI"
elif grep -A3 '^name *: gcm(aes)' /proc/crypto | grep -q 'driver *: .*aesni'; then
	pass aesni-gcm
else
	grep -A3 '^name *: gcm(aes)' /proc/crypto
	lsmod
	fail aesni-gcm "gcm(aes) has no aesni driver after modprobe aesni_intel"
fi

# (a template: it shows in /proc/crypto only once instantiated)
if modprobe chacha20poly1305 2>&1 && [ -d /sys/module/chacha20poly1305 ]; then
	pass chacha20poly1305
else
	fail chacha20poly1305 "modprobe chacha20poly1305 failed"
fi

# in-kernel TLS handshake upcall (net/handshake, genl family "handshake")
hs=$(kconfig NET_HANDSHAKE)
if [ "$hs" = y ] || [ "$hs" = m ]; then
	[ "$hs" = m ] && modprobe handshake 2>&1
	if grep -q ' handshake_nl_accept_doit$' /proc/kallsyms 2>/dev/null ||
	   grep -q ' handshake_nl_accept_doit ' /proc/kallsyms 2>/dev/null; then
		pass handshake-genl
	else
		fail handshake-genl "CONFIG_NET_HANDSHAKE=$hs but handshake_nl_accept_doit not in /proc/kallsyms"
	fi
else
	skip handshake-genl "CONFIG_NET_HANDSHAKE not set in this kernel"
fi

# TLS 1.3 KeyUpdate (rekey) support arrived in 6.14
if kver_ge 6.14; then
	info "kernel >= 6.14: TLS 1.3 rekey expected"
fi
exit 0
