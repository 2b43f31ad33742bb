#!/bin/sh
# Run the go tool on this module offline, with Debian's Go packages only:
#   clients/go/go-offline.sh test ./...        clients/go/go-offline.sh build ./...
# 1. Generates the stubs (advantagev1/) from proto/advantage/v1/advantage.proto with protoc,
#    protoc-gen-go and protoc-gen-go-grpc.
# 2. Runs `go "$@"` in GOPATH mode (GO111MODULE=off): this module is linked into a private GOPATH
#    whose second entry is /usr/share/gocode, where golang-google-grpc-dev and
#    golang-google-protobuf-dev install their sources. No module download, no proxy.
# ADVANTAGE_GO_WORK: the private GOPATH's folder (default: a per-checkout one under $TMPDIR).
# ADVANTAGE_PROTO_DIR: the folder holding advantage/v1/advantage.proto (default: ../../proto).
set -eu
here=$(cd "$(dirname "$0")" && pwd -P)
module=github.com/advantage-service/advantage-service/clients/go
proto_dir=${ADVANTAGE_PROTO_DIR:-$here/../../proto}
for tool in go protoc protoc-gen-go protoc-gen-go-grpc; do
	if ! command -v "$tool" >/dev/null 2>&1; then
		echo "go-offline.sh: $tool not found; apt-get install -y golang-go protobuf-compiler" \
			"protoc-gen-go protoc-gen-go-grpc golang-google-grpc-dev golang-google-protobuf-dev" >&2
		exit 2
	fi
done
mapping="Madvantage/v1/advantage.proto=$module/advantagev1;advantagev1"
generated=$(mktemp -d)
trap 'rm -rf "$generated"' EXIT
protoc -I "$proto_dir" \
	--go_out="$generated" --go_opt="module=$module" --go_opt="$mapping" \
	--go-grpc_out="$generated" --go-grpc_opt="module=$module" --go-grpc_opt="$mapping" \
	advantage/v1/advantage.proto
mkdir -p "$here/advantagev1"
for file in "$generated"/advantagev1/*.go; do  # rewrite only what changed: go's cache stays valid
	cmp -s "$file" "$here/advantagev1/$(basename "$file")" || cp "$file" "$here/advantagev1/"
done
rm -rf "$generated"
trap - EXIT
work=${ADVANTAGE_GO_WORK:-${TMPDIR:-/tmp}/advantage-go-$(printf '%s' "$here" | cksum | cut -d' ' -f1)}
link="$work/gopath/src/$module"
mkdir -p "$(dirname "$link")"
ln -sfn "$here" "$link"
cd "$link"
if [ -z "${GOCACHE:-}" ] && [ -z "${HOME:-}" ] && [ -z "${XDG_CACHE_HOME:-}" ]; then
	export GOCACHE="$work/cache" # go needs a build cache; without HOME it has no default
fi
PWD="$link" GO111MODULE=off GOPATH="$work/gopath:/usr/share/gocode" GOPROXY=off GOFLAGS= \
	exec go "$@"
