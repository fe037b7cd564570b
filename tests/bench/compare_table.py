#!/usr/bin/env python3
"""Table and JSON for tests/bench/compare.sh (stdlib only).

Reads <out>/<server>-<phase>/{hold.json,publish.json,measure.json} for phases A and B of each
server, derives the metrics, prints `metric | ringcast | bench-peer | ratio` and writes
<out>/compare.json.
"""

import argparse
import json
import os
import sys

# (key, label, decimals)
METRICS = [
    ("idle_bytes_per_conn", "idle memory per connection (B)", 0),
    ("server_rss_mib_after_ramp", "server RSS after ramp (MiB)", 1),
    ("connect_rate_per_s", "connections/s (ramp)", 0),
    ("connected", "connected (phase A)", 0),
    ("a_deliveries_per_s", "A: 1 channel, deliveries/s", 0),
    ("a_cpu_s_per_million", "A: server CPU s per 1M deliveries", 3),
    ("a_complete", "A: connections with all M in order", 0),
    ("b_deliveries_per_s", "B: N channels, deliveries/s", 0),
    ("b_cpu_s_per_million", "B: server CPU s per 1M deliveries", 3),
    ("b_complete", "B: connections with all M in order", 0),
]


def load(path):
    try:
        with open(path) as f:
            return json.loads(f.readline())
    except (OSError, ValueError):
        return None


def phase_metrics(out, server, phase):
    directory = os.path.join(out, f"{server}-{phase}")
    hold = load(os.path.join(directory, "hold.json"))
    measure = load(os.path.join(directory, "measure.json"))
    publish = load(os.path.join(directory, "publish.json"))
    return hold, measure, publish


def cpu_per_million(hold, measure):
    if not hold or not measure or not hold.get("messages"):
        return None
    cpu_s = measure["cpu_ticks"] / measure["clk_tck"]
    return cpu_s / (hold["messages"] / 1e6)


def server_metrics(out, server):
    hold_a, measure_a, publish_a = phase_metrics(out, server, "A")
    hold_b, measure_b, publish_b = phase_metrics(out, server, "B")
    metrics = {}
    if hold_a and measure_a:
        connected = hold_a["connected"]
        grown = measure_a["rss_after_ramp"] - measure_a["rss_before"]
        metrics["idle_bytes_per_conn"] = grown / connected if connected else None
        metrics["server_rss_mib_after_ramp"] = measure_a["rss_after_ramp"] / 2**20
        metrics["connect_rate_per_s"] = hold_a["connect_rate_per_s"]
        metrics["connected"] = connected
    for prefix, hold, measure in (("a", hold_a, measure_a), ("b", hold_b, measure_b)):
        if hold:
            metrics[f"{prefix}_deliveries_per_s"] = hold["deliveries_per_s"]
            metrics[f"{prefix}_complete"] = hold["conns_complete"]
        metrics[f"{prefix}_cpu_s_per_million"] = cpu_per_million(hold, measure)
    metrics["raw"] = {
        "A": {"hold": hold_a, "publish": publish_a, "measure": measure_a},
        "B": {"hold": hold_b, "publish": publish_b, "measure": measure_b},
    }
    return metrics


def fmt(value, decimals):
    if value is None:
        return "-"
    return f"{value:,.{decimals}f}"


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", required=True)
    parser.add_argument("--conns", type=int, required=True)
    parser.add_argument("--m", type=int, required=True)
    parser.add_argument("--channels-b", type=int, required=True)
    parser.add_argument("--procs", type=int, required=True)
    parser.add_argument("--rate", type=int, required=True)
    parser.add_argument("--size", type=int, required=True)
    parser.add_argument("servers", nargs="+")
    args = parser.parse_args()

    results = {server: server_metrics(args.out, server) for server in args.servers}
    ratios = {}
    if "ringcast" in results and "bench-peer" in results:
        for key, _, _ in METRICS:
            ours, theirs = results["ringcast"].get(key), results["bench-peer"].get(key)
            if ours is not None and theirs:
                ratios[key] = ours / theirs

    columns = ["metric"] + args.servers + (["ratio"] if ratios else [])
    rows = []
    for key, label, decimals in METRICS:
        row = [label] + [fmt(results[s].get(key), decimals) for s in args.servers]
        if ratios:
            row.append(fmt(ratios.get(key), 2))
        rows.append(row)
    widths = [max(len(r[i]) for r in rows + [columns]) for i in range(len(columns))]
    print(
        f"{args.conns} connections, M={args.m}, phase B over {args.channels_b} channels, "
        f"{args.size}-byte bodies"
    )
    for i, row in enumerate([columns] + rows):
        cells = [row[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(row[1:], widths[1:])]
        print(" | ".join(cells))
        if i == 0:
            print("-+-".join("-" * w for w in widths))
    if ratios:
        print("ratio = ringcast / bench-peer")

    summary = {
        "config": {
            "conns": args.conns,
            "m": args.m,
            "channels_b": args.channels_b,
            "procs": args.procs,
            "rate": args.rate,
            "size": args.size,
        },
        "servers": results,
        "ratio_ringcast_over_bench_peer": ratios,
    }
    path = os.path.join(args.out, "compare.json")
    with open(path, "w") as f:
        json.dump(summary, f, indent=2)
        f.write("\n")
    print(f"wrote {path}", file=sys.stderr)


if __name__ == "__main__":
    main()
