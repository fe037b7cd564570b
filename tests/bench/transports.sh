#!/usr/bin/env bash
# Transport benchmark (protocol breadth issue): idle gateway RSS per connection for
# WebSocket (with and without permessage-deflate negotiated: no per-connection zlib state
# means no difference), Server-Sent Events and held long-polls, and fan-out of a 2 KiB
# message with compression off vs on (compressed once per message). The fan-out body is
# wsload's padded sequence-numbered payload, which compresses far better than real JSON.
#
# Usage:  tests/bench/transports.sh            (CONNS [10000] per transport, M [200])
# Environment: BIN_DIR [target/release; built unless BUILD=0], PORT [12300], ADMIN
#   [127.0.0.1:12390], OUT [target/bench/transports.json]
# Every process it starts is stopped by pid; every wait is bounded.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
CONNS=${CONNS:-10000}; M=${M:-200}; PORT=${PORT:-12300}; ADMIN=${ADMIN:-127.0.0.1:12390}
BIN_DIR=${BIN_DIR:-$ROOT/target/release}; OUT=${OUT:-$ROOT/target/bench/transports.json}
WORK=$(mktemp -d); pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$WORK"; }
trap cleanup EXIT
log() { echo "[transports] $*" >&2; }
[ "${BUILD:-1}" = 1 ] && (cd "$ROOT" && cargo build --release -q -p ringcast -p wsload)
mkdir -p "$(dirname "$OUT")"

start_gateway() { # extra flags...
  "$BIN_DIR/ringcast" --listen "127.0.0.1:$PORT" --admin "$ADMIN" --shards 2 --no-pin \
    --drain-seconds 1 --poll-timeout 600 --max-connections 100000 "$@" >"$WORK/gw.log" 2>&1 &
  GW=$!; pids+=("$GW")
  for _ in $(seq 100); do curl -sf "http://$ADMIN/healthz" >/dev/null && return; sleep 0.1; done
  log "gateway did not start"; exit 1
}
stop_gateway() { kill "$GW"; wait "$GW" 2>/dev/null || true; }
rss() { awk '/VmRSS/ {print $2 * 1024}' "/proc/$GW/status"; }
cpu() { awk '{print ($14 + $15) / '"$(getconf CLK_TCK)"'}' "/proc/$GW/stat"; }
conns() { curl -sf "http://$ADMIN/metrics" | awk '/^ringcast_connections\{/ {s += $2} END {print s + 0}'; }
wait_conns() { for _ in $(seq 300); do [ "$(conns)" -ge "$1" ] && return; sleep 0.2; done; log "only $(conns) connections"; }

# Plain-HTTP idle clients (SSE or long-poll): one process holding CONNS raw sockets.
hold_plain() { # path-prefix
  python3 - "$PORT" "$CONNS" "$1" "$WORK/plain.ready" <<'PY' &
import socket, sys, time
port, n, prefix, ready = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
socks = []
for i in range(n):
    s = socket.socket()
    s.bind((f"127.0.0.{2 + i // 20000}", 0))
    s.connect(("127.0.0.1", port))
    s.sendall(f"GET {prefix}{i % 10} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    socks.append(s)
open(ready, "w").write(str(len(socks)))
time.sleep(120)
PY
  pids+=("$!"); HOLDER=$!
  for _ in $(seq 600); do [ -f "$WORK/plain.ready" ] && break; sleep 0.1; done
  rm -f "$WORK/plain.ready"
}

idle_ws() { # [--deflate]
  rm -f "$WORK/ws.ready"
  "$BIN_DIR/wsload" hold --url "ws://127.0.0.1:$PORT/idle-{ch}" --channels 10 --connections "$CONNS" \
    --rate 0 --source-ips 127.0.0.2-127.0.0.3 --duration 20 --ready-file "$WORK/ws.ready" "$@" \
    >/dev/null 2>&1 &
  HOLDER=$!; pids+=("$HOLDER")
  for _ in $(seq 600); do [ -f "$WORK/ws.ready" ] && break; sleep 0.1; done
}

declare -A IDLE
for transport in websocket websocket-deflate sse poll; do
  start_gateway --compression
  before=$(rss)
  case $transport in
    websocket) idle_ws ;;
    websocket-deflate)
      idle_ws --deflate
      # Every connection has inflated and received one compressed message before measuring.
      wait_conns "$CONNS"
      head -c 2048 /dev/zero | tr '\0' 'a' | curl -sf -o /dev/null --data-binary @- "http://$ADMIN/publish/idle-1"
      ;;
    sse) hold_plain /sse/idle- ;;
    poll) hold_plain /poll/idle- ;;
  esac
  wait_conns "$CONNS"; sleep 2
  after=$(rss)
  IDLE[$transport]=$(( (after - before) / CONNS ))
  log "$transport: $(( after - before )) bytes for $CONNS connections = ${IDLE[$transport]} B/conn"
  kill "$HOLDER" 2>/dev/null || true
  stop_gateway
