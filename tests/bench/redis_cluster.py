#!/usr/bin/env python3
"""Driver of tests/bench/redis_cluster.sh: 3 ringcast nodes behind one redis-server.

Runs, for each Redis mode (interest, pattern):
  * scale: N wsload subscribers (3 processes, one per node, many source IPs) on one
    channel; one publish through Redis must reach all N; reports how long it took (publish
    to the last subscriber's receipt, from wsload's report).
  * for each channel count K (1, 100, 10000; channels shared by all nodes):
      paced pass  - numbered, timestamped messages at a moderate rate through the nodes'
                    POST /publish (round-robin): publish->deliver latency p50/p99 from
                    sampler clients (websockets) on every node, and the Redis hop alone
                    (publishing node -> every node's shards) from the nodes'
                    ringcast_broker_latency_seconds histograms (bucket upper bounds);
      burst pass  - as fast as the publisher goes: deliveries/s (all subscribers, first
                    burst publish to the last receipt) and latency under that load;
    and Redis CPU seconds (utime+stime of /proc/<redis pid>/stat) per million deliveries.
  * disjoint: K channels where each channel has subscribers on ONE node only (node i
    subscribes n<i>-ch-*), publishes to all of them: the case interest mode exists for
    (pattern mode sends every message to every node).
Payloads are "<seq>:<unix ns>"; the burst uses pipelined Redis PUBLISH (what any backend
does). wsload checks order and gaps, the samplers compute latency.

Every process started here is stopped by its pid; every wait is bounded.
"""

import argparse
import asyncio
import http.client
import json
import math
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

NODES = 3
# Node counters reported per case (deltas summed over the nodes).
NODE_COUNTERS = [
    "ringcast_broker_messages_received_total",
    "ringcast_broker_reconnects_total",
    "ringcast_broker_rejected_total",
    "ringcast_publish_dropped_total",
    "ringcast_messages_delivered_total",
    "ringcast_slow_consumer_dropped_total",
]


def log(msg):
    print(f"[redis-cluster] {msg}", file=sys.stderr, flush=True)


def free_port_run(n, start):
    """First port p >= start such that p..p+n-1 are all bindable on 127.0.0.1."""
    p = start
    while p < 60000:
        ok = True
        for q in range(p, p + n):
            with socket.socket() as s:
                try:
                    s.bind(("127.0.0.1", q))
                except OSError:
                    ok = False
                    break
        if ok:
            return p
        p += n
    raise RuntimeError("no free ports")


