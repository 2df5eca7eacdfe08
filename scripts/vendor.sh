#!/usr/bin/env bash
# scripts/vendor.sh - the pinned npm packages of the API docs, fetched into
# build/vendor/ (never committed) only when absent or pinned anew. Run by
# scripts/deps.sh after the Debian packages, which bring node and npm.
#
#   build/vendor/swagger-ui-dist/  the viewer nginx serves at /docs/ (one
#       tarball, checked against the sha256 pinned here: a new version
#       needs both lines changed)
#   build/vendor/redocly/          @redocly/cli, the linter of
#       make check-openapi: npm ci from scripts/npm/, whose lock file pins
#       every package it pulls in by its integrity hash
#
# Each lands in a temporary directory first and is renamed into place once
# complete, so an interrupted fetch never leaves a half-tree that looks
# present. STOA_VENDOR_DIR moves the destination (tests).
set -euo pipefail

readonly SWAGGER_UI_VERSION=5.35.0
readonly SWAGGER_UI_SHA256=1b8e891893404ea4c3558b6a87e2a3e494e7eedba41168c2ece5800a391a6ea6

repo=$(cd "$(dirname "$0")/.." && pwd)
vendor=${STOA_VENDOR_DIR:-$repo/build/vendor}
npm_dir=$repo/scripts/npm

die() {
  echo "vendor: $*" >&2
  exit 1
}

# What a vendored directory was made from, written last into it: a tree
# whose stamp differs (or is missing) is fetched again.
stamp_ok() {
  [[ -f $1/.stoa-pin && $(<"$1/.stoa-pin") == "$2" ]]
}

command -v npm >/dev/null || die "npm is missing (scripts/deps.sh installs it)"
mkdir -p "$vendor"
tmp=$(mktemp -d "$vendor/.fetch.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
# No telemetry, update checks or funding notes from npm.
export npm_config_audit=false npm_config_fund=false npm_config_update_notifier=false

swagger_pin="swagger-ui-dist $SWAGGER_UI_VERSION $SWAGGER_UI_SHA256"
if ! stamp_ok "$vendor/swagger-ui-dist" "$swagger_pin"; then
  echo "vendor: fetching swagger-ui-dist $SWAGGER_UI_VERSION"
  # npm pack only downloads the tarball: none of the package's own
  # dependencies or install scripts come with it.
  (cd "$tmp" && npm pack --silent "swagger-ui-dist@$SWAGGER_UI_VERSION" >/dev/null) ||
    die "npm pack swagger-ui-dist@$SWAGGER_UI_VERSION failed"
  tarball=$tmp/swagger-ui-dist-$SWAGGER_UI_VERSION.tgz
  echo "$SWAGGER_UI_SHA256  $tarball" | sha256sum -c --quiet - ||
    die "swagger-ui-dist-$SWAGGER_UI_VERSION.tgz does not have the pinned sha256"
  mkdir "$tmp/swagger"
  tar -xzf "$tarball" -C "$tmp/swagger" --strip-components=1 --no-same-owner
  printf '%s\n' "$swagger_pin" >"$tmp/swagger/.stoa-pin"
  rm -rf "$vendor/swagger-ui-dist"
  mv "$tmp/swagger" "$vendor/swagger-ui-dist"
fi

redocly_pin=$(cat "$npm_dir/package.json" "$npm_dir/package-lock.json" | sha256sum)
redocly_pin="redocly ${redocly_pin%% *}"
if ! stamp_ok "$vendor/redocly" "$redocly_pin"; then
  echo "vendor: installing @redocly/cli (scripts/npm/package-lock.json)"
  mkdir "$tmp/redocly"
  cp "$npm_dir/package.json" "$npm_dir/package-lock.json" "$tmp/redocly/"
  # No install scripts: the linter needs none, and none should run as root.
  (cd "$tmp/redocly" && npm ci --ignore-scripts --loglevel=error >/dev/null) ||
    die "npm ci of scripts/npm failed"
  [[ -x $tmp/redocly/node_modules/.bin/redocly ]] || die "npm ci left no redocly"
  printf '%s\n' "$redocly_pin" >"$tmp/redocly/.stoa-pin"
  rm -rf "$vendor/redocly"
  mv "$tmp/redocly" "$vendor/redocly"
fi
