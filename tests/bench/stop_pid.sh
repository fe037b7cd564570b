# Sourced by the benchmark scripts: stops a process they started, by its pid.
# shellcheck shell=bash

stop_pid() { # pid grace_seconds: TERM, wait up to grace, then KILL
    local pid=$1 grace=$2 i
    kill -0 "$pid" 2>/dev/null || return 0
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < grace * 10; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}
