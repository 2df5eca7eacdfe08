#!/usr/bin/env bash
# make test-deploy: applies ansible/site.yml to six throwaway test hosts
# (two gateways, a worker, a Postgres primary and replica, Redis), runs it a
# second time and requires changed=0, then with --check --diff (changed=0
# too), checks the installed units with systemd-analyze verify, then uses
# the cluster (use.sh: the API through each gateway, the replica, the live
# channel across gateways, each host's metrics). Everything is torn down
# on exit, failed or not.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
# shellcheck source=tests/deploy/lib.sh
. "$HERE/lib.sh"
[[ $(id -u) -eq 0 ]] || { echo "test-deploy: needs root (namespaces, mounts)" >&2; exit 1; }
WORK=$(mktemp -d /tmp/stoa-deploy.XXXXXX)
HOSTS=(gw1=10.77.0.11 gw2=10.77.0.12 worker1=10.77.0.21 db1=10.77.0.31 db2=10.77.0.32 redis1=10.77.0.41)
cleanup() {
    local rc=$?
    # Tear-down runs whatever failed before it, and to its end.
    set +e +o pipefail
    if [[ $rc -ne 0 ]]; then
        # What a failure needs to be read: the play's last lines and each
        # service's output on each host (the shim's logs).
        echo "test-deploy: FAILED (exit $rc)" >&2
        local log f
        for log in "$WORK"/run2.log "$WORK"/run1.log; do
            [[ -f $log ]] && { grep -B2 -A12 -E '^(fatal|failed):' "$log" | tail -n 60 >&2; break; }
        done
        for f in "$WORK"/hosts/*/root/run/systemctl-shim/*.log; do
            [[ -s $f ]] || continue
            echo "--- ${f#"$WORK"/hosts/}" >&2
            tail -n 15 "$f" >&2
        done
    fi
    if [[ -n ${STOA_DEPLOY_KEEP:-} ]]; then
        # Debugging only: leaves the hosts up; tear them down with
        # tests/deploy/hosts.sh down WORK.
        echo "test-deploy: kept $WORK (tests/deploy/hosts.sh down $WORK)" >&2
        return
    fi
    "$HERE/hosts.sh" down "$WORK" || true
    rm -rf "$WORK"
}
trap cleanup EXIT
start=$SECONDS
"$HERE/hosts.sh" up "$WORK" "${HOSTS[@]}"

host_line() {
    local name=$1 addr=$2
    printf '        %s: {ansible_host: %s, ansible_chroot_exe: %s, stoa_address: %s}\n' \
        "$name" "$WORK/hosts/$name/root" "$WORK/bin/enter-$name" "$addr"
}
{
    echo "all:"
    echo "  vars:"
    echo "    ansible_connection: community.general.chroot"
    echo "    ansible_python_interpreter: /usr/bin/python3"
    echo "    stoa_apt_update_cache: false"
    echo "    stoa_secrets_dir: $WORK/secrets"
    echo "    stoa_public_url: https://stoa.test"
    echo "  children:"
    for group in gateways:gw1,gw2 workers:worker1 primary:db1 replica:db2 redis:redis1; do
        echo "    ${group%%:*}:"
        echo "      hosts:"
        IFS=, read -r -a names <<<"${group#*:}"
        for n in "${names[@]}"; do host_line "$n" "$(addr "$n")"; done
    done
    echo "    databases:"
    echo "      children: {primary: {}, replica: {}}"
} >"$WORK/inventory.yml"

cd "$REPO/ansible"
export ANSIBLE_FORCE_COLOR=0 ANSIBLE_NOCOLOR=1
echo "test-deploy: first run"
ansible-playbook -i "$WORK/inventory.yml" site.yml | tee "$WORK/run1.log" | tail -n 12
echo "test-deploy: second run"
ansible-playbook -i "$WORK/inventory.yml" site.yml >"$WORK/run2.log"
sed -n '/PLAY RECAP/,$p' "$WORK/run2.log"
if sed -n '/PLAY RECAP/,$p' "$WORK/run2.log" | grep -E 'changed=[1-9]|failed=[1-9]|unreachable=[1-9]'; then
    echo "test-deploy: FAIL: the second run changed something" >&2
    grep -E '^(changed|TASK)' "$WORK/run2.log" | grep -B1 '^changed' >&2 || true
    exit 1
fi

echo "test-deploy: --check --diff on the deployed cluster"
ansible-playbook -i "$WORK/inventory.yml" site.yml --check --diff >"$WORK/check.log"
if sed -n '/PLAY RECAP/,$p' "$WORK/check.log" | grep -E 'changed=[1-9]|failed=[1-9]|unreachable=[1-9]'; then
    echo "test-deploy: FAIL: --check --diff would change something" >&2
    exit 1
fi

echo "test-deploy: systemd-analyze verify"
"$WORK/bin/enter-worker1" - systemd-analyze verify /etc/systemd/system/stoa-pool@auth.service /etc/systemd/system/stoa-jobs.service
"$WORK/bin/enter-gw1" - systemd-analyze verify /etc/systemd/system/stoa-nginx.service /etc/systemd/system/stoa-metrics.service
"$WORK/bin/enter-db1" - systemd-analyze verify /etc/systemd/system/stoa-backup@full.service \
    /etc/systemd/system/stoa-backup-full.timer /etc/systemd/system/stoa-backup-incr.timer

"$HERE/use.sh" "$WORK" "${HOSTS[@]}"
echo "test-deploy: passed in $((SECONDS - start)) s"
