#!/usr/bin/env bash
# Comparative benchmark: ringcast against the servers users would otherwise pick, on this
# host, with the same wsload scenarios, in one run. Servers (same interface: ws on a port
# range, /<channel> subscribes, /echo echoes, POST /publish/<channel> on an admin port):
#   ringcast     this repository (2 shards, the default; --no-pin by default, wsload
#                shares the cores)
#   ringcast-1   the same with --shards 1: the row pair shows what the second shard costs
#   uws          uWebSockets.js (npm `uwebsockets` 3.0.6, a republished uWS.js v20 build) with
#                its native pub/sub (tests/bench/uws-peer, installed with `npm ci`)
#   bench-peer   tokio + tokio-tungstenite with 4 KiB buffers (bin/bench-peer)
#   node-ws      Node.js `ws` from npm (tests/bench/node-peer, installed with `npm ci`)
#   send-floor   not a server to pick but the floor under all of them: bench-peer --floor
#                delivers with one plain send(2) per subscriber on the publishing thread (no
#                queue, no wake-up, no coalescing); it runs the push phases only, and the
#                table says how close each server's CPU per delivery is to it
#   tokio-uring-peer, glommio-peer   the io_uring runtimes DESIGN.md decided against
#                (tests/bench/runtime-peers, a separate Cargo workspace), with
#                BUILD_RUNTIME_PEERS=1; they run the idle, connect and fan-out phases.
# Phases per server (each one wsload run that ramps, measures, closes and exits):
#   idle     hold CONNS connections: idle server memory per connection (VmRSS growth over
#            the ramp / connected), its marginal cost (the slope of VmRSS against open
#            descriptors from CONNS/2 to CONNS during the ramp, sampled every ~20 ms: fixed
#            costs drop out), connect rate, server CPU per 1,000 connects
#   fan1     push: CONNS subscribers of 1 channel, M messages published unpaced:
#            deliveries/s, server CPU s per 1M deliveries, lost
#   fan100   push: CONNS subscribers over 100 channels, M messages per channel, unpaced
#   paced1   push: PACED_CONNS subscribers of 1 channel, paced: the publisher keeps at most
#            OUTSTANDING deliveries published but not received (a publisher that does not
#            outrun its subscribers; frames do not coalesce as in a burst) for PACED_SECONDS:
#            deliveries/s, server CPU s per 1M deliveries
#   paced100 the same over 100 channels (4 publisher connections)
#   fixed1   push: PACED_CONNS subscribers of 1 channel, FIXED_RATE publishes/s (far from
#            saturation) for PACED_SECONDS: server CPU s per 1M deliveries, latency
#   latency  push: CONNS subscribers over 100 channels, PUSH_RATE messages/s for
#            LATENCY_SECONDS: publish->receive p50/p99/p99.9/max, lost. Latency counts
#            from when each publish was due, so a server that answers publishes late
#            does not hide its backlog by slowing the publisher. The default rate (200/s,
#            38,000 deliveries/s) is below every server's saturation on a 2-core box
#            shared with wsload; at 500/s the single-threaded servers fall behind.
#   echo     ECHO_CONNS connections to /echo, ECHO_RATE messages/s each: round trip
#   churn    CHURN_CONNS connections, 20% reopened every second: reconnect latency, failures
# Server CPU seconds (utime+stime) and VmRSS come from /proc/PID; the load average is read
# before each server starts and shown in the table. Results: a markdown table
# with ratios to ringcast in tests/bench/RESULTS.md (with date, machine and load average),
# raw data in target/bench/ (compare.json and one directory per server and phase).
#
# Usage:   tests/bench/compare.sh
#          SERVERS="ringcast node-ws" CONNS=2000 RESULTS=/tmp/r.md tests/bench/compare.sh
# Environment (defaults in brackets):
#   SERVERS ["ringcast ringcast-1 uws bench-peer node-ws send-floor"; plus the runtime
#            peers with BUILD_RUNTIME_PEERS=1]
#   CONNS [19000]  M [200]  PROCS [2]  RATE [5000 connects/s]  SOURCE_IPS [127.0.0.1-127.0.0.20]
#   CONNECT_RATE [0: unpaced; the idle phase's ramp, which measures connects/s]
#   SIZE [64]  PUSH_RATE [200]  LATENCY_SECONDS [10]  ECHO_CONNS [2000]  ECHO_RATE [10]
#   CHURN_CONNS [5000]  PACED_CONNS [10000]  OUTSTANDING [50000]  PACED_SECONDS [10]
#   FIXED_RATE [5 publishes/s]
#   PHASES [idle fan1 fan100 paced1 paced100 fixed1 latency echo churn]
#   BUILD [1]  BUILD_RUNTIME_PEERS [0]  RESULTS [tests/bench/RESULTS.md]
#   RINGCAST_FLAGS [--no-pin]  CARGO_TARGET_DIR [<repo>/target]
#
# Every process this script starts is stopped by its pid on exit; every wait is bounded.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
# shellcheck source=tests/bench/stop_pid.sh
. "$ROOT/tests/bench/stop_pid.sh"
BUILD_RUNTIME_PEERS=${BUILD_RUNTIME_PEERS:-0}
DEFAULT_SERVERS="ringcast ringcast-1 uws bench-peer node-ws send-floor"
((BUILD_RUNTIME_PEERS)) && DEFAULT_SERVERS="$DEFAULT_SERVERS tokio-uring-peer glommio-peer"
SERVERS=${SERVERS:-$DEFAULT_SERVERS}
CONNS=${CONNS:-19000}
M=${M:-200}
PROCS=${PROCS:-2}
RATE=${RATE:-5000}
CONNECT_RATE=${CONNECT_RATE:-0}
SOURCE_IPS=${SOURCE_IPS:-127.0.0.1-127.0.0.20}
SIZE=${SIZE:-64}
PUSH_RATE=${PUSH_RATE:-200}
LATENCY_SECONDS=${LATENCY_SECONDS:-10}
ECHO_CONNS=${ECHO_CONNS:-2000}
ECHO_RATE=${ECHO_RATE:-10}
CHURN_CONNS=${CHURN_CONNS:-5000}
PACED_CONNS=${PACED_CONNS:-10000}
OUTSTANDING=${OUTSTANDING:-50000}
PACED_SECONDS=${PACED_SECONDS:-10}
FIXED_RATE=${FIXED_RATE:-5}
PHASES=${PHASES:-"idle fan1 fan100 paced1 paced100 fixed1 latency echo churn"}
BUILD=${BUILD:-1}
RESULTS=${RESULTS:-$ROOT/tests/bench/RESULTS.md}
# The load generator runs on the same cores as the server here, so shards are not pinned
# by default (a pinned shard cannot move away from a busy wsload worker); set
# RINGCAST_FLAGS= to measure pinned shards.
RINGCAST_FLAGS=${RINGCAST_FLAGS---no-pin}
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
BIN=$TARGET_DIR/release
RT_DIR=$ROOT/tests/bench/runtime-peers
RT_BIN=$TARGET_DIR/runtime-peers/release
NODE_DIR=$ROOT/tests/bench/node-peer
UWS_DIR=$ROOT/tests/bench/uws-peer
OUT=$ROOT/target/bench
CLK_TCK=$(getconf CLK_TCK)
RAMP_BOUND=$((RATE > 0 ? 2 * CONNS / RATE + 40 : 60))

