#!/usr/bin/env bash
# The whole test suite: what CI runs (.ci/run) and what a newcomer runs.
# Installs what it needs on a fresh Debian machine; with CI=true a missing
# dependency is a failure, never a skip.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }
fail() { printf 'FAIL: %s\n' "$*" >&2; exit 1; }

# --- system packages -------------------------------------------------------
need_pkgs=()
command -v redis-server >/dev/null 2>&1 || need_pkgs+=(redis-server)
command -v protoc >/dev/null 2>&1 || need_pkgs+=(protobuf-compiler)
command -v grpc_python_plugin >/dev/null 2>&1 || need_pkgs+=(protobuf-compiler-grpc)
/usr/bin/python3 -c 'import grpc' >/dev/null 2>&1 || need_pkgs+=(python3-grpcio)
command -v docker-compose >/dev/null 2>&1 || need_pkgs+=(docker-compose)
command -v node >/dev/null 2>&1 || need_pkgs+=(nodejs)
command -v npm >/dev/null 2>&1 || need_pkgs+=(npm)
if ((${#need_pkgs[@]})); then
  step "installing ${need_pkgs[*]}"
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_pkgs[@]}" >/dev/null
  else
    fail "missing ${need_pkgs[*]}: install with 'sudo apt-get install -y ${need_pkgs[*]}'"
  fi
fi
for c in redis-server protoc grpc_python_plugin docker-compose node npm; do
  command -v "$c" >/dev/null 2>&1 || fail "$c is required by the tests (see the apt-get install line above)"
done
/usr/bin/python3 -c 'import grpc' || fail "python3-grpcio is required by the Python example worker"
export KUBECORD_REQUIRE_REDIS=1

step "npm ci (examples/node)"
(cd examples/node && npm ci --no-audit --no-fund --loglevel=error)

# --- Go tools, pinned in tools/go.mod ---------------------------------------
tool() { go tool -modfile=tools/go.mod "$@"; }
step "go mod verify / download"
go mod download
(cd tools && go mod download)
(cd deploy && go mod download)

step "go.mod is tidy"
go mod tidy -diff >/dev/null || fail "go.mod/go.sum are not tidy: run 'go mod tidy' and commit them"

step "gofmt"
unformatted=$(gofmt -l $(git ls-files '*.go' | grep -v '^gen/') 2>&1 || true)
[ -z "$unformatted" ] || fail "gofmt would change: $unformatted (run: gofmt -w <files>)"

step "go vet"
go vet ./...

step "buf lint / format"
tool buf lint
tool buf format --exit-code >/dev/null || fail "buf format would change proto files (run: go tool -modfile=tools/go.mod buf format -w)"

step "generated code is up to date"
tool buf generate
if [ -n "$(git status --porcelain -- gen/)" ]; then
  git status --porcelain -- gen/ >&2
  fail "gen/ is stale: run 'go tool -modfile=tools/go.mod buf generate' and commit gen/"
fi

step "golangci-lint"
tool golangci-lint run ./...

step "go test -race"
go test -race -count=1 -timeout 20m ./...

step "deploy files (module deploy/: strict Kubernetes decoding, compose, stacks run as processes)"
(cd deploy && go vet ./... && go tool -modfile=../tools/go.mod golangci-lint run ./... && go test -race -count=1 -timeout 10m ./...)