done

# Fan-out of a 2 KiB JSON message, compression off vs on (clients offer deflate).
declare -A FAN_RATE FAN_CPU
payload_size=2048
for mode in off on; do
  flags=(); [ "$mode" = on ] && flags=(--compression)
  start_gateway "${flags[@]}"
  rm -f "$WORK/fan.ready" "$WORK/fan.done"
  deflate=(); [ "$mode" = on ] && deflate=(--deflate)
  "$BIN_DIR/wsload" hold --url "ws://127.0.0.1:$PORT/fan" --connections "$CONNS" --rate 0 \
    --source-ips 127.0.0.2-127.0.0.3 --duration 90 --expect-messages "$M" "${deflate[@]}" \
    --ready-file "$WORK/fan.ready" --done-file "$WORK/fan.done" --json "$WORK/fan-$mode.json" \
    >/dev/null 2>"$WORK/fan-$mode.err" &
  h=$!; pids+=("$h")
  for _ in $(seq 600); do [ -f "$WORK/fan.ready" ] && break; sleep 0.1; done
  wait_conns "$CONNS"; sleep 1
  c0=$(cpu)
  "$BIN_DIR/wsload" publish --admin "http://$ADMIN" --channel fan --count "$M" --rate 0 \
    --size "$payload_size" >/dev/null 2>&1
  for _ in $(seq 900); do [ -f "$WORK/fan.done" ] && break; sleep 0.1; done
  c1=$(cpu)
  wait "$h" || true
  FAN_RATE[$mode]=$(python3 -c 'import json,sys; print(round(json.load(open(sys.argv[1]))["deliveries_per_s"]))' "$WORK/fan-$mode.json")
  FAN_CPU[$mode]=$(python3 -c "print(round(($c1 - $c0) / ($CONNS * $M / 1e6), 3))")
  sleep 1.2 # shards flush their counters once a second
  compressed=$(curl -sf "http://$ADMIN/metrics" | awk '/^ringcast_messages_compressed_total/ {s += $2} END {print s + 0}')
  log "compression $mode: ${FAN_RATE[$mode]} deliveries/s, ${FAN_CPU[$mode]} CPU s per 1M deliveries, $compressed compressions"
  stop_gateway
done

python3 - "$OUT" "$CONNS" "$M" "${IDLE[websocket]}" "${IDLE[websocket-deflate]}" "${IDLE[sse]}" "${IDLE[poll]}" \
  "${FAN_RATE[off]}" "${FAN_RATE[on]}" "${FAN_CPU[off]}" "${FAN_CPU[on]}" <<'PY'
import json, sys
out, conns, m, ws, wsd, sse, poll, r_off, r_on, c_off, c_on = sys.argv[1:]
report = {
    "connections": int(conns), "messages": int(m), "message_bytes": 2048,
    "idle_rss_per_conn_bytes": {"websocket": int(ws), "websocket_deflate": int(wsd),
                                "sse": int(sse), "poll": int(poll)},
    "fanout": {"off": {"deliveries_per_s": int(r_off), "cpu_s_per_million": float(c_off)},
               "on": {"deliveries_per_s": int(r_on), "cpu_s_per_million": float(c_on)}},
}
json.dump(report, open(out, "w"), indent=2)
print(f"{'idle RSS per connection (B)':40}{'websocket':>10}{'ws+deflate':>11}{'sse':>10}{'poll':>10}")
print(f"{'':40}{ws:>10}{wsd:>11}{sse:>10}{poll:>10}")
print(f"{'fan-out 2 KiB JSON':40}{'off':>10}{'on':>10}{'on/off':>10}")
print(f"{'  deliveries/s':40}{r_off:>10}{r_on:>10}{int(r_on)/max(int(r_off),1):>10.2f}")
print(f"{'  CPU s per 1M deliveries':40}{c_off:>10}{c_on:>10}{float(c_on)/max(float(c_off),1e-9):>10.2f}")
PY