declare -A WS_PORTS=([ringcast]=10000-10003 [ringcast-1]=10100-10103 [bench-peer]=11000-11003
    [node-ws]=12000-12003 [tokio-uring-peer]=13000-13003 [glommio-peer]=14000-14003
    [uws]=15000-15003 [send-floor]=16000-16003)
declare -A ADMIN=([ringcast]=127.0.0.1:9090 [ringcast-1]=127.0.0.1:9091
    [bench-peer]=127.0.0.1:9190 [node-ws]=127.0.0.1:9290 [tokio-uring-peer]=127.0.0.1:9390
    [glommio-peer]=127.0.0.1:9490 [uws]=127.0.0.1:9590 [send-floor]=127.0.0.1:9690)
declare -A METRIC=([ringcast]=ringcast_connections [ringcast-1]=ringcast_connections
    [bench-peer]=benchpeer_connections [node-ws]=nodepeer_connections
    [tokio-uring-peer]=runtimepeer_connections [glommio-peer]=runtimepeer_connections
    [uws]=uwspeer_connections [send-floor]=benchpeer_connections)
# The runtime peers implement subscribe and echo only: they run these phases.
RUNTIME_PEER_PHASES="idle fan1 fan100"
# The send floor measures delivery only.
FLOOR_PHASES="fan1 fan100 paced1 paced100 fixed1 latency"

