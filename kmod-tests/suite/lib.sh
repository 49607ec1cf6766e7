# Helpers for kmod-tests suite scripts.  Source it first:
#     . "$KMOD_LIB"
# (busybox sh inside the test VM; see kmod-tests/README.md.)
#
# Reporting (each call prints exactly one result line on the console):
#   pass NAME             KMOD-RESULT pass <kernel> NAME
#   fail NAME REASON...   KMOD-RESULT fail <kernel> NAME REASON
#   skip NAME REASON...   KMOD-RESULT skip <kernel> NAME REASON
#   info TEXT...          KMOD-INFO <kernel> TEXT   (not a result)
# NAME must not contain spaces.  Other output of a script goes to its log,
# which the VM prints (as KMOD-LOG lines) when the script fails.
#
# Environment: KMOD_KERNEL (uname -r), KMOD_CERTS (dir), KMOD_CA, KMOD_CERT,
# KMOD_KEY (ECDSA P-256 for CN/SAN localhost, 127.0.0.1), KMOD_RSA_CERT,
# KMOD_RSA_KEY, KMOD_CONFIG (kernel .config), KTLSX_BIN_DIR (project
# binaries, also in PATH; libs in LD_LIBRARY_PATH).

_kmod_script=$(basename "$0" .sh)

_kmod_report() {
	_st=$1 _name=$2
	shift 2
	_line="KMOD-RESULT $_st $KMOD_KERNEL $_name${*:+ $*}"
	echo "$_line" >&3 2>/dev/null || echo "$_line"
	echo "$_st $_name $*" >>"${KMOD_RESULTS:-/tmp/kmod-results}"
	echo "$_st $_name $*" >>"${KMOD_RESULTS:-/tmp/kmod-results}.$_kmod_script"
	echo "== $_line"   # also into the script's own log
}
pass() { _kmod_report pass "$1"; }
fail() { _n=$1; shift; _kmod_report fail "$_n" "${*:-failed}"; }
skip() { _n=$1; shift; _kmod_report skip "$_n" "${*:-skipped}"; }
info() { echo "KMOD-INFO $KMOD_KERNEL $*" >&3 2>/dev/null || echo "KMOD-INFO $KMOD_KERNEL $*"; }

# kver_ge MAJOR.MINOR: running kernel >= that version
kver_ge() {
	_want_maj=${1%%.*} _want_min=${1#*.}
	_v=${KMOD_KERNEL%%-*}; _v=${_v%%+*}
	_maj=${_v%%.*} _rest=${_v#*.} _min=${_rest%%.*}
	[ "$_maj" -gt "$_want_maj" ] || { [ "$_maj" -eq "$_want_maj" ] && [ "$_min" -ge "$_want_min" ]; }
}

# kconfig NAME: value of CONFIG_NAME (y/m/...) or empty
kconfig() {
	[ -r "$KMOD_CONFIG" ] && sed -n "s/^CONFIG_$1=//p" "$KMOD_CONFIG" | head -1
}

# tls_stat COUNTER: value from /proc/net/tls_stat (0 if absent)
tls_stat() {
	awk -v k="$1" '$1 == k { print $2; f = 1 } END { if (!f) print 0 }' /proc/net/tls_stat 2>/dev/null || echo 0
}
# tls_stat_snapshot FILE / tls_stat_delta FILE COUNTER: counter rise since snapshot
# nginx_conf DIR WORKERS LOG-LEVEL LISTEN-LINE HTTP-LINES SERVER-LINES: DIR/nginx.conf, the one
# nginx configuration writer of the suites and the benchmarks.  WORKERS 1: a single process (no
# master); more: a master and that many workers (prefork).  HTTP-LINES go into the http block (sendfile,
# access_log, keep-alive), SERVER-LINES into the one server block (certificate, kTLS option, root,
# proxy_pass).  Start it with: nginx -p DIR -c DIR/nginx.conf -e DIR/logs/error.log
NGINX_TLS_CERT="ssl_certificate $KMOD_CERT; ssl_certificate_key $KMOD_KEY;"
nginx_conf() {
	_ngd=$1 _ngm=off
	[ "$2" -gt 1 ] && _ngm=on
	mkdir -p "$_ngd/logs" "$_ngd/tmp"
	cat >"$_ngd/nginx.conf" <<EOF
user root;
daemon off;
master_process $_ngm;
worker_processes $2;
pid $_ngd/nginx.pid;
error_log $_ngd/logs/error.log $3;
events { worker_connections 1024; }
http {
    client_body_temp_path $_ngd/tmp/body;
    proxy_temp_path $_ngd/tmp/proxy;
    fastcgi_temp_path $_ngd/tmp/fastcgi;
    uwsgi_temp_path $_ngd/tmp/uwsgi;
    scgi_temp_path $_ngd/tmp/scgi;
    $5
    server {
        $4
        $6
    }
}
EOF
}

tls_stat_snapshot() { cat /proc/net/tls_stat >"$1" 2>/dev/null || : >"$1"; }
tls_stat_delta() {
	_old=$(awk -v k="$2" '$1 == k { print $2; f = 1 } END { if (!f) print 0 }' "$1")
	echo $(( $(tls_stat "$2") - _old ))
}

# have CMD: command available
have() { command -v "$1" >/dev/null 2>&1; }

# wait_port PORT [SECS]: wait until something listens on TCP PORT
wait_port() {
	_p=$(printf '%04X' "$1") _i=0
	while [ "$_i" -lt $(( ${2:-10} * 10 )) ]; do
		# IPv4 or IPv6 (remote 0...0:0000) listener, state 0A
		grep -q -E ":$_p 0+:0000 0A" /proc/net/tcp /proc/net/tcp6 2>/dev/null && return 0
		sleep 0.1
		_i=$((_i + 1))
	done
	return 1
}

# bg CMD...: start CMD in the background; killed when the script exits.
# The pid is in $BG_PID.
_kmod_bg_pids=
bg() {
	"$@" &
	BG_PID=$!
	_kmod_bg_pids="$_kmod_bg_pids $BG_PID"
}
_kmod_cleanup() {
	for _p in $_kmod_bg_pids; do kill "$_p" 2>/dev/null; done
	sleep 0.2
	for _p in $_kmod_bg_pids; do kill -9 "$_p" 2>/dev/null; done
	_kmod_bg_pids=
}
trap '_kmod_cleanup' EXIT
trap '_kmod_cleanup; exit 143' TERM INT

# tmp dir for this script
KMOD_TMP=/tmp/$_kmod_script
mkdir -p "$KMOD_TMP"
