# Apt access for kmod-tests/fetch-*.sh (sourced, not executed): the package
# sources are DERIVED at run time from the machine's own
# /etc/apt/sources.list.d/debian.sources (or /etc/apt/sources.list): the same
# archive URIs and keyrings with the Suites swapped.  No archive host name is
# written in this repository.  Needs LIST_MAX_AGE (seconds) and log().
# shellcheck shell=bash

# --- apt source derivation -------------------------------------------------

# write_sources DIR MAIN_SUITES SECURITY_SUITE
#   Copies the machine's deb822 sources, replacing the Suites: line of each
#   stanza: security stanzas get SECURITY_SUITE (dropped when empty), all
#   others get MAIN_SUITES.
write_sources() {
	local dir=$1 main=$2 sec=$3 src=${KTLSX_KMOD_SOURCES:-/etc/apt/sources.list.d/debian.sources}
	mkdir -p "$dir/sources"
	rm -f "$dir/sources/"*
	if [ -r "$src" ]; then
		awk -v main="$main" -v sec="$sec" '
			BEGIN { RS = ""; ORS = "\n\n" }
			{
				issec = ($0 ~ /Suites:[^\n]*-security/)
				if (issec && sec == "") next
				if (!match($0, /Types:[^\n]*/)) next
				t = " " substr($0, RSTART + 6, RLENGTH - 6) " "
				if (t !~ /[ \t]deb[ \t]/) next   # binary stanzas only
				sub(/Suites:[^\n]*/, "Suites: " (issec ? sec : main))
				sub(/Types:[^\n]*/, "Types: deb")
				print
			}' "$src" >"$dir/sources/derived.sources"
	elif [ -z "${KTLSX_KMOD_SOURCES:-}" ] && [ -r /etc/apt/sources.list ]; then
		# one-line format: deb [opts] URI suite comps...
		local line uri comps opts s
		while read -r line; do
			set -- $line
			[ "${1:-}" = deb ] || continue
			shift; opts=
			if [[ ${1:-} == \[* ]]; then
				while [[ $1 != *\] ]]; do opts+="$1 "; shift; done
				opts+="$1 "; shift
			fi
			uri=$1 s=$2; shift 2; comps="$*"
			if [[ $s == *-security* ]]; then
				[ -n "$sec" ] || continue
				echo "deb $opts$uri $sec $comps"
			else
				for x in $main; do echo "deb $opts$uri $x $comps"; done
			fi
		done </etc/apt/sources.list | sort -u >"$dir/sources/derived.list"
	else
		return 1
	fi
	mkdir -p "$dir/lists/partial" "$dir/cache/archives/partial"
}

APT_OPTS=()
apt_opts_for() {
	local dir=$1
	APT_OPTS=(-o "Dir::Etc::SourceList=/dev/null" -o "Dir::Etc::SourceParts=$dir/sources"
		-o "Dir::State::Lists=$dir/lists" -o "Dir::Cache=$dir/cache"
		-o "Dir::State::status=/dev/null" -o "APT::Sandbox::User=root"
		-o "Acquire::Retries=2" -o "Acquire::http::Timeout=30")
}

# apt_update DIR -> 0 if lists usable (fresh or refreshed)
apt_update() {
	local dir=$1 stamp=$1/lists/.updated now age
	now=$(date +%s)
	if [ -f "$stamp" ]; then
		age=$(( now - $(stat -c %Y "$stamp") ))
		[ "$age" -lt "$LIST_MAX_AGE" ] && return 0
	fi
	if timeout 300 apt-get "${APT_OPTS[@]}" -q update >"$dir/update.log" 2>&1 &&
		! grep -qE '^(W|E): Failed to fetch|^Err:' "$dir/update.log"; then
		touch "$stamp"
		return 0
	fi
	log "apt update failed for $(basename "$dir") (see $dir/update.log)"
	# stale lists are still better than nothing
	ls "$dir"/lists/*Packages* >/dev/null 2>&1
}