SERVER_PID=""
LOAD_PID=""

log() { echo "[compare] $*" >&2; }
die() {
    log "error: $*"
    exit 1
}

cleanup() {
    [[ -n $LOAD_PID ]] && stop_pid "$LOAD_PID" 5
    [[ -n $SERVER_PID ]] && stop_pid "$SERVER_PID" 15
    LOAD_PID=""
    SERVER_PID=""
}
trap cleanup EXIT
trap 'exit 130' INT TERM

rss_bytes() { awk '/^VmRSS:/ { print $2 * 1024 }' "/proc/$1/status" 2>/dev/null || echo 0; }

fd_rss_sample() { # pid: "<open descriptors> <VmRSS bytes>"
    echo "$(find "/proc/$1/fd" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l) $(rss_bytes "$1")"
}

sample_ramp() { # pid dir: one fd_rss_sample every ~20 ms until the ramp ends
    local i
    for ((i = 0; i < RAMP_BOUND * 50; i++)); do
        [[ -e $2/ready ]] && break
        kill -0 "$1" 2>/dev/null || break
        fd_rss_sample "$1"
        sleep 0.02
    done >"$2/samples"
}

cpu_ticks() { # utime + stime of the whole process (fields 14 and 15 of /proc/PID/stat)
    local stat rest
    stat=$(<"/proc/$1/stat") || { echo 0; return; }
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

wait_exit() { # pid seconds
    local pid=$1 seconds=$2 i
    for ((i = 0; i < seconds * 10; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    stop_pid "$pid" 5
}

open_connections() { # server: the server's connection gauge summed over series (or -1)
    curl -s --max-time 2 "http://${ADMIN[$1]}/metrics" |
        awk -v m="${METRIC[$1]}" '
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
    local server=$1 i listen="127.0.0.1:${WS_PORTS[$1]}" admin=${ADMIN[$1]}
    http_ok "http://$admin/metrics" && die "something already answers on $admin; stop it first"
    case $server in
    ringcast | ringcast-1)
        local shards=2
        [[ $server == ringcast-1 ]] && shards=1
        # shellcheck disable=SC2086
        "$BIN/ringcast" --listen "$listen" --admin "$admin" --shards "$shards" \
            --drain-seconds 1 $RINGCAST_FLAGS >"$OUT/$server.log" 2>&1 &
        ;;
    bench-peer)
        "$BIN/bench-peer" --listen "$listen" --admin "$admin" --threads 2 >"$OUT/$server.log" 2>&1 &
        ;;
    send-floor)
        "$BIN/bench-peer" --listen "$listen" --admin "$admin" --threads 2 --floor \
            >"$OUT/$server.log" 2>&1 &
        ;;
    node-ws)
        node "$NODE_DIR/server.js" --listen "$listen" --admin "$admin" >"$OUT/$server.log" 2>&1 &
        ;;
    uws)
        node "$UWS_DIR/server.js" --listen "$listen" --admin "$admin" >"$OUT/$server.log" 2>&1 &
        ;;
    tokio-uring-peer | glommio-peer)
        "$RT_BIN/$server" --listen "$listen" --admin "$admin" --threads 2 \
            >"$OUT/$server.log" 2>&1 &
        ;;
    *) die "unknown server $server" ;;
    esac
    SERVER_PID=$!
    for ((i = 0; i < 100; i++)); do
        kill -0 "$SERVER_PID" 2>/dev/null || {
            log "$server exited: $(tail -5 "$OUT/$server.log")"
            SERVER_PID=""
            return 1
        }
        http_ok "http://$admin/metrics" && return 0
        sleep 0.1
    done
    die "$server did not answer on $admin within 10 s"
}

