#!/usr/bin/env python3
"""Tables for tests/bench/compare.sh (stdlib only).

Reads <out>/<server>-<phase>/{report.json,measure.json} (the wsload JSON report and the
server's /proc measurements of each phase), derives the figures, writes the markdown
results (ratios to ringcast, machine, date, load average) to the top of --results (what
follows the END_MARK line there, other benchmarks' sections, is kept), the raw figures to
<out>/compare.json, and prints the table.
"""

import argparse
import datetime
import json
import os
import platform
import sys

LOWER, HIGHER = "lower", "higher"
# Ends the part of RESULTS.md this script writes; the rest of the file is kept.
END_MARK = "<!-- end of compare.sh output: other benchmarks' sections follow -->"


def kept_sections(path):
    """What follows END_MARK in the current results file (empty if none)."""
    try:
        with open(path) as f:
            text = f.read()
    except OSError:
        return ""
    _, mark, rest = text.partition(END_MARK)
    return rest if mark else ""


def load(path):
    try:
        with open(path) as f:
            return json.loads(f.readline())
    except (OSError, ValueError):
        return None


def get(d, *keys):
    for k in keys:
        if not isinstance(d, dict) or d.get(k) is None:
            return None
        d = d[k]
    return d


def cpu_s(measure, key):
    if not measure:
        return None
    return measure[key] / measure["clk_tck"]


def idle_bytes(report, measure):
    if not report or not measure or not report.get("connected"):
        return None
    return (measure["rss_after_ramp"] - measure["rss_before"]) / report["connected"]


def load_samples(path):
    """compare.sh's ramp samples, "<open descriptors> <VmRSS bytes>" a line; None if absent."""
    try:
        with open(path) as f:
            return [tuple(int(x) for x in line.split()) for line in f if line.strip()]
    except (OSError, ValueError):
        return None


def idle_slope(report, measure):
    """Marginal VmRSS per connection from CONNS/2 to CONNS held: the ramp's samples of
    (open descriptors, VmRSS), from the one nearest half the final count (either side: a
    fast ramp leaves few samples) to the last."""
    samples = measure and measure.get("samples")
    if not samples or len(samples) < 2:
        return None
    end_fds, end_rss = samples[-1]
    half = min(samples, key=lambda s: abs(s[0] - end_fds / 2))
    if end_fds - half[0] < end_fds / 4:
        return None
    return (end_rss - half[1]) / (end_fds - half[0])


def per_million(report, measure):
    if not report or not measure or not report.get("messages"):
        return None
    return cpu_s(measure, "cpu_phase_ticks") / (report["messages"] / 1e6)


def ms_per_1k_connects(report, measure):
    if not report or not measure or not report.get("connected"):
        return None
    return cpu_s(measure, "cpu_ramp_ticks") / report["connected"] * 1e6


def lost(report):
    if not report:
        return None
    return (get(report, "push", "lost") or 0) + report.get("failed", 0) + report.get(
        "closed_by_server", 0
    )


