#!/usr/bin/env bash
# Frames per send: how many deliveries one io_uring SENDMSG carries during paced fan-out,
# and the server CPU per delivery and per send, for one ringcast binary (or two, alternated).
# A binary named `bench-peer` (the tokio-tungstenite baseline, `--threads SHARDS`) is
# measured the same way from its send syscalls (sendto, sendmsg, write, writev) and its
# epoll_wait calls in place of io_uring_enter.
# Server CPU per delivery is CPU per send divided by deliveries per send; this separates
# "each send got dearer" from "fewer frames shared a send" (issue 13: two shards against
# one, turn shares).
#
# Usage:   tests/bench/frames_per_send.sh [BINARY ...]
#          SHARDS=1 CHANNELS=100 RUNS=2 tests/bench/frames_per_send.sh old/ringcast target/release/ringcast
# Environment (defaults in brackets):
#   SHARDS [2]  CHANNELS [1; 100 uses 4 publishers]  CONNS [10000]  OUTSTANDING [50000]
#   SIZE [64]  PERF_SECONDS [8: the perf window inside a 10 s paced run]  RUNS [2 per binary]
#   RINGCAST_FLAGS [--no-pin]
# Needs: perf with tracepoints (io_uring:io_uring_submit_req, syscalls), root or
# perf_event_paranoid <= -1. Builds nothing: pass release binaries (default
# target/release/ringcast; wsload from target/release).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
# shellcheck source=tests/bench/stop_pid.sh
. "$ROOT/tests/bench/stop_pid.sh"
SHARDS=${SHARDS:-2}
CHANNELS=${CHANNELS:-1}
CONNS=${CONNS:-10000}
OUTSTANDING=${OUTSTANDING:-50000}
SIZE=${SIZE:-64}
SECONDS_MEASURED=${PERF_SECONDS:-8}
RUNS=${RUNS:-2}
RINGCAST_FLAGS=${RINGCAST_FLAGS---no-pin}
WSLOAD=${CARGO_TARGET_DIR:-$ROOT/target}/release/wsload
BINARIES=("$@")
((${#BINARIES[@]})) || BINARIES=("${CARGO_TARGET_DIR:-$ROOT/target}/release/ringcast")
PUBLISHERS=$((CHANNELS > 1 ? 4 : 1))
PORT=17000
ADMIN=127.0.0.1:9790
SENDMSG_OPCODE=9
WORK=$(mktemp -d)
SERVER_PID=""
LOAD_PID=""

cleanup() {
    stop_pid "$LOAD_PID" 5
    stop_pid "$SERVER_PID" 5
    rm -rf "$WORK"
}
trap cleanup EXIT

delivered() { # metric
    curl -s --max-time 2 "http://$ADMIN/metrics" |
        awk -v m="$1" '$1 == m || index($1, m "{") == 1 { s += $2 } END { print s + 0 }'
}

one_run() { # binary
    local metric=ringcast_messages_delivered_total
    local events=(-e io_uring:io_uring_submit_req --filter "opcode == $SENDMSG_OPCODE"
        -e syscalls:sys_enter_io_uring_enter)
    if [[ $(basename "$1") == bench-peer ]]; then
        metric=benchpeer_messages_delivered_total
        events=(-e syscalls:sys_enter_sendto -e syscalls:sys_enter_sendmsg
            -e syscalls:sys_enter_write -e syscalls:sys_enter_writev
            -e syscalls:sys_enter_epoll_wait)
        "$1" --listen "127.0.0.1:$PORT-$((PORT + 3))" --admin "$ADMIN" --threads "$SHARDS" \
            >"$WORK/server.log" 2>&1 &
    else
        # shellcheck disable=SC2086
        "$1" --listen "127.0.0.1:$PORT-$((PORT + 3))" --admin "$ADMIN" --shards "$SHARDS" \
            --drain-seconds 1 $RINGCAST_FLAGS >"$WORK/server.log" 2>&1 &
    fi
    SERVER_PID=$!
    for _ in $(seq 50); do
        curl -s -o /dev/null --max-time 1 "http://$ADMIN/metrics" && break
        sleep 0.1
    done
    rm -f "$WORK/ready"
    timeout -k 5 90 "$WSLOAD" push --url "ws://127.0.0.1:$PORT-$((PORT + 3))/paced-{ch}" \
        --channels "$CHANNELS" --publishers "$PUBLISHERS" --connections "$CONNS" \
        --rate 5000 --admin "http://$ADMIN" --publish-rate 0 \
        --max-outstanding "$OUTSTANDING" --size "$SIZE" --duration $((SECONDS_MEASURED + 2)) \
        --procs 2 --source-ips 127.0.0.1-127.0.0.20 --ready-file "$WORK/ready" \
        >/dev/null 2>"$WORK/wsload.log" &
    LOAD_PID=$!
    for _ in $(seq 600); do
        [[ -e $WORK/ready ]] && break
        kill -0 "$LOAD_PID" 2>/dev/null || break
        sleep 0.1
    done
    [[ -e $WORK/ready ]] || { echo "ramp did not finish: $(tail -3 "$WORK/wsload.log")" >&2; return 1; }
    sleep 0.5
    local d0 d1
    d0=$(delivered "$metric")
    if ! perf stat -x, "${events[@]}" -e context-switches -e task-clock \
        -p "$SERVER_PID" -- sleep "$SECONDS_MEASURED" 2>"$WORK/perf.csv"; then
        echo "perf stat failed (needs root and tracepoints):" >&2
        cat "$WORK/perf.csv" >&2
        return 1
    fi
    d1=$(delivered "$metric")
    wait "$LOAD_PID" || true
    LOAD_PID=""
    stop_pid "$SERVER_PID" 5
    SERVER_PID=""
    awk -F, -v d=$((d1 - d0)) -v bin="$1" -v secs="$SECONDS_MEASURED" '
        /submit_req|sys_enter_(sendto|sendmsg|write|writev),/ { s += $1 }
        /io_uring_enter|epoll_wait/ { e += $1 }
        /context-switches/ { c = $1 } /task-clock/ { t = $1 }
        END {
            if (s == 0 || e == 0 || d == 0) { print "| " bin " | no sends measured | | | | | |"; exit }
            printf "| %s | %.0f | %.2f | %.0f | %.0f | %.2f | %.2f |\n", bin, d / secs,
                d / s, d / e, c / secs, t * 1000 / s, t * 1000 / d
        }' "$WORK/perf.csv"
}

echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg); shards $SHARDS, $CHANNELS channel(s), $CONNS subscribers, $OUTSTANDING outstanding, $SIZE B"
echo
echo "| binary | deliveries/s | deliveries per send | deliveries per io_uring_enter (epoll_wait) | context switches/s | server CPU us per send | server CPU us per delivery |"
echo "|---|---:|---:|---:|---:|---:|---:|"
for ((run = 0; run < RUNS; run++)); do
    for binary in "${BINARIES[@]}"; do
        one_run "$binary"
        sleep 2
    done
done