run_phase() { # server phase bound_seconds wsload-args...: one wsload run with measurements
    local server=$1 phase=$2 bound=$3
    shift 3
    local dir=$OUT/$server-$phase rss0 rss1 cpu0 cpu1 cpu2 t1 t2
    rm -rf "$dir"
    mkdir -p "$dir"
    rss0=$(rss_bytes "$SERVER_PID")
    cpu0=$(cpu_ticks "$SERVER_PID")
    log "$server $phase: wsload $1"
    timeout -k 5 "$bound" "$BIN/wsload" "$@" --procs "$PROCS" --source-ips "$SOURCE_IPS" \
        --ready-file "$dir/ready" --done-file "$dir/done" --json "$dir/report.json" \
        >/dev/null 2>"$dir/wsload.log" &
    LOAD_PID=$!
    local sampler=""
    if [[ $phase == idle ]]; then
        sample_ramp "$SERVER_PID" "$dir" &
        sampler=$!
    fi
    if ! wait_file "$dir/ready" "$RAMP_BOUND" "$LOAD_PID"; then
        [[ -n $sampler ]] && stop_pid "$sampler" 1
        log "warning: $server $phase: ramp did not finish (see $dir/wsload.log)"
        stop_pid "$LOAD_PID" 5
        LOAD_PID=""
        return 0
    fi
    if [[ $phase == idle ]]; then
        sleep 2
        wait "$sampler" 2>/dev/null || true
        fd_rss_sample "$SERVER_PID" >>"$dir/samples"
    fi
    rss1=$(rss_bytes "$SERVER_PID")
    cpu1=$(cpu_ticks "$SERVER_PID")
    t1=$(date +%s.%N)
    wait_file "$dir/done" "$bound" "$LOAD_PID" || log "warning: $server $phase: no done file"
    cpu2=$(cpu_ticks "$SERVER_PID")
    t2=$(date +%s.%N)
    wait_exit "$LOAD_PID" 30
    LOAD_PID=""
    cat >"$dir/measure.json" <<JSON
{"rss_before": $rss0, "rss_after_ramp": $rss1, "cpu_ramp_ticks": $((cpu1 - cpu0)), "cpu_phase_ticks": $((cpu2 - cpu1)), "clk_tck": $CLK_TCK, "t_ready": $t1, "t_done": $t2}
JSON
    wait_drained "$server"
}

phases_of() { # server
    case $1 in
    tokio-uring-peer | glommio-peer) echo "$RUNTIME_PEER_PHASES" ;;
    send-floor) echo "$FLOOR_PHASES" ;;
    *) echo "$PHASES" ;;
    esac
}

run_server() { # server
    local server=$1 url admin phase
    url="ws://127.0.0.1:${WS_PORTS[$server]}"
    admin="http://${ADMIN[$server]}"
    cut -d' ' -f1-3 /proc/loadavg >"$OUT/$server-load"
    log "$server: load average $(cat "$OUT/$server-load")"
    start_server "$server" || return 0
    for phase in $(phases_of "$server"); do
        [[ " $PHASES " == *" $phase "* ]] || continue
        case $phase in
        idle)
            run_phase "$server" idle $((RAMP_BOUND + 40)) hold --url "$url/idle-{ch}" \
                --channels 100 --connections "$CONNS" --rate "$CONNECT_RATE" --duration 3
            ;;
        fan1)
            run_phase "$server" fan1 $((RAMP_BOUND + 120)) push --url "$url/bench" \
                --connections "$CONNS" --rate "$RATE" --admin "$admin" --publish-rate 0 \
                --messages-per-channel "$M" --size "$SIZE" --duration 90
            ;;
        fan100)
            run_phase "$server" fan100 $((RAMP_BOUND + 120)) push --url "$url/ch-{ch}" \
                --channels 100 --connections "$CONNS" --rate "$RATE" --admin "$admin" \
                --publish-rate 0 --publishers 4 --messages-per-channel "$M" --size "$SIZE" \
                --duration 90
            ;;
        paced1)
            run_phase "$server" paced1 $((RAMP_BOUND + PACED_SECONDS + 60)) push \
                --url "$url/paced" --connections "$PACED_CONNS" --rate "$RATE" \
                --admin "$admin" --publish-rate 0 --max-outstanding "$OUTSTANDING" \
                --size "$SIZE" --duration "$PACED_SECONDS"
            ;;
        paced100)
            run_phase "$server" paced100 $((RAMP_BOUND + PACED_SECONDS + 60)) push \
                --url "$url/paced-{ch}" --channels 100 --connections "$PACED_CONNS" \
                --rate "$RATE" --admin "$admin" --publish-rate 0 --publishers 4 \
                --max-outstanding "$OUTSTANDING" --size "$SIZE" --duration "$PACED_SECONDS"
            ;;
        fixed1)
            run_phase "$server" fixed1 $((RAMP_BOUND + PACED_SECONDS + 60)) push \
                --url "$url/fixed" --connections "$PACED_CONNS" --rate "$RATE" \
                --admin "$admin" --publish-rate "$FIXED_RATE" --size "$SIZE" \
                --duration "$PACED_SECONDS"
            ;;
        latency)
            run_phase "$server" latency $((RAMP_BOUND + LATENCY_SECONDS + 60)) push \
                --url "$url/ch-{ch}" --channels 100 --connections "$CONNS" --rate "$RATE" \
                --admin "$admin" --publish-rate "$PUSH_RATE" --size "$SIZE" \
                --duration "$LATENCY_SECONDS"
            ;;
        echo)
            run_phase "$server" echo $((RAMP_BOUND + 60)) echo --url "$url/echo" \
                --connections "$ECHO_CONNS" --rate "$RATE" --msg-rate "$ECHO_RATE" \
                --size "$SIZE" --duration 5
            ;;
        churn)
            run_phase "$server" churn $((RAMP_BOUND + 60)) churn --url "$url/churn-{ch}" \
                --channels 100 --connections "$CHURN_CONNS" --rate "$RATE" --interval 1 \
                --churn 20% --duration 5.5
            ;;
        *) die "unknown phase $phase" ;;
        esac
    done
    stop_pid "$SERVER_PID" 15
    SERVER_PID=""
}

