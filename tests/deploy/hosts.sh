#!/usr/bin/env bash
# The throwaway test hosts of make test-deploy: each one a network namespace
# on the bridge stoa-dbr0 with its own address, its own PID, mount and UTS
# namespaces, and a Debian 12 root (an overlay on the cached base root of
# base-root.sh, so a host costs only what it writes).
#
#   tests/deploy/hosts.sh up WORK NAME=ADDRESS...
#   tests/deploy/hosts.sh down WORK
#
# Ansible reaches a host through community.general.chroot with
# WORK/bin/enter-NAME as its chroot_exe: nsenter into the host's
# namespaces and root. No sshd, no keys: the control node is this machine.
# A host's PID 1 is a small reaper; killing it ends every process of the
# host, which is how `down` stops services systemd would have stopped.
set -euo pipefail
PATH=$PATH:/usr/sbin:/sbin
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
readonly BRIDGE=stoa-dbr0 BRIDGE_ADDR=10.77.0.1/24

# PID 1 of a test host: reaps orphans until it is killed.
readonly REAPER='
import os, signal, time
signal.signal(signal.SIGTERM, signal.SIG_DFL)
while True:
    try:
        os.wait()
    except ChildProcessError:
        time.sleep(1)
'

up() {
    local work=$1
    shift
    local base
    base=$("$HERE/base-root.sh")
    mkdir -p "$work/bin" "$work/hosts"
    if ! ip link show "$BRIDGE" >/dev/null 2>&1; then
        ip link add "$BRIDGE" type bridge
        ip addr add "$BRIDGE_ADDR" dev "$BRIDGE"
        ip link set "$BRIDGE" up
    fi
    local spec name addr dir root
    local etc_hosts="127.0.0.1 localhost"$'\n'
    for spec in "$@"; do
        etc_hosts+="${spec#*=} ${spec%%=*}"$'\n'
    done
    for spec in "$@"; do
        name=${spec%%=*} addr=${spec#*=}
        dir=$work/hosts/$name root=$work/hosts/$name/root
        mkdir -p "$dir/upper" "$dir/work" "$root"
        mount -t overlay overlay \
            -o "lowerdir=$base,upperdir=$dir/upper,workdir=$dir/work" "$root"
        install -m 0755 "$HERE/systemctl-shim" "$root/usr/bin/systemctl"
        printf '%s' "$etc_hosts" >"$root/etc/hosts"
        printf '%s\n' "$name" >"$root/etc/hostname"
        # No DNS on the bridge: every name is in /etc/hosts, and a resolver
        # that points nowhere would make each lookup (sudo, facts) wait.
        printf '# test host: no DNS, the names are in /etc/hosts\n' >"$root/etc/resolv.conf"
        mount --rbind /dev "$root/dev"
        mount --make-rslave "$root/dev"
        ip netns add "stoa-$name"
        ip link add "v-$name" type veth peer name eth0 netns "stoa-$name"
        ip link set "v-$name" master "$BRIDGE" up
        ip -n "stoa-$name" addr add "$addr/24" dev eth0
        ip -n "stoa-$name" link set eth0 up
        ip -n "stoa-$name" link set lo up
        ip -n "stoa-$name" route add default via "${BRIDGE_ADDR%/*}"
        # Its own UTS namespace too: the host's name is its own, as the
        # names in /etc/hosts say (sudo and fact gathering look it up).
        # shellcheck disable=SC2016 # the inner shell expands its arguments
        setsid ip netns exec "stoa-$name" unshare --pid --fork --mount --uts \
            --mount-proc="$root/proc" /bin/sh -c \
            'hostname "$1" && exec chroot "$2" /usr/bin/python3 -c "$3"' \
            sh "$name" "$root" "$REAPER" </dev/null >/dev/null 2>&1 &
        echo $! >"$dir/unshare.pid"
        local init='' i
        for ((i = 0; i < 50; i++)); do
            init=$(pgrep -P "$(cat "$dir/unshare.pid")" || true)
            [[ -n $init ]] && break
            sleep 0.1
        done
        [[ -n $init ]] || { echo "hosts.sh: $name did not start" >&2; return 1; }
        echo "$init" >"$dir/init.pid"
        cat >"$work/bin/enter-$name" <<EOS
#!/bin/sh
# chroot_exe of test host $name: "\$1" is the root, the rest the command.
shift
exec nsenter -t $init -n -p -m -u -r -w -- "\$@"
EOS
        chmod 0755 "$work/bin/enter-$name"
    done
}

down() {
    local work=$1 dir name
    shopt -s nullglob
    for dir in "$work"/hosts/*/; do
        dir=${dir%/}
        name=${dir##*/}
        if [[ -f $dir/unshare.pid ]]; then
            local pids i
            pids=$(cat "$dir/init.pid" "$dir/unshare.pid" 2>/dev/null || true)
            # shellcheck disable=SC2086 # one word per PID
            kill -KILL $pids 2>/dev/null || true
            # The kernel ends the host's processes after its PID 1: wait
            # for them to be gone before the root is unmounted.
            for ((i = 0; i < 100; i++)); do
                # shellcheck disable=SC2086
                kill -0 $pids 2>/dev/null || break
                sleep 0.1
            done
        fi
        ip netns del "stoa-$name" 2>/dev/null || true
        ip link del "v-$name" 2>/dev/null || true
        if mountpoint -q "$dir/root"; then
            umount -R "$dir/root" 2>/dev/null || umount -R -l "$dir/root" || true
        fi
    done
    ip link del "$BRIDGE" 2>/dev/null || true
    rm -rf "$work/hosts"
}

case ${1:-} in
up) shift; up "$@" ;;
down) down "$2" ;;
*) echo "usage: $0 up WORK NAME=ADDR... | down WORK" >&2; exit 2 ;;
esac
