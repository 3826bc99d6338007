#!/usr/bin/env bash
# Installs the pinned protobuf tools and regenerates the Go code beside the .proto files.
#   scripts/gen.sh          regenerate
#   scripts/gen.sh --check  regenerate into a temporary copy and fail if the committed code is stale
set -euo pipefail
cd "$(dirname "$0")/.."

BUF_VERSION=v1.75.0
PROTOC_GEN_GO_VERSION=v1.36.12
PROTOC_GEN_GO_GRPC_VERSION=v1.6.0

GOBIN="$(go env GOPATH)/bin"
export PATH="$GOBIN:$PATH"

need() { # need NAME PKG VERSION: install PKG@VERSION unless NAME already reports VERSION
  local name=$1 pkg=$2 version=$3
  if ! "$name" --version 2>/dev/null | grep -q "${version#v}"; then
    echo "installing $pkg@$version" >&2
    GOFLAGS='' go install "$pkg@$version"
  fi
}
need buf github.com/bufbuild/buf/cmd/buf "$BUF_VERSION"
need protoc-gen-go google.golang.org/protobuf/cmd/protoc-gen-go "$PROTOC_GEN_GO_VERSION"
need protoc-gen-go-grpc google.golang.org/grpc/cmd/protoc-gen-go-grpc "$PROTOC_GEN_GO_GRPC_VERSION"

buf lint

if [ "${1:-}" = "--check" ]; then
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  cp -r proto buf.yaml buf.gen.yaml "$tmp"/
  (cd "$tmp" && find proto -name "*.pb.go" -delete && buf generate)
  if ! diff -r proto "$tmp/proto" >/dev/null; then
    diff -r proto "$tmp/proto" | head -20 >&2
    echo "generated protobuf code is stale: run scripts/gen.sh and commit the result" >&2
    exit 1
  fi
  echo "generated protobuf code is fresh"
  exit 0
fi

find proto -name '*.pb.go' -delete
buf generate
