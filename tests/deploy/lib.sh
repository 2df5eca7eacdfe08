# Sourced by run.sh and use.sh: the test hosts' table.
# shellcheck shell=bash

# The address of test host $1 in HOSTS (NAME=ADDRESS words).
addr() {
    local s
    for s in "${HOSTS[@]}"; do
        if [[ ${s%%=*} == "$1" ]]; then
            echo "${s#*=}"
            return 0
        fi
    done
    return 1
}