# (key, label, phase, function(report, measure), decimals, better)
METRICS = [
    ("idle_bytes_per_conn", "idle memory per connection (B)", "idle", idle_bytes, 0, LOWER),
    ("idle_slope", "idle memory slope, CONNS/2 to CONNS (B per connection)", "idle",
     idle_slope, 0, LOWER),
    ("idle_rss_mib", "server RSS with all connections idle (MiB)", "idle",
     lambda r, m: m and m["rss_after_ramp"] / 2**20, 1, LOWER),
    ("idle_connected", "connections held (of CONNS)", "idle",
     lambda r, m: r and r["connected"], 0, HIGHER),
    ("connect_rate", "connect rate (connections/s)", "idle",
     lambda r, m: r and r["connect_rate_per_s"], 0, HIGHER),
    ("connect_cpu", "server CPU per 1,000 connects (ms)", "idle", ms_per_1k_connects, 1, LOWER),
    ("fan1_rate", "fan-out 1 channel: deliveries/s", "fan1",
     lambda r, m: r and r["deliveries_per_s"], 0, HIGHER),
    ("fan1_cpu", "fan-out 1 channel: server CPU s per 1M deliveries", "fan1", per_million, 3,
     LOWER),
    ("fan1_lost", "fan-out 1 channel: lost + failed + closed", "fan1",
     lambda r, m: lost(r), 0, LOWER),
    ("fan100_rate", "fan-out 100 channels: deliveries/s", "fan100",
     lambda r, m: r and r["deliveries_per_s"], 0, HIGHER),
    ("fan100_cpu", "fan-out 100 channels: server CPU s per 1M deliveries", "fan100",
     per_million, 3, LOWER),
    ("fan100_lost", "fan-out 100 channels: lost + failed + closed", "fan100",
     lambda r, m: lost(r), 0, LOWER),
    ("paced1_rate", "paced fan-out 1 channel: deliveries/s", "paced1",
     lambda r, m: r and r["deliveries_per_s"], 0, HIGHER),
    ("paced1_cpu", "paced fan-out 1 channel: server CPU s per 1M deliveries", "paced1",
     per_million, 3, LOWER),
    ("paced1_p99", "paced fan-out 1 channel: publish->receive p99 (ms)", "paced1",
     lambda r, m: get(r, "latency", "p99_ms"), 2, LOWER),
    ("paced1_lost", "paced fan-out 1 channel: lost + failed + closed", "paced1",
     lambda r, m: lost(r), 0, LOWER),
    ("paced100_rate", "paced fan-out 100 channels: deliveries/s", "paced100",
     lambda r, m: r and r["deliveries_per_s"], 0, HIGHER),
    ("paced100_cpu", "paced fan-out 100 channels: server CPU s per 1M deliveries", "paced100",
     per_million, 3, LOWER),
    ("paced100_p99", "paced fan-out 100 channels: publish->receive p99 (ms)", "paced100",
     lambda r, m: get(r, "latency", "p99_ms"), 2, LOWER),
    ("paced100_lost", "paced fan-out 100 channels: lost + failed + closed", "paced100",
     lambda r, m: lost(r), 0, LOWER),
    ("fixed1_cpu", "fixed rate 1 channel: server CPU s per 1M deliveries", "fixed1",
     per_million, 3, LOWER),
    ("fixed1_p99", "fixed rate 1 channel: publish->receive p99 (ms)", "fixed1",
     lambda r, m: get(r, "latency", "p99_ms"), 2, LOWER),
    ("fixed1_lost", "fixed rate 1 channel: lost + failed + closed", "fixed1",
     lambda r, m: lost(r), 0, LOWER),
    ("lat_p50", "fixed rate: publish->receive p50 (ms)", "latency",
     lambda r, m: get(r, "latency", "p50_ms"), 2, LOWER),
    ("lat_p99", "fixed rate: publish->receive p99 (ms)", "latency",
     lambda r, m: get(r, "latency", "p99_ms"), 2, LOWER),
    ("lat_p999", "fixed rate: publish->receive p99.9 (ms)", "latency",
     lambda r, m: get(r, "latency", "p999_ms"), 2, LOWER),
    ("lat_max", "fixed rate: publish->receive max (ms)", "latency",
     lambda r, m: get(r, "latency", "max_ms"), 2, LOWER),
    ("lat_cpu", "fixed rate: server CPU s per 1M deliveries", "latency", per_million, 3, LOWER),
    ("lat_lost", "fixed rate: lost + failed + closed", "latency",
     lambda r, m: lost(r), 0, LOWER),
    ("echo_p50", "echo: round trip p50 (ms)", "echo",
     lambda r, m: get(r, "latency", "p50_ms"), 2, LOWER),
    ("echo_p99", "echo: round trip p99 (ms)", "echo",
     lambda r, m: get(r, "latency", "p99_ms"), 2, LOWER),
    ("echo_rate", "echo: echoes/s", "echo",
     lambda r, m: get(r, "echo", "echoes_per_s"), 0, HIGHER),
    ("echo_cpu", "echo: server CPU s per 1M echoes", "echo", per_million, 3, LOWER),
    ("echo_lost", "echo: lost", "echo", lambda r, m: get(r, "echo", "lost"), 0, LOWER),
    ("churn_p50", "churn: reconnect p50 (ms)", "churn",
     lambda r, m: get(r, "churn", "reconnect_latency", "p50_ms"), 2, LOWER),
    ("churn_p99", "churn: reconnect p99 (ms)", "churn",
     lambda r, m: get(r, "churn", "reconnect_latency", "p99_ms"), 2, LOWER),
    ("churn_failures", "churn: reconnect failures", "churn",
     lambda r, m: get(r, "churn", "reconnect_failures"), 0, LOWER),
    ("churn_cpu", "churn: server CPU s during 5 s of churn", "churn",
     lambda r, m: cpu_s(m, "cpu_phase_ticks"), 2, LOWER),
]