class Resp:
    """A pipelining RESP client (enough for PUBLISH and PUBSUB)."""

    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        self.buf = b""

    def _line(self):
        while b"\r\n" not in self.buf:
            chunk = self.sock.recv(1 << 16)
            if not chunk:
                raise EOFError("redis closed")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def _exact(self, n):
        while len(self.buf) < n + 2:
            chunk = self.sock.recv(1 << 16)
            if not chunk:
                raise EOFError("redis closed")
            self.buf += chunk
        data, self.buf = self.buf[:n], self.buf[n + 2:]
        return data

    def reply(self):
        line = self._line()
        kind, rest = line[:1], line[1:]
        if kind in (b"+", b"-"):
            return rest.decode()
        if kind == b":":
            return int(rest)
        if kind == b"$":
            n = int(rest)
            return None if n < 0 else self._exact(n)
        if kind == b"*":
            return [self.reply() for _ in range(max(int(rest), 0))]
        raise ValueError(f"bad RESP {line!r}")

    @staticmethod
    def encode(*args):
        out = [b"*%d\r\n" % len(args)]
        for a in args:
            a = a if isinstance(a, bytes) else str(a).encode()
            out.append(b"$%d\r\n%s\r\n" % (len(a), a))
        return b"".join(out)

    def command(self, *args):
        self.sock.sendall(self.encode(*args))
        return self.reply()

    def _skip_int_replies(self, n):
        """Consumes n integer replies (PUBLISH answers) without decoding them."""
        while n:
            lines = self.buf.count(b"\r\n")
            if lines >= n:
                cut = 0
                for _ in range(n):
                    cut = self.buf.index(b"\r\n", cut) + 2
                self.buf = self.buf[cut:]
                return
            n -= lines
            self.buf = self.buf[self.buf.rindex(b"\r\n") + 2:] if lines else self.buf
            chunk = self.sock.recv(1 << 20)
            if not chunk:
                raise EOFError("redis closed")
            self.buf += chunk

    def publish_stream(self, heads, seqs, batch=2000):
        """PUBLISH "<seq>:<unix ns>" to every channel (pre-encoded `heads`) for each seq,
        in order on one connection, pipelined with two batches in flight."""
        frames, inflight = [], []
        for seq in seqs:
            for head in heads:
                body = b"%d:%d" % (seq, time.time_ns())
                frames.append(head + b"$%d\r\n%s\r\n" % (len(body), body))
                if len(frames) >= batch:
                    self.sock.sendall(b"".join(frames))
                    inflight.append(len(frames))
                    frames = []
                    if len(inflight) > 2:
                        self._skip_int_replies(inflight.pop(0))
        if frames:
            self.sock.sendall(b"".join(frames))
            inflight.append(len(frames))
        for n in inflight:
            self._skip_int_replies(n)

    @staticmethod
    def publish_head(channel):
        key = channel.encode()
        return b"*3\r\n$7\r\nPUBLISH\r\n$%d\r\n%s\r\n" % (len(key), key)


def proc_cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        rest = f.read().rsplit(") ", 1)[1].split()
    return (int(rest[11]) + int(rest[12])) / os.sysconf("SC_CLK_TCK")


def http_get(addr, path):
    with urllib.request.urlopen(f"http://{addr}{path}", timeout=10) as r:
        return r.read().decode()


def metric_sum(text, name):
    total = 0.0
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        series, _, value = line.rpartition(" ")
        if series.split("{", 1)[0] == name:
            total += float(value)
    return total


def histogram(text, name):
    """Cumulative bucket counts {le: count} of histogram `name`, summed over series."""
    buckets = {}
    for line in text.splitlines():
        if line.startswith(name + "_bucket{"):
            series, _, value = line.rpartition(" ")
            le = series.split('le="', 1)[1].split('"', 1)[0]
            bound = float("inf") if le == "+Inf" else float(le)
            buckets[bound] = buckets.get(bound, 0.0) + float(value)
    return buckets


def closed_by_reason(text):
    """ringcast_connections_closed_total summed per reason."""
    out = {}
    for line in text.splitlines():
        if line.startswith("ringcast_connections_closed_total{"):
            series, _, value = line.rpartition(" ")
            reason = series.split('reason="', 1)[1].split('"', 1)[0] if 'reason="' in series else "?"
            out[reason] = out.get(reason, 0.0) + float(value)
    return out


def bucket_quantile(before, after, q):
    """Upper bound of the bucket holding quantile q of the samples added in between."""
    bounds = sorted(after)
    counts = [after[b] - before.get(b, 0.0) for b in bounds]
    if not counts or counts[-1] <= 0:
        return float("nan")
    target = q * counts[-1]
    for bound, count in zip(bounds, counts):
        if count >= target:
            return bound
    return float("inf")


def wait(what, secs, done, every=0.05):
    deadline = time.time() + secs
    while time.time() < deadline:
        if done():
            return
        time.sleep(every)
    raise TimeoutError(f"{what} did not happen within {secs} s")


def stop(proc, sig=signal.SIGTERM, secs=10):
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(sig)
    try:
        proc.wait(secs)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def percentile(values, q):
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, max(0, math.ceil(q * len(values)) - 1))]


# --- sampler subprocess -------------------------------------------------------------

