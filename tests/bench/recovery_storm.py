#!/usr/bin/env python3
"""1,000 clients resume at once on a node that never saw their channel (issue 12):
how many Redis reads that costs and how long until every client has what it missed.

A local redis-server on a free port, node A with one subscriber (it publishes 100
messages of one channel through Redis), then node C, fresh; N clients connect to C
with since=<epoch>:50 at once. Reports the Redis commands the storm cost (from INFO
commandstats), Redis CPU, and the time until the last client got offsets 51..100.

Usage: tests/bench/recovery_storm.py [--bin target/release/ringcast] [--clients 1000]
Every loop is bounded; every process is stopped by its pid.
"""

import argparse
import json
import os
import select
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from abuse import Gateway, free_port, read_frame  # noqa: E402
from abuse import ws_connect_keeping as ws_connect  # noqa: E402


def redis_cli(port, *args):
    return subprocess.run(["redis-cli", "-p", str(port), *args],
                          capture_output=True, text=True, timeout=10).stdout


def commandstats(port):
    stats = {}
    for line in redis_cli(port, "INFO", "commandstats").splitlines():
        if line.startswith("cmdstat_"):
            name, rest = line.split(":", 1)
            fields = dict(kv.split("=") for kv in rest.split(","))
            stats[name[len("cmdstat_"):]] = int(fields["calls"])
    return stats


def start_redis():
    """A redis-server without persistence on a free port, answering PING; (process, port)."""
    port = free_port()
    redis = subprocess.Popen(["redis-server", "--port", str(port), "--save", "",
                              "--appendonly", "no"], stdout=subprocess.DEVNULL)
    for _ in range(50):
        if redis_cli(port, "PING").strip() == "PONG":
            break
        time.sleep(0.1)
    return redis, port


def redis_cpu(port):
    info = dict(line.split(":", 1) for line in redis_cli(port, "INFO", "cpu").splitlines()
                if ":" in line)
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--bin", default="target/release/ringcast")
    parser.add_argument("--clients", type=int, default=1000)
    args = parser.parse_args()
    redis, port = start_redis()
    nodes = []
    try:
        url = f"redis://127.0.0.1:{port}/0"
        flags = ("--redis", url, "--history-size", "1000", "--max-connections", "5000")
        a = Gateway(args.bin, *flags)
        nodes.append(a)
        keeper, buf = ws_connect(a.port, "/storm?format=json")
        time.sleep(0.5)
        for i in range(1, 101):
            a.publish("storm", b"m%d" % i)
        epoch = None
        keeper.settimeout(10)
        while epoch is None:
            opcode, payload, buf = read_frame(keeper, buf)
            if opcode == 8:
                sys.exit(f"keeper closed: {payload!r}")
            if opcode == 1 and b'"type":"message"' in payload:
                epoch = json.loads(payload)["epoch"]
        c = Gateway(args.bin, *flags)
        nodes.append(c)
        time.sleep(0.5)
        before, cpu0 = commandstats(port), redis_cpu(port)
        t0 = time.time()
        opened = [ws_connect(c.port, f"/storm?format=json&since={epoch}:50")
                  for _ in range(args.clients)]
        connected = time.time() - t0
        socks = [s for s, _ in opened]
        got = {s.fileno(): 0 for s in socks}
        bufs = {s.fileno(): rest for s, rest in opened}
        by_fd = {s.fileno(): s for s in socks}
        done, deadline = 0, time.time() + 60
        pending = set(by_fd)
        while done < len(socks) and time.time() < deadline:
            ready = [by_fd[fd] for fd in list(pending) if bufs[fd]]
            if not ready:
                ready, _, _ = select.select(list(by_fd.values()), [], [], 0.5)
            for s in ready:
                fd = s.fileno()
                if fd not in pending:
                    continue
                try:
                    s.setblocking(False)
                    bufs[fd] += s.recv(1 << 20)
                except BlockingIOError:
                    pass
                while True:
                    if len(bufs[fd]) < 2:
                        break
                    n, head = bufs[fd][1] & 0x7F, 2
                    if n == 126:
                        if len(bufs[fd]) < 4:
                            break
                        n, head = int.from_bytes(bufs[fd][2:4], "big"), 4
                    if len(bufs[fd]) < head + n:
                        break
                    payload, bufs[fd] = bufs[fd][head:head + n], bufs[fd][head + n:]
                    if b'"type":"message"' in payload:
                        got[fd] += 1
                        if got[fd] == 50:
                            done += 1
                            del by_fd[fd]
                            pending.discard(fd)
                            break
        elapsed = time.time() - t0
        after, cpu1 = commandstats(port), redis_cpu(port)
        delta = {k: after.get(k, 0) - before.get(k, 0) for k in after
                 if after.get(k, 0) != before.get(k, 0)}
        print(json.dumps({
            "loadavg": open("/proc/loadavg").read().split()[:3],
            "clients": args.clients, "fully_recovered": done,
            "seconds_to_connect_all": round(connected, 2),
            "seconds_to_last_recovered": round(elapsed, 2),
            "redis_commands_during_storm": delta,
            "redis_cpu_s_during_storm": round(cpu1 - cpu0, 3),
        }))
        for s in socks:
            s.close()
    finally:
        for node in nodes:
            node.stop()
        redis.terminate()
        redis.wait(timeout=10)


if __name__ == "__main__":
    main()
