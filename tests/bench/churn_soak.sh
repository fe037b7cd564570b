#!/usr/bin/env bash
# Churn soak (issue: production hardening, item 7): CONNS connections, CHURN of them
# closed and reopened every INTERVAL seconds for DURATION seconds while messages are
# published, against one ringcast. Reports the gateway's descriptors, RSS and open
# connections after the ramp and at the end (goal: flat within 5%), and the descriptors
# after every client left (goal: back to the idle count: no leaked fds).
#
# Usage:   tests/bench/churn_soak.sh                      # 15,000 conns, 10 minutes
#          DURATION=60 tests/bench/churn_soak.sh          # the short version (cargo test runs it)
# Environment: CONNS [15000] CHURN [20%] INTERVAL [10] DURATION [600] PUBLISH_RATE [50/s]
#   BIN_DIR [target/release; built unless BUILD=0] PORTS [12000-12003] ADMIN [127.0.0.1:12090]
#   OUT [target/bench/churn_soak.json]
# Every process it starts is stopped by pid; every wait is bounded.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
CONNS=${CONNS:-15000}; CHURN=${CHURN:-20%}; INTERVAL=${INTERVAL:-10}; DURATION=${DURATION:-600}
PUBLISH_RATE=${PUBLISH_RATE:-50}; PORTS=${PORTS:-12000-12003}; ADMIN=${ADMIN:-127.0.0.1:12090}
BIN_DIR=${BIN_DIR:-$ROOT/target/release}; OUT=${OUT:-$ROOT/target/bench/churn_soak.json}
WORK=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$WORK"; }
trap cleanup EXIT
log() { echo "[churn-soak] $*" >&2; }

if [ "${BUILD:-1}" = 1 ]; then
  (cd "$ROOT" && cargo build --release -q -p ringcast -p wsload)
fi
mkdir -p "$(dirname "$OUT")"

"$BIN_DIR/ringcast" --listen "127.0.0.1:$PORTS" --admin "$ADMIN" --shards 2 --no-pin \
  --drain-seconds 1 >"$WORK/ringcast.log" 2>&1 &
gw=$!; pids+=("$gw")
for _ in $(seq 100); do curl -sf "http://$ADMIN/healthz" >/dev/null && break; sleep 0.1; done

fds() { ls "/proc/$gw/fd" | wc -l; }
rss() { awk '/VmRSS/ {print $2 * 1024}' "/proc/$gw/status"; }
conns() { curl -sf "http://$ADMIN/metrics" | awk '/^ringcast_connections\{/ {s += $2} END {print s + 0}'; }
sample() { echo "{\"fds\":$(fds),\"rss\":$(rss),\"connections\":$(conns)}"; }

idle=$(sample); log "idle: $idle"
"$BIN_DIR/wsload" churn --url "ws://127.0.0.1:$PORTS/soak-{ch}" --channels 10 \
  --connections "$CONNS" --churn "$CHURN" --interval "$INTERVAL" --duration "$DURATION" \
  --source-ips 127.0.0.1-127.0.0.10 --rate 5000 \
  --ready-file "$WORK/ready" --done-file "$WORK/done" --json "$WORK/churn.json" \
  >"$WORK/churn.out" 2>"$WORK/churn.err" &
ws=$!; pids+=("$ws")
for _ in $(seq 600); do [ -f "$WORK/ready" ] && break; sleep 0.1; done
[ -f "$WORK/ready" ] || { log "ramp did not finish"; tail "$WORK/churn.err" >&2; exit 1; }
sleep 2
start=$(sample); log "after ramp: $start"
count=$(( DURATION * PUBLISH_RATE ))
"$BIN_DIR/wsload" publish --admin "http://$ADMIN" --channel-prefix soak- --channels 10 \
  --count "$count" --rate "$PUBLISH_RATE" --timeout $((DURATION + 60)) \
  >"$WORK/publish.out" 2>/dev/null &
pub=$!; pids+=("$pub")
rss_trace=()
for i in $(seq $(( (DURATION + 60) * 10 ))); do
  [ -f "$WORK/done" ] && break
  [ $(( i % 600 )) = 0 ] && rss_trace+=("$(rss)")
  sleep 0.1
done
log "RSS every minute: ${rss_trace[*]}"
end=$(sample); log "at the end: $end"
wait "$ws" || log "wsload churn exited non-zero"
kill "$pub" 2>/dev/null || true
# All clients are gone: give the gateway its close handshakes, then count again.
for _ in $(seq 50); do [ "$(conns)" = 0 ] && break; sleep 0.2; done
sleep 1
after=$(sample); log "after clients left: $after"
python3 - "$idle" "$start" "$end" "$after" "$WORK/churn.json" "$OUT" "$CONNS" "$DURATION" <<'PY'
import json, sys
idle, start, end, after = (json.loads(a) for a in sys.argv[1:5])
churn = json.load(open(sys.argv[5]))
def drift(key):
    return round(100.0 * (end[key] - start[key]) / max(start[key], 1), 2)
report = {
    "connections_target": int(sys.argv[7]), "duration_s": int(sys.argv[8]),
    "idle": idle, "start": start, "end": end, "after_clients_left": after,
    "drift_percent": {k: drift(k) for k in ("fds", "rss", "connections")},
    "leaked_fds": after["fds"] - idle["fds"],
    "wsload": churn,
}
json.dump(report, open(sys.argv[6], "w"), indent=2)
print(json.dumps(report))
print(f"{'':24}{'start':>12}{'end':>12}{'drift':>9}", file=sys.stderr)
for k in ("fds", "rss", "connections"):
    print(f"{k:24}{start[k]:>12}{end[k]:>12}{report['drift_percent'][k]:>8}%", file=sys.stderr)
print(f"leaked fds after all clients left: {report['leaked_fds']}", file=sys.stderr)
PY
