#!/usr/bin/env python3
"""What a second shard costs (issue 13): server CPU per delivery with --shards 1 and
--shards 2 side by side, 10,000 subscribers of 1 channel and of 100 channels, at a fixed
rate far from saturation (50,000 deliveries/s) and at a high one (default 300,000
deliveries/s asked, more than this 2-core box delivers with wsload on the same cores).
wsload (release) is the client; server CPU comes from /proc. Prints one JSON object, the
load average at start first.

Usage: tests/bench/mesh_scaling.py [--bin target/release/ringcast]
       [--wsload target/release/wsload] [--subscribers 10000] [--seconds 8]
       [--rates 50000,300000] [--repeat 1]
Every run is bounded by wsload's --duration; every process is stopped by its pid.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from abuse import Gateway, push_figures  # noqa: E402


def wait_ready(path, seconds=120):
    deadline = time.time() + seconds
    while time.time() < deadline:
        if os.path.exists(path):
            return
        time.sleep(0.1)
    raise RuntimeError(f"wsload not ready within {seconds} s")


def run(args, workdir, shards, channels, deliveries_per_s):
    publish_rate = max(1, deliveries_per_s * channels // args.subscribers)
    gw = Gateway(args.bin, shards=shards)
    try:
        ready = os.path.join(workdir, f"ready-{shards}-{channels}-{deliveries_per_s}")
        cmd = [args.wsload, "push", "--url", f"ws://127.0.0.1:{gw.port}/ch-{{ch}}",
               "--channels", str(channels), "--connections", str(args.subscribers),
               "--admin", f"http://127.0.0.1:{gw.admin}", "--publish-rate",
               str(publish_rate), "--duration", str(args.seconds), "--size", "64",
               "--tolerate", "100%", "--ready-file", ready]
        child = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                 text=True)
        wait_ready(ready)
        figures = push_figures(gw, child)
        figures["deliveries_per_s"] = round(figures["deliveries"] / args.seconds)
        return figures
    finally:
        gw.stop()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--bin", default="target/release/ringcast")
    parser.add_argument("--wsload", default="target/release/wsload")
    parser.add_argument("--subscribers", type=int, default=10000)
    parser.add_argument("--seconds", type=int, default=8)
    parser.add_argument("--rates", default="50000,300000")
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args()
    out = {"load_at_start": open("/proc/loadavg").read().split()[:3],
           "cores": os.cpu_count(), "subscribers": args.subscribers}
    with tempfile.TemporaryDirectory() as workdir:
        for rate in (int(r) for r in args.rates.split(",")):
            for channels in (1, 100):
                row = {}
                for shards in (1, 2):
                    row[f"shards_{shards}"] = [run(args, workdir, shards, channels, rate)
                                               for _ in range(args.repeat)]
                one = min(r["server_cpu_us_per_delivery"] for r in row["shards_1"])
                two = min(r["server_cpu_us_per_delivery"] for r in row["shards_2"])
                row["cpu_ratio_2_to_1"] = round(two / one, 3) if one else None
                out[f"rate_{rate}_channels_{channels}"] = row
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
