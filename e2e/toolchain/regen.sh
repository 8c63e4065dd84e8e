#!/usr/bin/env bash
# Regenerates the replace directives of the toolchain wrapper modules from the
# upstream go.mod files they wrap, then runs `go mod tidy` in each wrapper.
#
#   kubernetes/  k8s.io/kubernetes replaces every staging module with a relative path
#                (./staging/src/k8s.io/X); here each maps to its published release
#                v0.<minor>.<patch>. sample-cli-plugin and sample-controller are not
#                published to the module proxy and are skipped.
#   etcd/        go.etcd.io/etcd/server/v3 replaces its sibling modules with relative
#                paths (../api, ...); here each maps to its release of the same tag.
#   gloo/        github.com/solo-io/gloo's replace block is copied as is, minus comments.
#
# The upstream versions default to the ones each wrapper currently requires; override
# them to bump: KUBERNETES_VERSION=v1.37.3 e2e/toolchain/regen.sh
# Uses the same module cache as the Makefile (CACHE, default ~/.cache/hostrouter).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cache=${CACHE:-$HOME/.cache/hostrouter}
export GOTOOLCHAIN=local GOFLAGS=-mod=mod CGO_ENABLED=0
export GOMODCACHE=${GOMODCACHE:-$cache/go/mod} GOCACHE=${GOCACHE:-$cache/go/build}

scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT

# required_version DIR MODULE: the version of MODULE that DIR/go.mod requires.
required_version() {
	(cd "$1" && go list -m -f '{{.Version}}' "$2")
}

# upstream_gomod MODULE@VERSION: path of that module's go.mod in the module cache.
upstream_gomod() {
	local path
	path=$(cd "$scratch" && go mod download -json "$1" | sed -n 's/^\t"GoMod": "\(.*\)",$/\1/p')
	[[ -n $path && -f $path ]] || { echo "regen: no go.mod downloaded for $1" >&2; exit 1; }
	printf '%s\n' "$path"
}

# replace_lines GOMOD: every "old => new" directive of GOMOD (block or single line),
# without comments, one per line.
replace_lines() {
	awk '
		/^replace \($/ { inblock = 1; next }
		inblock && /^\)/ { inblock = 0; next }
		inblock { sub(/\/\/.*/, ""); if ($0 ~ /=>/) { gsub(/^[ \t]+|[ \t]+$/, ""); print } ; next }
		/^replace [^(]/ { sub(/^replace /, ""); sub(/\/\/.*/, ""); gsub(/^[ \t]+|[ \t]+$/, ""); print }
	' "$1"
}

# rewrite DIR: replaces DIR/go.mod's replace directives with stdin's lines, then tidies.
rewrite() {
	local dir=$1 gomod=$1/go.mod lines
	lines=$(cat)
	[[ -n $lines ]] || { echo "regen: empty replace list for $dir" >&2; exit 1; }
	sed -i '/^replace (/,/^)/d; /^replace /d' "$gomod"
	# Drop trailing blank lines left behind, then append the new block.
	sed -i -e ':a' -e '/^\n*$/{$d;N;ba' -e '}' "$gomod"
	{
		printf '\nreplace (\n'
		printf '%s\n' "$lines" | sed 's/^/\t/'
		printf ')\n'
	} >>"$gomod"
	(cd "$dir" && go mod tidy)
	echo "regen: $gomod: $(printf '%s\n' "$lines" | wc -l) replace directives"
}

# --- kubernetes ---------------------------------------------------------------
k8s_version=${KUBERNETES_VERSION:-$(required_version "$here/kubernetes" k8s.io/kubernetes)}
staging_version=v0.${k8s_version#v1.}
(cd "$here/kubernetes" && go mod edit -require="k8s.io/kubernetes@$k8s_version")
replace_lines "$(upstream_gomod "k8s.io/kubernetes@$k8s_version")" |
	awk -v v="$staging_version" '
		$3 ~ /^\.\/staging\// && $1 != "k8s.io/sample-cli-plugin" && $1 != "k8s.io/sample-controller" {
			print $1 " => " $1 " " v
		}' |
	rewrite "$here/kubernetes"

# --- etcd ---------------------------------------------------------------------
etcd_version=${ETCD_VERSION:-$(required_version "$here/etcd" go.etcd.io/etcd/server/v3)}
(cd "$here/etcd" && go mod edit -require="go.etcd.io/etcd/server/v3@$etcd_version")
replace_lines "$(upstream_gomod "go.etcd.io/etcd/server/v3@$etcd_version")" |
	awk -v v="$etcd_version" '$3 ~ /^\.\.\// { print $1 " => " $1 " " v }' |
	rewrite "$here/etcd"

# --- gloo ---------------------------------------------------------------------
gloo_version=${GLOO_VERSION:-$(required_version "$here/gloo" github.com/solo-io/gloo)}
(cd "$here/gloo" && go mod edit -require="github.com/solo-io/gloo@$gloo_version")
replace_lines "$(upstream_gomod "github.com/solo-io/gloo@$gloo_version")" |
	rewrite "$here/gloo"
