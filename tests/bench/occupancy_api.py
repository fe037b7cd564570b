#!/usr/bin/env python3
"""What the occupancy API costs at the largest size one process allows.

Starts a release `ringcast --shards 2` (fd limit 20,000) and `wsload hold` with
19,000 WebSocket connections, then, while they are held:
- `big`: every connection subscribed to one channel;
- `spread`: the connections over 10,000 channels (`/ch-{ch}`), so a listing has
  10,000 channels to page through.
For each it times GET /channels/<ch> and GET /channels?limit=N over one keep-alive
admin connection (p50/p99 of --requests sequential requests) and compares the shard
threads' CPU time (from /proc/<pid>/task/*/stat, threads named ringcast-shard-*) over
an idle --window with the same window while one client asks the API as fast as it can
(nine GET /channels/<ch> to one listing of 100). Prints one JSON line.

Usage: tests/bench/occupancy_api.py [--connections 19000] [--requests 2000]
Every process is started here on free loopback ports and killed by pid.
"""

import argparse
import http.client
import json
import os
import resource
import socket
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TICKS = os.sysconf("SC_CLK_TCK")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def free_range(n):
    for _ in range(200):
        first = free_port()
        ok = True
        for p in range(first, first + n):
            with socket.socket() as s:
                try:
                    s.bind(("127.0.0.1", p))
                except OSError:
                    ok = False
                    break
        if ok:
            return first
    raise SystemExit("no free port range")


def shard_cpu(pid):
    """Seconds of CPU used so far by the shard threads of `pid`."""
    total = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/comm") as f:
                if not f.read().startswith("ringcast-shard"):
                    continue
            with open(f"/proc/{pid}/task/{tid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except OSError:
            continue
    return total / TICKS


def percentile(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * p))]


def time_requests(admin, path, n):
    conn = http.client.HTTPConnection("127.0.0.1", admin, timeout=10)
    times = []
    body = None
    for _ in range(n):
        start = time.perf_counter()
        conn.request("GET", path)
        response = conn.getresponse()
        body = response.read()
        times.append(time.perf_counter() - start)
        assert response.status == 200, (path, response.status, body[:200])
    conn.close()
    return {
        "p50_us": round(percentile(times, 0.5) * 1e6),
        "p99_us": round(percentile(times, 0.99) * 1e6),
        "bytes": len(body),
    }, json.loads(body)


def run_case(name, path_template, channels, args):
    first = free_range(4)
    admin = free_port()
    env = dict(os.environ, RUST_LOG="warn")
    gateway = subprocess.Popen(
        [f"{ROOT}/target/release/ringcast", "--shards", "2",
         "--listen", f"127.0.0.1:{first}-{first + 3}", "--admin", f"127.0.0.1:{admin}"],
        env=env, stdout=subprocess.DEVNULL,
        preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (20000, 20000)))
    load = None
    try:
        for _ in range(200):
            try:
                socket.create_connection(("127.0.0.1", admin), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.05)
        ready = tempfile.mktemp(prefix="occupancy-ready-")
        load = subprocess.Popen(
            [f"{ROOT}/target/release/wsload", "hold",
             "--url", f"ws://127.0.0.1:{first}-{first + 3}{path_template}",
             "--connections", str(args.connections), "--channels", str(channels),
             "--rate", "5000", "--duration", "600", "--ready-file", ready,
             "--source-ips", "127.0.0.1-127.0.0.4"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        ramp_start = time.time()
        while not os.path.exists(ready):
            assert time.time() - ramp_start < 120, "ramp took too long"
            assert load.poll() is None, "wsload ended"
            time.sleep(0.2)
        # Wait until the counts are in (reports every 50 ms, published each turn). A
        # listing holds at most 1,000 channels, so the spread case (ch-0..ch-9999) is
        # read as ch-0..ch-9 one by one and the rest by two-digit prefix (≤ 111 each).
        def node_count(path):
            c = http.client.HTTPConnection("127.0.0.1", admin, timeout=10)
            c.request("GET", path)
            body = json.loads(c.getresponse().read())
            c.close()
            if "channels" in body:
                return sum(ch["subscribers"] for ch in body["channels"])
            return body["subscribers_node"]

        if channels <= 1000:
            paths = ["/channels?limit=1000"]
        else:
            paths = [f"/channels/ch-{d}" for d in range(10)] + [
                f"/channels?prefix=ch-{d}{e}&limit=1000" for d in range(1, 10) for e in range(10)
            ]
        conn_total = 0
        for _ in range(100):
            conn_total = sum(node_count(path) for path in paths)
            if conn_total == args.connections:
                break
            time.sleep(0.1)
        one = path_template.replace("{ch}", "0").lstrip("/")
        idle_start = shard_cpu(gateway.pid)
        time.sleep(args.window)
        idle = shard_cpu(gateway.pid) - idle_start
        single, single_body = time_requests(admin, f"/channels/{one}", args.requests)
        listing_100, _ = time_requests(admin, "/channels?limit=100", args.requests // 4)
        listing_max, _ = time_requests(admin, "/channels?limit=1000", max(20, args.requests // 40))
        # The same window as the idle one, the API asked as fast as one client can.
        busy_start, wall = shard_cpu(gateway.pid), time.time()
        hammered = 0
        conn = http.client.HTTPConnection("127.0.0.1", admin, timeout=10)
        while time.time() - wall < args.window:
            path = "/channels?limit=100" if hammered % 10 == 9 else f"/channels/{one}"
            conn.request("GET", path)
            conn.getresponse().read()
            hammered += 1
        conn.close()
        wall = time.time() - wall
        busy = shard_cpu(gateway.pid) - busy_start
        return {
            "case": name,
            "connections": args.connections,
            "channels": channels,
            "counted": conn_total,
            "channel_answer": single_body,
            "get_channel": single,
            "list_100": listing_100,
            "list_1000": listing_max,
            "shard_cpu_idle_s_per_s": round(idle / args.window, 5),
            "shard_cpu_under_api_s_per_s": round(busy / wall, 5),
            "api_window_s": round(wall, 2),
            "api_requests_per_s": round(hammered / wall),
        }
    finally:
        for proc in (load, gateway):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connections", type=int, default=19000)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--window", type=float, default=10.0)
    args = parser.parse_args()
    results = [
        run_case("big", "/big", 1, args),
        run_case("spread", "/ch-{ch}", 10000, args),
    ]
    print(json.dumps({"command": " ".join(sys.argv), "results": results}))


if __name__ == "__main__":
    main()