# wsload's own cost, from the ringcast runs.
CLIENT = [
    ("idle", "client memory per connection (B)", lambda r: get(r, "client", "rss_per_conn_bytes"), 0),
    ("idle", "client memory basis", lambda r: get(r, "client", "rss_per_conn_basis"), None),
    ("fan1", "client CPU s per 1M received messages (fan-out 1)",
     lambda r: get(r, "client", "cpu_s_per_million_messages"), 3),
    ("fan100", "client CPU s per 1M received messages (fan-out 100)",
     lambda r: get(r, "client", "cpu_s_per_million_messages"), 3),
    ("paced1", "client CPU s per 1M received messages (paced fan-out 1)",
     lambda r: get(r, "client", "cpu_s_per_million_messages"), 3),
    ("latency", "client CPU s per 1M received messages (fixed rate)",
     lambda r: get(r, "client", "cpu_s_per_million_messages"), 3),
]

RUNTIME_PEERS = ("tokio-uring-peer", "glommio-peer")
# The send floor is a reference, not a server to pick: it never "beats" ringcast; its own
# section says how far above it each server's delivery cost is.
FLOOR = "send-floor"
FLOOR_ROWS = ("fan1_cpu", "fan100_cpu", "paced1_cpu", "paced100_cpu", "fixed1_cpu", "lat_cpu")
PHASES = ("idle", "fan1", "fan100", "paced1", "paced100", "fixed1", "latency", "echo", "churn")


def server_load(out, server):
    try:
        with open(os.path.join(out, f"{server}-load")) as f:
            return f.read().split()[0]
    except (OSError, IndexError):
        return "-"


def fmt(value, decimals):
    if value is None:
        return "-"
    if decimals is None:
        return str(value)
    return f"{value:,.{decimals}f}"


def machine():
    model = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{os.cpu_count()} cores (nproc), Linux {platform.release()}, {model}"


def better(a, b, direction):
    """Whether a is strictly better than b."""
    return a < b if direction == LOWER else a > b


