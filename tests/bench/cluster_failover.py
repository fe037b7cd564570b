#!/usr/bin/env python3
"""Redis Cluster failover under a steady publish rate (issue 15 item 4).

Starts a Redis Cluster of 3 masters and 3 replicas (redis-server --cluster-enabled yes,
--cluster-node-timeout 2000, created with redis-cli --cluster create) and 2 ringcast
gateways with --redis-cluster, all on loopback free ports; one WebSocket subscriber per
channel on each gateway (channels spread over all 3 masters); a publisher POSTing
numbered messages at a steady rate through both gateways' admin APIs, round-robin.
After a warm-up it kills (SIGKILL, by pid) the master owning the first channels, keeps
publishing, and reports per run:
  * promoted: when a node first names another master for the killed master's slots;
  * resume: per gateway, time from the kill until every channel of the killed master
    delivered a message again (the slowest channel);
  * publishes accepted (202) and refused (503: their slot had no master, delivered on
    the publishing node only), and accepted-but-lost per gateway (an accepted message a
    subscriber of that gateway never received).
With --history the gateways keep history in Redis (--history-size) and subscribers use
JSON framing: after the run each subscriber that saw a gap in the offsets reconnects
with ?since=<epoch>:<last offset before the gap> and the lost count is taken after
that recovery.

Every process started here is stopped by its pid; every wait is bounded.

    .venv/bin/python tests/bench/cluster_failover.py --runs 3 [--history]
"""

import argparse
import asyncio
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time

import websockets

PREFIX = "ringcast:"
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def log(msg):
    print(f"[cluster-failover] {msg}", file=sys.stderr, flush=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait(what, secs, done, every=0.05):
    deadline = time.monotonic() + secs
    while time.monotonic() < deadline:
        if done():
            return
        time.sleep(every)
    raise SystemExit(f"timed out after {secs} s waiting for {what}")


def redis_cli(port, *args):
    out = subprocess.run(["redis-cli", "-p", str(port), *args], capture_output=True,
                         text=True, timeout=10)
    return out.stdout.strip()


def http_request(admin, method, path, body=b""):
    host, port = admin.rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=5)
    try:
        conn.request(method, path, body=body)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def metric_sum(admin, name):
    try:
        _, text = http_request(admin, "GET", "/metrics")
    except OSError:
        return None
    total = 0.0
    for line in text.decode().splitlines():
        if line.startswith(name) and (line[len(name)] in " {"):
            total += float(line.rsplit(" ", 1)[1])
    return total


class Cluster:
    """6 redis-server processes forming a 3-master, 3-replica Redis Cluster."""

    def __init__(self, workdir):
        self.workdir = workdir
        self.procs = {}

    def start(self):
        for _ in range(6):
            port = free_port()
            self.procs[port] = subprocess.Popen(
                ["redis-server", "--port", str(port), "--bind", "127.0.0.1",
                 "--save", "", "--appendonly", "no", "--cluster-enabled", "yes",
                 "--cluster-node-timeout", "2000", "--cluster-port", str(free_port()),
                 "--cluster-config-file",
                 os.path.join(self.workdir, f"nodes-{port}.conf"), "--dir", self.workdir],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for port in self.procs:
            wait("redis PING", 10, lambda p=port: redis_cli(p, "PING") == "PONG")
        out = subprocess.run(
            ["redis-cli", "--cluster", "create",
             *[f"127.0.0.1:{p}" for p in self.procs], "--cluster-replicas", "1",
             "--cluster-yes"], capture_output=True, text=True, timeout=60)
        if out.returncode != 0:
            raise SystemExit(f"redis-cli --cluster create failed:\n{out.stdout}{out.stderr}")
        wait("cluster_state:ok", 30, lambda: all(
            "cluster_state:ok" in redis_cli(p, "CLUSTER", "INFO") for p in self.procs))
        # Only a replica that synced with its master is promoted.
        wait("replicas synced", 30, lambda: all(
            "role:master" in info or "master_link_status:up" in info
            for info in (redis_cli(p, "INFO", "replication") for p in self.procs)))

    def any_port(self):
        return next(p for p, proc in self.procs.items() if proc.poll() is None)

    def master_of(self, slot, ask=None):
        text = redis_cli(ask or self.any_port(), "--json", "CLUSTER", "SLOTS")
        for start, end, master, *_ in json.loads(text):
            if start <= slot <= end:
                return int(master[1])
        return None

    def slot(self, key):
        return int(redis_cli(self.any_port(), "CLUSTER", "KEYSLOT", key))

    def kill(self, port):
        proc = self.procs[port]
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)

    def close(self):
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
                proc.wait(timeout=10)


