#!/usr/bin/env bash
# Benchmark ringcast against bench-peer (plain tokio + tokio-tungstenite) on this host.
#
# For each server: start it on its own ports, open CONNS connections with `wsload hold`
# (PROCS worker processes, source IPs SOURCE_IPS), then measure
#   - idle memory per connection: (server VmRSS after the ramp - VmRSS before) / connected
#   - connections/s of the ramp (wsload's connect_rate_per_s)
#   - phase A: all connections on one channel (`/bench`), M messages published to it
#   - phase B: CHANNELS_B channels (`/ch-{ch}`), M messages published to each, round-robin
#   For A and B: deliveries/s (wsload, first to last message), server CPU seconds
#   (utime+stime from /proc/PID/stat) from the publish start to the end of the hold, per
#   million deliveries, and how many connections got all M messages in order.
# Prints a table `metric | ringcast | bench-peer | ratio` and writes target/bench/compare.json
# (per-run logs and wsload JSON lines are kept in target/bench/<server>-<phase>/).
#
# Usage:   tests/bench/compare.sh
#          SERVERS=bench-peer CONNS=2000 tests/bench/compare.sh     # quick check of one server
# Environment (defaults in brackets):
#   SERVERS ["ringcast bench-peer"]  CONNS [19000]  M [200]  CHANNELS_B [100]  PROCS [2]
#   RATE [5000 connects/s; 0 = as fast as the server accepts]  SOURCE_IPS [127.0.0.1-127.0.0.20]  SIZE [64 body bytes]
#   HOLD_SECONDS [90: longest a phase waits for its messages]  SETTLE [2 s after the ramp]
#   BUILD [1; 0 skips `cargo build --release`]  CARGO_TARGET_DIR [<repo>/target]
#   RINGCAST_FLAGS [--no-pin: extra ringcast flags]
#
# Every process this script starts is stopped by its pid on exit; every wait is bounded.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
SERVERS=${SERVERS:-"ringcast bench-peer"}
CONNS=${CONNS:-19000}
M=${M:-200}
CHANNELS_B=${CHANNELS_B:-100}
PROCS=${PROCS:-2}
RATE=${RATE:-5000}
SOURCE_IPS=${SOURCE_IPS:-127.0.0.1-127.0.0.20}
SIZE=${SIZE:-64}
HOLD_SECONDS=${HOLD_SECONDS:-90}
SETTLE=${SETTLE:-2}
BUILD=${BUILD:-1}
# The load generator runs on the same cores as the server here, so shards are not pinned
# by default (a pinned shard cannot move away from a busy wsload worker); set
# RINGCAST_FLAGS= to measure pinned shards.
RINGCAST_FLAGS=${RINGCAST_FLAGS---no-pin}
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
BIN=$TARGET_DIR/release
OUT=$ROOT/target/bench
CLK_TCK=$(getconf CLK_TCK)
# wsload bounds its own run by ramp + duration + 5 s; these are the script's outer bounds.
RAMP_BOUND=$(( RATE > 0 ? 2 * CONNS / RATE + 40 : 60 ))
HOLD_BOUND=$((RAMP_BOUND + HOLD_SECONDS + 30))

declare -A WS_PORTS=([ringcast]=10000-10003 [bench-peer]=11000-11003)
declare -A ADMIN=([ringcast]=127.0.0.1:9090 [bench-peer]=127.0.0.1:9190)
declare -A METRIC_PREFIX=([ringcast]=ringcast [bench-peer]=benchpeer)
declare -A PACKAGE=([ringcast]=ringcast [bench-peer]=ringcast-bench-peer)

SERVER_PID=""
HOLD_PID=""

log() { echo "[compare] $*" >&2; }
die() {
    log "error: $*"
    exit 1
}

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

cleanup() {
    [[ -n $HOLD_PID ]] && stop_pid "$HOLD_PID" 5
    [[ -n $SERVER_PID ]] && stop_pid "$SERVER_PID" 15
    HOLD_PID=""
    SERVER_PID=""
}
trap cleanup EXIT
trap 'exit 130' INT TERM

rss_bytes() { awk '/^VmRSS:/ { print $2 * 1024 }' "/proc/$1/status"; }

