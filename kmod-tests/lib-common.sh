# Shared host-side helpers for kmod-tests/*.sh (sourced, not executed).
# shellcheck shell=bash

KMOD_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_DIR=$(cd "$KMOD_DIR/.." && pwd)

log() { printf '[kmod] %s\n' "$*" >&2; }
die() { printf '[kmod] error: %s\n' "$*" >&2; exit 1; }

# The download/unpack cache lives outside the clone so that fresh clones (CI)
# reuse it.  Override with KTLSX_CACHE; falls back to build/kmod-cache.
kmod_cache_dir() {
	local c=${KTLSX_CACHE:-/var/cache/ktlsx-kmod}
	if mkdir -p "$c" 2>/dev/null && [ -w "$c" ]; then
		printf '%s\n' "$c"
		return
	fi
	c="$REPO_DIR/build/kmod-cache"
	mkdir -p "$c" || die "cannot create cache dir $c"
	printf '%s\n' "$c"
}