mkdir -p "$OUT"
if ((BUILD)); then
    log "cargo build --release -p ringcast -p wsload -p ringcast-bench-peer"
    (cd "$ROOT" && CARGO_TARGET_DIR=$TARGET_DIR cargo build --release -q \
        -p ringcast -p wsload -p ringcast-bench-peer)
fi
node_peer() { # server dir module: install the Node peer's pinned packages, or skip it
    local server=$1 dir=$2 module=$3
    [[ " $SERVERS " == *" $server "* ]] || return 0
    if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
        log "node/npm not found: skipping $server"
        SERVERS=$(echo "$SERVERS" | tr ' ' '\n' | grep -vx "$server" | xargs)
    elif [[ ! -d $dir/node_modules/$module ]]; then
        log "npm ci in $dir"
        (cd "$dir" && npm ci --no-audit --no-fund --silent)
    fi
}
node_peer node-ws "$NODE_DIR" ws
node_peer uws "$UWS_DIR" uwebsockets
if [[ $SERVERS =~ (tokio-uring|glommio)-peer ]]; then
    log "cargo build --release in $RT_DIR (separate workspace)"
    if ! (cd "$RT_DIR" && CARGO_TARGET_DIR=$TARGET_DIR/runtime-peers \
        cargo build --release -q 2>"$OUT/runtime-peers-build.log"); then
        log "runtime peers did not build (see $OUT/runtime-peers-build.log); skipping them"
        SERVERS=$(echo "$SERVERS" | tr ' ' '\n' | grep -v -e tokio-uring-peer -e glommio-peer | xargs)
    fi
fi

LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
STARTED=$(date -u +"%Y-%m-%d %H:%M UTC")
for server in $SERVERS; do
    run_server "$server"
done
LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)

# shellcheck disable=SC2086
python3 "$ROOT/tests/bench/compare_table.py" --out "$OUT" --results "$RESULTS" \
    --started "$STARTED" --load-before "$LOAD_BEFORE" --load-after "$LOAD_AFTER" \
    --phases "$PHASES" \
    --config "CONNS=$CONNS M=$M PROCS=$PROCS RATE=$RATE CONNECT_RATE=$CONNECT_RATE SIZE=$SIZE PUSH_RATE=$PUSH_RATE LATENCY_SECONDS=$LATENCY_SECONDS ECHO_CONNS=$ECHO_CONNS ECHO_RATE=$ECHO_RATE CHURN_CONNS=$CHURN_CONNS PACED_CONNS=$PACED_CONNS OUTSTANDING=$OUTSTANDING PACED_SECONDS=$PACED_SECONDS FIXED_RATE=$FIXED_RATE RINGCAST_FLAGS='$RINGCAST_FLAGS'" \
    $SERVERS
