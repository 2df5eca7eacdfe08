#!/usr/bin/env bash
# Installs the Debian packages stoa builds, tests and runs with, when any
# is missing. Idempotent and quiet when everything is present.
#
#   scripts/deps.sh          what make, make test and make run need
#   scripts/deps.sh bench    that, plus what the benchmarks alone need (the
#                            FastAPI and Go peers and their drivers)
#   scripts/deps.sh deploy   that, plus what make test-deploy needs
#
# Then the pinned npm packages of the API docs (scripts/vendor.sh), each
# only when absent.
set -euo pipefail

packages=(
  build-essential pkg-config ca-certificates curl openssl python3 python3-aiosmtpd
  libfcgi-dev libpq-dev libhiredis-dev libyajl-dev libcurl4-openssl-dev
  libssl-dev libargon2-dev libzxcvbn-dev check libsubunit-dev
  nginx nginx-dev libnginx-mod-nchan spawn-fcgi multiwatch
  postgresql-15 postgresql-client-15 redis-server pgbackrest
  wrk clang libclang-rt-14-dev clang-format
  ansible ansible-lint
  prometheus
  libjs-chart.js chromium chromium-driver python3-selenium
)
# Only make test-deploy uses these (the test hosts' roots and namespaces).
deploy_packages=(debootstrap iproute2 util-linux)
# Only the benchmarks use these: make test and make run never pull them in.
bench_packages=(
  python3-fastapi python3-uvicorn python3-uvloop python3-httptools
  python3-jwt python3-cryptography python3-redis python3-asyncpg
  golang-go golang-github-golang-jwt-jwt-dev golang-github-gomodule-redigo-dev
  golang-github-jackc-pgx-v4-dev
)
case ${1:-} in
'') ;;
bench) packages+=("${bench_packages[@]}") ;;
deploy) packages+=("${deploy_packages[@]}") ;;
*) echo "usage: $0 [bench|deploy]" >&2; exit 2 ;;
esac

# The API docs: PyYAML reads docs/openapi.yaml (gen-routes.py openapi);
# node and npm fetch and run the pinned npm packages. A node from elsewhere
# (with its own npm) is kept: Debian's npm would conflict with it.
packages+=(python3-yaml)
command -v npm >/dev/null || packages+=(nodejs npm)
vendor=$(dirname "$0")/vendor.sh

missing=()
for p in "${packages[@]}"; do
  status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
  [[ "$status" == "install ok installed" ]] || missing+=("$p")
done
[[ ${#missing[@]} -eq 0 ]] && exec "$vendor"

echo "deps: installing ${missing[*]}"
sudo=()
if [[ $(id -u) -ne 0 ]]; then
  command -v sudo >/dev/null || { echo "deps: run as root or install: ${missing[*]}" >&2; exit 1; }
  sudo=(sudo)
fi
export DEBIAN_FRONTEND=noninteractive
# Debian's postgresql and nginx packages try to start their own system
# services; stoa runs its own instances, so forbid service starts.
# (STOA_POLICY_RC moves it, for the test of this script only.)
policy=${STOA_POLICY_RC:-/usr/sbin/policy-rc.d}
created_policy=0
if [[ ! -e $policy ]]; then
  printf '#!/bin/sh\nexit 101\n' | "${sudo[@]}" tee $policy >/dev/null
  "${sudo[@]}" chmod 0755 $policy
  created_policy=1
fi
# The trap's status becomes the script's: it must end true when there is
# nothing to remove (a policy-rc.d that was already there is left alone).
cleanup() {
  if [[ $created_policy -eq 1 ]]; then
    "${sudo[@]}" rm -f $policy
  fi
  return 0
}
trap cleanup EXIT
"${sudo[@]}" apt-get update -q
"${sudo[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}"
"$vendor"