cpu_ticks() { # utime + stime of the whole process (fields 14 and 15 of /proc/PID/stat)
    local stat rest
    stat=$(<"/proc/$1/stat")
    rest=${stat##*) }
    # shellcheck disable=SC2086
    set -- $rest
    echo $((${12} + ${13}))
}

http_ok() { curl -s -o /dev/null --max-time 2 -f "$1"; }

wait_file() { # path seconds pid: until the file exists, the time is up or pid exits
    local path=$1 seconds=$2 pid=$3 i
    for ((i = 0; i < seconds * 10; i++)); do
        [[ -s $path ]] && return 0
        kill -0 "$pid" 2>/dev/null || { [[ -s $path ]]; return; }
        sleep 0.1
    done
    return 1
}

open_connections() { # server: the server's connection gauge summed over shards (or -1)
    local prefix=${METRIC_PREFIX[$1]}
    curl -s --max-time 2 "http://${ADMIN[$1]}/metrics" |
        awk -v m="${prefix}_connections" '
            $1 == m || index($1, m "{") == 1 { sum += $2; found = 1 }
            END { print found ? sum : -1 }'
}

wait_drained() { # server: until no connection is open (at most 30 s)
    local i n
    for ((i = 0; i < 300; i++)); do
        n=$(open_connections "$1" || echo -1)
        [[ $n == 0 ]] && return 0
        [[ $n == -1 ]] && { sleep 2; return 0; }
        sleep 0.1
    done
    log "warning: $1 still reports $n open connections"
}

start_server() { # server
    local server=$1 i
    http_ok "http://${ADMIN[$server]}/metrics" &&
        die "something already answers on ${ADMIN[$server]}; stop it first"
    case $server in
    ringcast)
        "$BIN/ringcast" --listen "127.0.0.1:${WS_PORTS[$server]}" --admin "${ADMIN[$server]}" \
            --shards 2 --drain-seconds 1 $RINGCAST_FLAGS >"$OUT/$server.log" 2>&1 &
        ;;
    bench-peer)
        "$BIN/bench-peer" --listen "127.0.0.1:${WS_PORTS[$server]}" --admin "${ADMIN[$server]}" \
            --threads 2 >"$OUT/$server.log" 2>&1 &
        ;;
    *) die "unknown server $server" ;;
    esac
    SERVER_PID=$!
    for ((i = 0; i < 100; i++)); do
        kill -0 "$SERVER_PID" 2>/dev/null || die "$server exited: $(tail -5 "$OUT/$server.log")"
        http_ok "http://${ADMIN[$server]}/metrics" && return 0
        sleep 0.1
    done
    die "$server did not answer on ${ADMIN[$server]} within 10 s"
}

run_phase() { # server phase path channels publish-args...
    local server=$1 phase=$2 path=$3 channels=$4
    shift 4
    local dir=$OUT/$server-$phase
    rm -rf "$dir"
    mkdir -p "$dir"
    local rss0 rss1 cpu0 cpu1 t0 t1 hold_rc=0
    rss0=$(rss_bytes "$SERVER_PID")
    log "$server phase $phase: ramp of $CONNS connections to $path"
    timeout -k 5 "$HOLD_BOUND" "$BIN/wsload" hold \
        --url "ws://127.0.0.1:${WS_PORTS[$server]}$path" --channels "$channels" \
        --connections "$CONNS" --rate "$RATE" --source-ips "$SOURCE_IPS" --procs "$PROCS" \
        --duration "$HOLD_SECONDS" --expect-messages "$M" \
        --ready-file "$dir/ready" --done-file "$dir/done" --json "$dir/hold.json" \
        >/dev/null 2>"$dir/hold.log" &
    HOLD_PID=$!
    wait_file "$dir/ready" "$RAMP_BOUND" "$HOLD_PID" ||
        die "$server phase $phase: ramp did not finish (see $dir/hold.log)"
    log "$server phase $phase: $(<"$dir/ready") connected; settling ${SETTLE}s"
    sleep "$SETTLE"
    rss1=$(rss_bytes "$SERVER_PID")
    cpu0=$(cpu_ticks "$SERVER_PID")
    t0=$(date +%s.%N)
    log "$server phase $phase: publishing"
    "$BIN/wsload" publish --admin "http://${ADMIN[$server]}" --size "$SIZE" \
        --timeout "$HOLD_SECONDS" --json "$dir/publish.json" "$@" >/dev/null ||
        log "warning: publish failed"
    wait_file "$dir/done" "$((HOLD_SECONDS + 10))" "$HOLD_PID" ||
        log "warning: $server phase $phase: hold did not end in time"
    cpu1=$(cpu_ticks "$SERVER_PID")
    t1=$(date +%s.%N)
    wait "$HOLD_PID" || hold_rc=$?
    HOLD_PID=""
    ((hold_rc == 0)) || log "warning: wsload hold exited with $hold_rc (see $dir/hold.log)"
    cat >"$dir/measure.json" <<JSON
{"rss_before": $rss0, "rss_after_ramp": $rss1, "cpu_ticks": $((cpu1 - cpu0)), "clk_tck": $CLK_TCK, "t0": $t0, "t1": $t1}
JSON
    wait_drained "$server"
}

mkdir -p "$OUT"
if ((BUILD)); then
    packages=(-p wsload)
    for server in $SERVERS; do
        [[ -n ${PACKAGE[$server]:-} ]] || die "unknown server $server (ringcast, bench-peer)"
        packages+=(-p "${PACKAGE[$server]}")
    done
    log "cargo build --release ${packages[*]}"
    (cd "$ROOT" && CARGO_TARGET_DIR=$TARGET_DIR cargo build --release "${packages[@]}")
fi

for server in $SERVERS; do
    start_server "$server"
    run_phase "$server" A /bench 1 --channel bench --count "$M"
    run_phase "$server" B "/ch-{ch}" "$CHANNELS_B" \
        --channel-prefix ch- --channels "$CHANNELS_B" --count "$((CHANNELS_B * M))"
    stop_pid "$SERVER_PID" 15
    SERVER_PID=""
done

python3 "$ROOT/tests/bench/compare_table.py" --out "$OUT" --conns "$CONNS" --m "$M" \
    --channels-b "$CHANNELS_B" --procs "$PROCS" --rate "$RATE" --size "$SIZE" $SERVERS
