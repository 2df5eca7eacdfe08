#!/usr/bin/env bash
# Makes (once) the Debian 12 root every test host of `make test-deploy`
# starts from, with debootstrap from Debian's mirror, and prints its path.
# The root already holds every package the roles ask for, so the play runs
# without the network (the test hosts have none) and the apt tasks find
# their packages present, as on a host that was deployed before.
#
#   tests/deploy/base-root.sh
#
# Environment: STOA_DEPLOY_CACHE (/var/cache/stoa-deploy), STOA_DEPLOY_MIRROR
# (the first URIs of /etc/apt/sources.list.d/debian.sources, else
# http://deb.debian.org/debian).
set -euo pipefail
PATH=$PATH:/usr/sbin:/sbin

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CACHE=${STOA_DEPLOY_CACHE:-/var/cache/stoa-deploy}
# The package list is part of the cache key: a root made for another list
# is made again rather than patched.
PACKAGES=$(grep -v '^#' "$HERE/base-packages.txt" | tr -s ' \n' ' ' | sed 's/ $//')
KEY=$(printf '%s\n' "$PACKAGES" | sha256sum | cut -c1-12)
ROOT=$CACHE/base-$KEY

if [[ -f $ROOT/.complete ]]; then
    printf '%s\n' "$ROOT"
    exit 0
fi

mirror=${STOA_DEPLOY_MIRROR:-}
if [[ -z $mirror ]]; then
    mirror=$(sed -n 's/^URIs:[[:space:]]*//p' /etc/apt/sources.list.d/debian.sources 2>/dev/null |
        head -n 1)
fi
mirror=${mirror:-http://deb.debian.org/debian}

mkdir -p "$CACHE"
exec 9>"$CACHE/.lock"
flock -w 1800 9
[[ -f $ROOT/.complete ]] && { printf '%s\n' "$ROOT"; exit 0; }
rm -rf "$ROOT.tmp"
echo "base-root: debootstrap bookworm from $mirror into $ROOT (once)" >&2
debootstrap --variant=minbase --include="${PACKAGES// /,}" \
    bookworm "$ROOT.tmp" "$mirror" >"$CACHE/debootstrap.log" 2>&1 || {
    tail -n 30 "$CACHE/debootstrap.log" >&2
    exit 1
}
# No package may start its service inside a test host on its own.
printf '#!/bin/sh\nexit 101\n' >"$ROOT.tmp/usr/sbin/policy-rc.d"
chmod 0755 "$ROOT.tmp/usr/sbin/policy-rc.d"
# systemd is installed (units, systemd-analyze) but cannot be PID 1 here:
# systemctl is diverted, and each test host gets the shim in its place
# (tests/deploy/hosts.sh), which starts a unit from its own ExecStart lines.
chroot "$ROOT.tmp" dpkg-divert --local --rename --add /usr/bin/systemctl >/dev/null
# Debian's packages made their default clusters and configs; the roles
# start from what a fresh Debian host has, so keep them.
chroot "$ROOT.tmp" apt-get clean
touch "$ROOT.tmp/.complete"
mv "$ROOT.tmp" "$ROOT"
printf '%s\n' "$ROOT"