class Gateways:
    def __init__(self, args, workdir, seeds):
        self.nodes = []  # (proc, ws_port, admin)
        for i in range(2):
            ws_port, admin = free_port(), f"127.0.0.1:{free_port()}"
            cmd = [args.ringcast, "--listen", f"127.0.0.1:{ws_port}", "--admin", admin,
                   "--shards", "2", "--redis", seeds, "--redis-cluster"]
            if args.history:
                cmd += ["--history-size", "10000"]
            self.nodes.append((subprocess.Popen(
                cmd, env=dict(os.environ, RUST_LOG=os.environ.get("RUST_LOG", "warn")), stdin=subprocess.DEVNULL,
                stderr=open(os.path.join(workdir, f"gateway{i}.log"), "w")), ws_port, admin))
        for _, _, admin in self.nodes:
            wait("broker up", 30, lambda a=admin: metric_sum(a, "ringcast_broker_up") == 1.0)

    def close(self):
        for proc, _, _ in self.nodes:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


async def subscriber(url, json_frames, got, stop):
    """Collects (receive time, payload, position) until `stop` is set."""
    async with websockets.connect(url, max_size=None) as ws:
        while not stop.is_set():
            try:
                frame = await asyncio.wait_for(ws.recv(), 0.2)
            except asyncio.TimeoutError:
                continue
            if json_frames:
                msg = json.loads(frame)
                if msg.get("type") == "message":
                    # A publish delivered on its node only (503) carries no position.
                    position = (msg["epoch"], msg["offset"]) if "offset" in msg else None
                    got.append((time.monotonic(), msg.get("data"), position))
            else:
                got.append((time.monotonic(), frame, None))


async def recover(url, position):
    """Reconnects with ?since= and returns the payloads replayed before the live stream."""
    epoch, offset = position
    sep = "&" if "?" in url else "?"
    out = []
    async with websockets.connect(f"{url}{sep}since={epoch}:{offset}", max_size=None) as ws:
        while True:
            try:
                frame = await asyncio.wait_for(ws.recv(), 1.0)
            except asyncio.TimeoutError:
                return out
            msg = json.loads(frame)
            if msg.get("type") == "message":
                out.append(msg["data"])


