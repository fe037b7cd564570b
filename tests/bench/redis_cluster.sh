#!/usr/bin/env bash
# Benchmark of the Redis cluster (issue 4): 3 ringcast nodes behind one redis-server, 3
# wsload processes (one per node, each from its own source addresses 127.0.N.1-8) holding
# CONNS connections together (50,000 by default: more than one process's fd limit).
#
# Reports, for --redis-mode interest and pattern:
#   - scale: one publish on one channel reaches all CONNS subscribers: how long it took;
#   - for 1, 100 and 10,000 channels shared by all nodes: deliveries/s of a burst
#     (first publish to the last subscriber's receipt, every connection must get every
#     message in order: seq_gaps = seq_dups = 0), publish->deliver p50/p99 at a paced rate
#     and under the burst (sampler clients on every node, payload "<seq>:<unix ns>"), and
#     Redis CPU seconds (utime+stime of /proc/<redis pid>/stat) per million deliveries;
#   - disjoint: channels with subscribers on one node each, where pattern mode makes Redis
#     send every message to every node.
# Prints a Markdown table and writes target/bench/redis_cluster.json (logs beside it).
#
# Usage:  tests/bench/redis_cluster.sh
#         CONNS=9000 CHANNELS=1,100 tests/bench/redis_cluster.sh     # a quick, smaller run
# Environment [defaults]: CONNS [50000]  CHANNELS [1,100,10000]  MODES [interest,pattern]
#   RATE [6000 connects/s per wsload]  SHARDS [2 per node]  DISJOINT_CHANNELS [1000]
#   BURST_DELIVERIES [5000000]  PACED_DELIVERIES [200000 per s]  SAMPLERS [10 per node]
#   CASES [scale,k,disjoint]  BUILD [1; 0 skips cargo build --release]
#   PUBSUB_LIMIT ["1gb 1gb 0": Redis client-output-buffer-limit for pub/sub clients. Redis'
#     default, "32mb 8mb 60", disconnects a node that falls that far behind a burst (it
#     loses those messages, reconnects and counts ringcast_broker_reconnects_total); the
#     bench measures throughput, so Redis may buffer the burst]  CARGO_TARGET_DIR [<repo>/target]
# Needs redis-server and the e2e venv's Python (websockets): bash .ci/run sets both up.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
OUT=$ROOT/target/bench
PYTHON=${PYTHON:-$ROOT/.venv/bin/python}
[ -x "$PYTHON" ] || PYTHON=python3

command -v redis-server >/dev/null || { echo "redis-server is missing (apt-get install redis-server)" >&2; exit 1; }
"$PYTHON" -c "import websockets" 2>/dev/null || { echo "$PYTHON lacks websockets (bash .ci/run makes .venv)" >&2; exit 1; }

if [ "${BUILD:-1}" = 1 ]; then
  (cd "$ROOT" && cargo build --release --quiet -p ringcast -p wsload)
fi
mkdir -p "$OUT"
exec "$PYTHON" "$ROOT/tests/bench/redis_cluster.py" bench \
  --ringcast "$TARGET_DIR/release/ringcast" --wsload "$TARGET_DIR/release/wsload" --out "$OUT" \
  --conns "${CONNS:-50000}" --channels "${CHANNELS:-1,100,10000}" --modes "${MODES:-interest,pattern}" \
  --rate "${RATE:-6000}" --shards "${SHARDS:-2}" --disjoint-channels "${DISJOINT_CHANNELS:-1000}" \
  --burst-deliveries "${BURST_DELIVERIES:-5000000}" --paced-deliveries "${PACED_DELIVERIES:-200000}" \
  --samplers "${SAMPLERS:-10}" --cases "${CASES:-scale,k,disjoint}" \
  --pubsub-limit "${PUBSUB_LIMIT:-1gb 1gb 0}"
