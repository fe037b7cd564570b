#!/usr/bin/env python3
"""The rolling restart of issue 12, at full size: Redis, two gateway nodes A and B (and a
third, P, that only takes the publishes), 5,000 `wsload hold --resume` subscribers over
20 channels spread over A and B, one publisher at 200 messages/s. A is drained with
SIGTERM (its clients move to B), started again on the same ports, then B is drained
(everyone moves to A) and started again. wsload checks every offset of every connection
across its reconnections.

Reports: messages lost, repeated and not recovered (all must be 0), connections that got
every message, reconnect (connect + handshake) and recovery (server close -> every missed
message in) latency p50/p99, handshakes deferred with 503 + Retry-After, and the Redis
commands per publish (INFO commandstats over the whole run, resumptions included).

Usage: tests/bench/rolling_restart.py [--bin target/release/ringcast]
       [--wsload target/release/wsload] [--clients 5000] [--per-channel 200] [--shards N]
Every loop is bounded; every process is stopped by its pid.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from abuse import free_port  # noqa: E402
from recovery_storm import commandstats, redis_cpu, start_redis  # noqa: E402

CHANNELS = 20
RATE = 200


class Node:
    """A gateway on fixed ports, so it can be restarted in place as a rollout does."""

    def __init__(self, binary, redis_url, log, shards):
        self.binary, self.redis_url, self.log, self.shards = binary, redis_url, log, shards
        self.port, self.admin = free_port(), free_port()
        self.proc = None
        self.start()

    def start(self):
        self.proc = subprocess.Popen(
            [self.binary, "--listen", f"127.0.0.1:{self.port}",
             "--admin", f"127.0.0.1:{self.admin}", "--no-pin", *self.shards,
             "--redis", self.redis_url, "--history-size", "1000",
             "--drain-seconds", "2", "--max-connections", "15000"],
            stdout=subprocess.DEVNULL, stderr=self.log)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                text = urllib.request.urlopen(
                    f"http://127.0.0.1:{self.admin}/metrics", timeout=1).read().decode()
                if any(line.startswith("ringcast_broker_up") and line.endswith(" 1")
                       for line in text.splitlines()):
                    return
            except OSError:
                pass
            time.sleep(0.1)
        self.stop()
        sys.exit("gateway did not start")

    def drain_and_restart(self):
        """SIGTERM, wait for the drain to end, start again; returns the seconds it was
        gone."""
        began = time.monotonic()
        self.proc.terminate()
        self.proc.wait(timeout=30)
        self.start()
        return time.monotonic() - began

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--bin", default="target/release/ringcast")
    parser.add_argument("--wsload", default="target/release/wsload")
    parser.add_argument("--clients", type=int, default=5000)
    parser.add_argument("--per-channel", type=int, default=200,
                        help="messages per channel (20 channels at 200/s)")
    parser.add_argument("--shards", type=int, help="shards per node (default: one per core)")
    args = parser.parse_args()
    load_at_start = open("/proc/loadavg").read().split()[:3]
    redis, port = start_redis()
    nodes, runs = [], []
    workdir = tempfile.mkdtemp(prefix="rolling-restart-")
    log = open(os.path.join(workdir, "gateways.log"), "w")
    try:
        url = f"redis://127.0.0.1:{port}/0"
        shards = ("--shards", str(args.shards)) if args.shards else ()
        entry, a, b = (Node(args.bin, url, log, shards) for _ in range(3))
        nodes += [entry, a, b]
        ready = os.path.join(workdir, "ready")
        report_file = os.path.join(workdir, "hold.json")
        hold = subprocess.Popen(
            [args.wsload, "hold", "--resume",
             "--url", f"ws://127.0.0.1:{a.port}/roll-{{ch}},ws://127.0.0.1:{b.port}/roll-{{ch}}",
             "--connections", str(args.clients), "--channels", str(CHANNELS),
             "--expect-messages", str(args.per_channel), "--rate", "2000",
             "--duration", str(args.per_channel * CHANNELS / RATE + 60),
             "--ready-file", ready, "--json", report_file],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        runs.append(hold)
        deadline = time.monotonic() + 60
        while not os.path.exists(ready):
            if time.monotonic() > deadline or hold.poll() is not None:
                sys.exit("wsload did not ramp")
            time.sleep(0.1)
        before, cpu_before = commandstats(port), redis_cpu(port)
        total = args.per_channel * CHANNELS
        publisher = subprocess.Popen(
            [args.wsload, "publish", "--admin", f"http://127.0.0.1:{entry.admin}",
             "--channel-prefix", "roll-", "--channels", str(CHANNELS),
             "--count", str(total), "--rate", str(RATE), "--size", "64"],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        runs.append(publisher)
        time.sleep(total / RATE / 5)
        a_gone = a.drain_and_restart()
        time.sleep(total / RATE / 5)
        b_gone = b.drain_and_restart()
        published = json.loads(publisher.communicate(timeout=total / RATE + 60)[0]
                               .strip().splitlines()[-1])
        hold.wait(timeout=total / RATE + 120)
        after, cpu_after = commandstats(port), redis_cpu(port)
        report = json.load(open(report_file))
        resume = report["resume"]
        calls = {k: after.get(k, 0) - before.get(k, 0) for k in after}
        calls = {k: v for k, v in calls.items() if v > 0 and k not in ("info", "ping")}
        n = published["published"]

        def p(summary, key):
            return summary[key] if summary else None
        print(json.dumps({
            "load_at_start": load_at_start,
            "clients": args.clients,
            "shards": args.shards or os.cpu_count(),
            "published": n,
            "wsload_exit": hold.returncode,
            "deliveries": report["messages"],
            "lost": report["seq_gaps"],
            "duplicated": report["seq_dups"],
            "not_recovered": resume["not_recovered"],
            "connections_complete": report["conns_complete"],
            "server_closes": resume["server_closes"],
            "recovered": resume["recovered"],
            "reconnect_retries": resume["retries"],
            "deferred_503": report["deferred"],
            "failed": report["failed"],
            "reconnect_ms_p50_p99": [p(resume["reconnect_latency"], "p50_ms"),
                                     p(resume["reconnect_latency"], "p99_ms")],
            "recovery_ms_p50_p99": [p(resume["recovery_latency"], "p50_ms"),
                                    p(resume["recovery_latency"], "p99_ms")],
            "publish_to_receive_ms_p50_p99": [p(report["latency"], "p50_ms"),
                                              p(report["latency"], "p99_ms")],
            "node_a_gone_s": round(a_gone, 2),
            "node_b_gone_s": round(b_gone, 2),
            "redis_commands_per_publish": round(sum(calls.values()) / max(n, 1), 3),
            "redis_calls": calls,
            "redis_cpu_s": round(cpu_after - cpu_before, 3),
        }, indent=1))
        ok = (hold.returncode == 0 and report["seq_gaps"] == 0 and report["seq_dups"] == 0
              and resume["not_recovered"] == 0
              and report["conns_complete"] == args.clients)
        sys.exit(0 if ok else 1)
    finally:
        for run in runs:
            if run.poll() is None:
                run.kill()
                run.wait()
        for node in nodes:
            node.stop()
        redis.terminate()
        redis.wait()


if __name__ == "__main__":
    main()