async def run_once(args, run):
    workdir = tempfile.mkdtemp(prefix="ringcast-cluster-failover-")
    cluster = Cluster(workdir)
    gateways = None
    try:
        cluster.start()
        seeds = "redis://" + ",".join(f"127.0.0.1:{p}" for p in list(cluster.procs)[:2])
        gateways = Gateways(args, workdir, seeds)
        # Channels spread over the 3 masters.
        per_master, channels = {}, []
        for i in range(10_000):
            name = f"fo{i}"
            master = cluster.master_of(cluster.slot(PREFIX + name))
            if per_master.get(master, 0) < args.per_master:
                per_master[master] = per_master.get(master, 0) + 1
                channels.append((master, name))
            if len(channels) == 3 * args.per_master:
                break
        victim = channels[0][0]
        victim_slots = [cluster.slot(PREFIX + c) for m, c in channels if m == victim]
        stop = asyncio.Event()
        fmt = "?format=json" if args.history else ""
        got = {}  # (gateway, channel) -> list
        urls = {}
        tasks = []
        for g, (_, ws_port, _) in enumerate(gateways.nodes):
            for _, name in channels:
                got[(g, name)] = []
                urls[(g, name)] = f"ws://127.0.0.1:{ws_port}/{name}{fmt}"
                tasks.append(asyncio.create_task(
                    subscriber(urls[(g, name)], args.history, got[(g, name)], stop)))
        # Every subscription in place: a probe through each gateway reaches every client.
        await asyncio.sleep(1.0)
        sent = []  # (seq, channel, status, at)
        loop = asyncio.get_running_loop()
        interval = 1.0 / args.rate
        start = time.monotonic()
        killed_at = None
        promoted_at = None
        seq = 0
        admins = [a for _, _, a in gateways.nodes]
        end_at = start + args.warmup + args.after
        while time.monotonic() < end_at:
            now = time.monotonic()
            if killed_at is None and now - start >= args.warmup:
                cluster.kill(victim)
                killed_at = time.monotonic()
                log(f"run {run}: killed master {victim}")
            if killed_at and promoted_at is None and seq % 10 == 0:
                owner = await loop.run_in_executor(None, cluster.master_of, victim_slots[0])
                if owner not in (None, victim):
                    promoted_at = time.monotonic()
            name = channels[seq % len(channels)][1]
            admin = admins[seq % 2]
            asked = time.monotonic()
            try:
                status, _ = await loop.run_in_executor(
                    None, http_request, admin, "POST", f"/publish/{name}", f"m-{seq}".encode())
            except OSError:
                status = 0
            sent.append((seq, name, status, asked))
            seq += 1
            delay = start + seq * interval - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
        await asyncio.sleep(1.0)
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
        closed = [metric_sum(a, "ringcast_connections_closed_total") for a in admins]
        closed_reasons = []
        for a in admins:
            _, text = http_request(a, "GET", "/metrics")
            closed_reasons.append(sorted(
                line for line in text.decode().splitlines()
                if line.startswith("ringcast_connections_closed_total") and not line.endswith(" 0")))
        reconnects = [metric_sum(a, "ringcast_broker_reconnects_total") for a in admins]
        # Resume per gateway: the slowest of the victim's channels to deliver a message
        # published after the kill.
        asked_at = {f"m-{s}": at for s, _, _, at in sent}
        resume = []
        for g in range(2):
            worst = 0.0
            for master, name in channels:
                if master != victim:
                    continue
                after = [t for t, d, _ in got[(g, name)] if asked_at.get(d, 0) > killed_at]
                worst = max(worst, (after[0] - killed_at) if after else float("inf"))
            resume.append(worst)
        accepted = [(s, n) for s, n, st, _ in sent if st == 202]
        refused = sum(1 for _, _, st, _ in sent if st != 202)

        def count_lost():
            lost = []
            for g in range(2):
                have = {name: {d for _, d, _ in got[(g, name)]} for _, name in channels}
                lost.append(sum(1 for s, n in accepted if f"m-{s}" not in have[n]))
            return lost

        lost_live = count_lost()
        recovered = [0, 0]
        if args.history:
            for (g, name), items in got.items():
                offsets = [p for _, _, p in items if p is not None]
                for before, after in zip(offsets, offsets[1:]):
                    if before[0] == after[0] and after[1] > before[1] + 1:
                        replay = await recover(urls[(g, name)], before)
                        items.extend((0, d, None) for d in replay)
                        recovered[g] += len(replay)
                        break
        lost = count_lost()
        return {
            "run": run,
            "victim": victim,
            "promoted_s": None if promoted_at is None else round(promoted_at - killed_at, 2),
            "resume_s": [round(r, 2) for r in resume],
            "published": len(sent),
            "accepted": len(accepted),
            "refused": refused,
            "lost_live": lost_live,
            "lost": lost,
            "recovered": recovered,
            "clients_closed": closed,
            "closed_reasons": closed_reasons,
            "broker_reconnects": reconnects,
        }
    finally:
        if gateways:
            gateways.close()
        cluster.close()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--ringcast", default=os.path.join(ROOT, "target/release/ringcast"))
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--rate", type=float, default=200.0, help="publishes per second")
    parser.add_argument("--per-master", type=int, default=2, help="channels per master")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds before the kill")
    parser.add_argument("--after", type=float, default=8.0, help="seconds after the kill")
    parser.add_argument("--history", action="store_true",
                        help="history in Redis; subscribers resume over gaps")
    args = parser.parse_args()
    results = [asyncio.run(run_once(args, run)) for run in range(1, args.runs + 1)]
    for r in results:
        print(json.dumps(r))
    resumes = [x for r in results for x in r["resume_s"]]
    print(f"rate {args.rate:g}/s, history {'on' if args.history else 'off'}: "
          f"resume {min(resumes):.2f}-{max(resumes):.2f} s after the kill; "
          f"promotion {', '.join(str(r['promoted_s']) for r in results)} s; "
          f"lost (accepted, not delivered) per gateway live "
          f"{', '.join(str(r['lost_live']) for r in results)}, after recovery "
          f"{', '.join(str(r['lost']) for r in results)}; refused (503) "
          f"{', '.join(str(r['refused']) for r in results)}")


if __name__ == "__main__":
    main()