def floor_section(values, servers):
    """Server CPU per delivery as a multiple of the send floor's, one row per push phase."""
    labels = {key: label for key, label, *_ in METRICS}
    floor = values[FLOOR]
    lines = ["", "## Distance from the send floor", "",
             "Server CPU per delivery divided by the send floor's (one plain `send(2)` per "
             "delivery, no coalescing; below 1.00× a server coalesces frames into fewer "
             "sends than deliveries).", "",
             "| phase | send floor (CPU s per 1M) | " + " | ".join(servers) + " |",
             "|---|---:|" + "---:|" * len(servers)]
    for key in FLOOR_ROWS:
        base = floor.get(key)
        if not base:
            continue
        cells = [fmt(values[s].get(key) / base, 2) + "×" if values[s].get(key) else "n/a"
                 for s in servers]
        phase = labels[key].split(":")[0]
        lines.append(f"| {phase} | {fmt(base, 3)} | " + " | ".join(cells) + " |")
    return lines


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", required=True)
    parser.add_argument("--results", required=True)
    parser.add_argument("--started", required=True)
    parser.add_argument("--load-before", required=True)
    parser.add_argument("--load-after", required=True)
    parser.add_argument("--config", required=True)
    parser.add_argument("--phases", default=" ".join(PHASES),
                        help="phases this run measured; other phases' old data is ignored")
    parser.add_argument("servers", nargs="+")
    args = parser.parse_args()

    measured = set(args.phases.split())
    raw, values = {}, {}
    for server in args.servers:
        raw[server], values[server] = {}, {}
        for phase in PHASES:
            if phase not in measured:
                raw[server][phase] = {"report": None, "measure": None}
                continue
            d = os.path.join(args.out, f"{server}-{phase}")
            measure = load(os.path.join(d, "measure.json"))
            if measure is not None:
                measure["samples"] = load_samples(os.path.join(d, "samples"))
            raw[server][phase] = {
                "report": load(os.path.join(d, "report.json")),
                "measure": measure,
            }
        for key, _, phase, fn, _, _ in METRICS:
            r, m = raw[server][phase]["report"], raw[server][phase]["measure"]
            try:
                values[server][key] = fn(r, m)
            except (KeyError, TypeError, ZeroDivisionError):
                values[server][key] = None

    base = values.get("ringcast", {})
    header = ["metric"] + args.servers
    rows = []
    wins = []
    for key, label, _, _, decimals, direction in METRICS:
        if all(values[s].get(key) is None for s in args.servers):
            continue
        arrow = "↓" if direction == LOWER else "↑"
        row = [f"{label} {arrow}"]
        for server in args.servers:
            v = values[server].get(key)
            cell = fmt(v, decimals)
            ours = base.get(key)
            if server != "ringcast" and v is not None and ours:
                cell += f" ({v / ours:.2f}×)"
            if (not server.startswith("ringcast") and server != FLOOR and v is not None
                    and ours is not None):
                if better(v, ours, direction) and not (v == 0 and ours == 0):
                    wins.append((server, label, fmt(v, decimals), fmt(ours, decimals)))
            row.append(cell)
        rows.append(row)

    lines = [
        "# Benchmark results: ringcast and the servers users would otherwise pick",
        "",
        f"Written by `tests/bench/compare.sh` (run started {args.started}; this file is "
        f"rewritten by every full run).",
        "",
        f"- Machine: {machine()}.",
        f"- Load average (1, 5, 15 min) before the run: {args.load_before}; after: "
        f"{args.load_after}.",
        f"- Settings: `{args.config}`.",
    ]
    loads = [float(x) for x in (args.load_before + " " + args.load_after).split()]
    if max(loads, default=0.0) > (os.cpu_count() or 1):
        lines.append(
            "- **Caution**: the load average exceeded the number of cores around this run "
            "(other jobs shared the machine), so throughput and latency figures are noisy "
            "and the servers, run one after another, did not see the same load; repeat on a "
            "quiet machine before relying on a single figure."
        )
    lines += [
        "- Load generator: `wsload` (io_uring client on ringcast's own reactor) with its "
        "worker processes on the same two cores as the server, so every server shares "
        "the CPU with the load generator; server CPU seconds and RSS come from "
        "`/proc/PID`. Ratios in parentheses are server / ringcast; ↓ lower is better, "
        "↑ higher is better.",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "---|" + "---:|" * len(args.servers),
    ]
    rows.append(["load average (1 min) before the server started"]
                + [server_load(args.out, s) for s in args.servers])
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    lines += ["", "## Where another server beats ringcast", ""]
    if wins:
        lines += [f"- {s}: {label}: {v} vs ringcast {o}" for s, label, v, o in wins]
    else:
        lines.append("- Nowhere in this run.")
    if FLOOR in args.servers:
        lines += floor_section(values, [s for s in args.servers if s != FLOOR])
    lines += ["", "## Runtime check (tokio-uring and glommio)", ""]
    present = [s for s in args.servers if s in RUNTIME_PEERS]
    if not present:
        lines.append(
            "- Not run (set `BUILD_RUNTIME_PEERS=1`; see tests/bench/runtime-peers/README.md)."
        )
    for peer in present:
        peer_wins = [w for w in wins if w[0] == peer]
        if peer_wins:
            lines += [f"- **{peer} wins** on {label}: {v} vs ringcast {o}."
                      for _, label, v, o in peer_wins]
        elif any(values[peer].get(k) is not None for k, *_ in METRICS):
            lines.append(f"- {peer} wins nowhere against ringcast in this run.")
        else:
            lines.append(f"- {peer} produced no figures (see target/bench/{peer}.log).")
    ours = raw.get("ringcast", {})
    if ours:
        lines += ["", "## wsload's own cost (during the ringcast runs)", ""]
        for phase, label, fn, decimals in CLIENT:
            report = ours.get(phase, {}).get("report")
            value = fn(report) if report else None
            lines.append(f"- {label}: {fmt(value, decimals)}")
    text = "\n".join(lines) + "\n"
    kept = kept_sections(args.results)
    with open(args.results, "w") as f:
        f.write(text + "\n" + END_MARK + (kept or "\n"))
    print(text)

    summary = {"values": values, "raw": raw, "config": args.config,
               "started": args.started, "written": datetime.datetime.now().isoformat()}
    path = os.path.join(args.out, "compare.json")
    with open(path, "w") as f:
        json.dump(summary, f, indent=2)
        f.write("\n")
    print(f"wrote {args.results} and {path}", file=sys.stderr)


if __name__ == "__main__":
    main()