async def sampler_main(urls, out_path, split_seq):
    import websockets  # the e2e venv has it

    paced, burst = [], []
    stop_event = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop_event.set)

    async def one(url):
        async with websockets.connect(url, max_size=None, ping_interval=None) as ws:
            while True:
                msg = await ws.recv()
                now = time.time_ns()
                if isinstance(msg, bytes):
                    msg = msg.decode(errors="replace")
                seq, _, stamp = msg.partition(":")
                if seq.isdigit() and stamp.isdigit():
                    lat = (now - int(stamp)) / 1e9
                    (paced if int(seq) < split_seq else burst).append(lat)

    tasks = [asyncio.create_task(one(u)) for u in urls]
    ready = os.environ.get("SAMPLER_READY")
    await asyncio.sleep(0.5)
    if ready:
        open(ready, "w").write("ok")
    await stop_event.wait()
    for t in tasks:
        t.cancel()
    with open(out_path, "w") as f:
        json.dump({"paced": paced, "burst": burst}, f)


# --- the cluster --------------------------------------------------------------------

class Cluster:
    def __init__(self, args, mode, workdir):
        self.args = args
        self.mode = mode
        self.workdir = workdir
        self.redis = None
        self.nodes = []  # (proc, first_port, admin)

    def start(self):
        port = free_port_run(1, 26379)
        self.redis_port = port
        self.redis = subprocess.Popen(
            ["redis-server", "--port", str(port), "--bind", "127.0.0.1",
             "--save", "", "--appendonly", "no", "--maxclients", "1000",
             "--client-output-buffer-limit", f"pubsub {self.args.pubsub_limit}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait("redis PING", 10, lambda: self._ping())
        self.resp = Resp(port)
        base = 30000
        for i in range(NODES):
            first = free_port_run(4, base)
            admin_port = free_port_run(1, first + 4)
            base = admin_port + 1
            admin = f"127.0.0.1:{admin_port}"
            cmd = [self.args.ringcast,
                   "--listen", f"127.0.0.1:{first}-{first + 3}", "--admin", admin,
                   "--redis", f"redis://127.0.0.1:{port}/0", "--redis-mode", self.mode,
                   "--shards", str(self.args.shards), "--no-pin"]
            env = dict(os.environ, RUST_LOG="warn")
            proc = subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL,
                                    stderr=open(os.path.join(self.workdir, f"{self.mode}-node{i}.log"), "w"))
            self.nodes.append((proc, first, admin))
        for proc, _, admin in self.nodes:
            wait("node up", 20, lambda a=admin: self._broker_up(a))

    def _ping(self):
        try:
            return Resp(self.redis_port).command("PING") == "PONG"
        except OSError:
            return False

    @staticmethod
    def _broker_up(admin):
        try:
            return metric_sum(http_get(admin, "/metrics"), "ringcast_broker_up") == 1.0
        except OSError:
            return False

    def metric(self, name):
        return sum(metric_sum(http_get(a, "/metrics"), name) for _, _, a in self.nodes)

    def node_metric(self, i, name):
        return metric_sum(http_get(self.nodes[i][2], "/metrics"), name)

    def broker_latency(self):
        merged = {}
        for _, _, admin in self.nodes:
            for bound, count in histogram(http_get(admin, "/metrics"),
                                          "ringcast_broker_latency_seconds").items():
                merged[bound] = merged.get(bound, 0.0) + count
        return merged

    def closed(self):
        total = {}
        for _, _, admin in self.nodes:
            for reason, n in closed_by_reason(http_get(admin, "/metrics")).items():
                total[reason] = total.get(reason, 0.0) + n
        return total

    def redis_cpu(self):
        return proc_cpu_seconds(self.redis.pid)

    def close(self):
        for proc, _, _ in self.nodes:
            stop(proc)
        stop(self.redis, signal.SIGKILL)


def ws_url(first, path):
    return f"ws://127.0.0.1:{first}-{first + 3}{path}"


def run_case(cluster, name, layout, channels, m_paced, m_burst, paced_rate, samplers_per_node):
    """One run: wsload holders + samplers, a paced then a burst pass. Returns a dict."""
    args = cluster.args
    workdir = os.path.join(cluster.workdir, f"{cluster.mode}-{name}")
    os.makedirs(workdir, exist_ok=True)
    per_node = args.conns // NODES
    total_msgs = m_paced + m_burst

    def path(node):
        return f"/n{node}-ch-{{ch}}" if layout == "disjoint" else "/ch-{ch}"

    def channel_names():
        if layout == "disjoint":
            return [f"n{n}-ch-{c}" for n in range(NODES) for c in range(channels)]
        return [f"ch-{c}" for c in range(channels)]

    holds = []
    for i, (_, first, _) in enumerate(cluster.nodes):
        ready = os.path.join(workdir, f"hold{i}.ready")
        report = os.path.join(workdir, f"hold{i}.json")
        cmd = [args.wsload, "hold", "--url", ws_url(first, path(i)),
               "--connections", str(per_node), "--channels", str(channels),
               "--source-ips", f"127.0.{i + 1}.1-127.0.{i + 1}.8",
               "--rate", str(args.rate), "--duration", str(args.hold_seconds),
               "--expect-messages", str(total_msgs), "--ready-file", ready, "--json", report]
        started = time.time()
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL,
                                stderr=open(os.path.join(workdir, f"hold{i}.log"), "w"))
        holds.append((proc, ready, report, started))
    sampler = None
    sampler_out = os.path.join(workdir, "samples.json")
    try:
        for _, ready, _, _ in holds:
            wait("wsload ramp", args.conns / max(args.rate, 1) * 2 + 60,
                 lambda r=ready: os.path.exists(r), every=0.2)
        urls = []
        for i, (_, first, _) in enumerate(cluster.nodes):
            for s in range(samplers_per_node):
                ch = s % channels
                p = path(i).replace("{ch}", str(ch))
                urls.append(f"ws://127.0.0.1:{first}{p}")
        if urls:
            sampler_ready = os.path.join(workdir, "sampler.ready")
            env = dict(os.environ, SAMPLER_READY=sampler_ready)
            sampler = subprocess.Popen(
                [sys.executable, __file__, "sample", "--out", sampler_out,
                 "--split-seq", str(m_paced)] + urls, env=env,
                stderr=open(os.path.join(workdir, "sampler.log"), "w"))
            wait("samplers", 60, lambda: os.path.exists(sampler_ready), every=0.1)
        subs = per_node * NODES + len(urls)
        wait("local subscriptions", 60,
             lambda: cluster.metric("ringcast_subscriptions") >= per_node * NODES, every=0.5)
        names = channel_names()
        # Channels i < per_node have subscribers (wsload gives connection i channel i % K).
        with_subs = [n for n in names if int(n.rsplit("-", 1)[1]) < per_node]
        sample = with_subs[:: max(1, len(with_subs) // 50)]
        if cluster.mode == "pattern":
            time.sleep(0.5)
        else:
            def subscribed():
                replies = cluster.resp.command("PUBSUB", "NUMSUB", *[f"ringcast:{c}" for c in sample])
                counts = replies[1::2]
                want = 1 if layout == "disjoint" else NODES
                return all(int(c) >= want for c in counts)
            wait("Redis subscriptions", 60, subscribed, every=0.2)

        cpu0 = cluster.redis_cpu()
        hop0 = cluster.broker_latency()
        closed0 = cluster.closed()
        node0 = {name: cluster.metric(name) for name in NODE_COUNTERS}
        # Paced pass, through the nodes' publish API (keep-alive connections).
        admins = [http.client.HTTPConnection(a, timeout=10) for _, _, a in cluster.nodes]
        if m_paced:
            interval = 1.0 / paced_rate
            next_at = time.time()
            turn = 0
            for seq in range(m_paced):
                for c in names:
                    now = time.time()
                    if next_at > now:
                        time.sleep(next_at - now)
                    next_at += interval
                    conn = admins[turn % NODES]
                    turn += 1
                    conn.request("POST", f"/publish/{c}", body=f"{seq}:{time.time_ns()}")
                    answer = conn.getresponse()
                    answer.read()
                    if answer.status != 202:
                        raise RuntimeError(f"publish answered {answer.status}")
        for conn in admins:
            conn.close()
        hop1 = cluster.broker_latency()
        # Burst pass: pipelined PUBLISH, as fast as this process can encode them.
        heads = [Resp.publish_head(f"ringcast:{c}") for c in names]
        burst_start = time.time()
        cluster.resp.publish_stream(heads, range(m_paced, total_msgs))
        burst_sent = time.time()
        reports = []
        for proc, _, report, started in holds:
            try:
                proc.wait(args.hold_seconds + 60)
            except subprocess.TimeoutExpired:
                stop(proc)
            with open(report) as f:
                rep = json.loads(f.read().strip().splitlines()[-1])
            rep["_started"] = started
            reports.append(rep)
        cpu1 = cluster.redis_cpu()
        closed1 = cluster.closed()
        time.sleep(1.2)  # one more counter flush of the shards
        node1 = {name: cluster.metric(name) for name in NODE_COUNTERS}
    finally:
        for proc, _, _, _ in holds:
            stop(proc)
        if sampler:
            stop(sampler, secs=30)
    samples = {"paced": [], "burst": []}
    if os.path.exists(sampler_out):
        with open(sampler_out) as f:
            samples = json.load(f)
    messages = sum(r["messages"] for r in reports)
    last = max(r["_started"] + (r.get("last_message_at_s") or 0) for r in reports)
    subs_total = per_node * NODES
    burst_deliveries = m_burst * subs_total
    deliveries = total_msgs * subs_total
    result = {
        "mode": cluster.mode, "case": name, "layout": layout, "channels": channels,
        "connections": subs_total, "connected": sum(r["connected"] for r in reports),
        "messages_expected": deliveries, "messages_received": messages,
        "complete_conns": sum(r.get("conns_complete", 0) for r in reports),
        "seq_gaps": sum(r["seq_gaps"] for r in reports),
        "seq_dups": sum(r["seq_dups"] for r in reports),
        "closed_by_server": sum(r.get("closed_by_server", 0) for r in reports),
        "server_closes": {k: v - closed0.get(k, 0.0) for k, v in closed1.items()
                          if v - closed0.get(k, 0.0) > 0},
        "publishes": total_msgs * len(names),
        "node_counters": {n.replace("ringcast_", ""): node1[n] - node0[n] for n in NODE_COUNTERS},
        "burst_publish_seconds": round(burst_sent - burst_start, 3),
        "burst_seconds": round(last - burst_start, 3),
        "deliveries_per_s": round(burst_deliveries / max(last - burst_start, 1e-6)),
        "paced_p50_ms": round(percentile(samples["paced"], 0.50) * 1e3, 2),
        "paced_p99_ms": round(percentile(samples["paced"], 0.99) * 1e3, 2),
        "burst_p50_ms": round(percentile(samples["burst"], 0.50) * 1e3, 2),
        "burst_p99_ms": round(percentile(samples["burst"], 0.99) * 1e3, 2),
        # wsload's own publish->receive latency over every connection (paced and burst
        # together; the worst of the three processes), when wsload reports it.
        "all_p50_ms": max((r["latency"]["p50_ms"] for r in reports if r.get("latency")),
                          default=float("nan")),
        "all_p99_ms": max((r["latency"]["p99_ms"] for r in reports if r.get("latency")),
                          default=float("nan")),
        "redis_hop_p50_ms_le": bucket_quantile(hop0, hop1, 0.50) * 1e3,
        "redis_hop_p99_ms_le": bucket_quantile(hop0, hop1, 0.99) * 1e3,
        "samples": len(samples["paced"]) + len(samples["burst"]),
        "redis_cpu_s": round(cpu1 - cpu0, 3),
        "redis_cpu_s_per_million": round((cpu1 - cpu0) / max(deliveries / 1e6, 1e-9), 3),
    }
    log(json.dumps(result))
    return result


def bench(args):
    workdir = tempfile.mkdtemp(prefix="ringcast-redis-bench-", dir=args.out)
    log(f"logs in {workdir}")
    results = []
    per_ch = lambda k: max(1, args.conns // k)  # subscribers per channel (shared layout)
    for mode in args.modes.split(","):
        cluster = Cluster(args, mode, workdir)
        try:
            cluster.start()
            if "scale" in args.cases:
                results.append(run_case(cluster, "scale", "shared", 1, 0, 1, 1, 0))
            for k in [int(x) for x in args.channels.split(",") if "k" in args.cases]:
                subs = per_ch(k)
                # Paced: about PACED_DELIVERIES deliveries/s, at most 2,000 publishes/s.
                rate = max(1.0, min(2000.0, args.paced_deliveries / subs))
                m_paced = max(1, int(rate * args.paced_seconds / k))
                m_burst = max(1, int(args.burst_deliveries / (subs * k)))
                results.append(run_case(cluster, f"k{k}", "shared", k, m_paced, m_burst,
                                        rate, args.samplers))
            if "disjoint" in args.cases:
                k = int(args.disjoint_channels)
                subs = max(1, (args.conns // NODES) // k)
                m_burst = max(1, int(args.burst_deliveries / (subs * k * NODES)))
                results.append(run_case(cluster, f"disjoint-k{k}", "disjoint", k, 0, m_burst,
                                        1, 0))
        finally:
            cluster.close()
    with open(os.path.join(args.out, "redis_cluster.json"), "w") as f:
        json.dump(results, f, indent=1)
    print_table(results)


def print_table(results):
    cols = ["mode", "case", "connected", "messages_received", "messages_expected", "seq_gaps",
            "seq_dups", "closed_by_server", "burst_publish_seconds", "burst_seconds", "deliveries_per_s", "paced_p50_ms", "paced_p99_ms",
            "burst_p50_ms", "burst_p99_ms", "all_p50_ms", "all_p99_ms", "redis_hop_p50_ms_le", "redis_hop_p99_ms_le",
            "redis_cpu_s_per_million"]
    print("| " + " | ".join(cols) + " |")
    print("|" + "---|" * len(cols))
    for r in results:
        print("| " + " | ".join(str(r.get(c, "")) for c in cols) + " |")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("bench")
    b.add_argument("--ringcast", required=True)
    b.add_argument("--wsload", required=True)
    b.add_argument("--out", required=True)
    b.add_argument("--conns", type=int, default=50_000)
    b.add_argument("--rate", type=int, default=6000, help="connects/s per wsload")
    b.add_argument("--shards", type=int, default=2)
    b.add_argument("--modes", default="interest,pattern")
    b.add_argument("--channels", default="1,100,10000")
    b.add_argument("--cases", default="scale,k,disjoint")
    b.add_argument("--pubsub-limit", default="1gb 1gb 0",
                   help="Redis client-output-buffer-limit for pub/sub clients")
    b.add_argument("--disjoint-channels", default="1000")
    b.add_argument("--paced-deliveries", type=float, default=200_000)
    b.add_argument("--paced-seconds", type=float, default=5)
    b.add_argument("--burst-deliveries", type=float, default=5_000_000)
    b.add_argument("--samplers", type=int, default=10, help="latency clients per node")
    b.add_argument("--hold-seconds", type=int, default=180)
    s = sub.add_parser("sample")
    s.add_argument("--out", required=True)
    s.add_argument("--split-seq", type=int, required=True)
    s.add_argument("urls", nargs="+")
    args = parser.parse_args()
    if args.cmd == "sample":
        asyncio.run(sampler_main(args.urls, args.out, args.split_seq))
    else:
        os.makedirs(args.out, exist_ok=True)
        bench(args)


if __name__ == "__main__":
    main()
