#!/usr/bin/env python3
"""Edge-hardening benchmark: what one hostile client or burst costs the gateway.

Each case starts its own gateway (--shards 1, so the attacker and the probe share a
shard), runs one attack with bounded counts and times, and prints one JSON line of
figures: server CPU seconds spent, RSS growth, and the echo round-trip latency of an
innocent connection on the same shard while the attack runs.

  tests/bench/abuse.py [--bin target/release/ringcast] [CASE ...]
  cases: ping_flood poll_hoard idle_channels

Every process it starts is stopped by pid; every loop is bounded.
"""
import argparse
import base64
import json
import os
import socket
import struct
import subprocess
import sys
import time
import urllib.request

CLK_TCK = os.sysconf("SC_CLK_TCK")


def push_figures(gw, child, timeout=300):
    """Waits for a running `wsload push` (`child`, its report on stdout) and returns its
    deliveries, losses, latency and the server CPU per delivery since this call (the
    caller starts it once wsload's ramp is done)."""
    cpu0 = gw.cpu()
    report = json.loads(child.communicate(timeout=timeout)[0].strip().splitlines()[-1])
    cpu = gw.cpu() - cpu0
    delivered = report["messages"]
    return {"deliveries": delivered, "lost": report["push"]["lost"],
            "server_cpu_us_per_delivery": round(cpu / max(delivered, 1) * 1e6, 3),
            "latency_p50_p99_ms": [report["latency"]["p50_ms"], report["latency"]["p99_ms"]]}


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Gateway:
    def __init__(self, binary, *flags, shards=1):
        """A gateway with `shards` shards (None: one per core) and `flags`."""
        self.port, self.admin = free_port(), free_port()
        shard_flags = ("--shards", str(shards)) if shards else ()
        self.proc = subprocess.Popen(
            [binary, "--listen", f"127.0.0.1:{self.port}", "--admin", f"127.0.0.1:{self.admin}",
             *shard_flags, "--no-pin", "--drain-seconds", "1",
             # the probes answer no pings: keep pings out of the measurement
             "--ping-interval", "3600", *flags],
            stdout=subprocess.DEVNULL, stderr=open(os.environ.get("GATEWAY_LOG", os.devnull), "w"))
        for _ in range(100):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{self.admin}/healthz", timeout=1)
                return
            except OSError:
                time.sleep(0.1)
        self.stop()
        sys.exit("gateway did not start")

    def cpu(self):
        """Server CPU seconds, user plus system."""
        return sum(self.cpu_split())

    def cpu_split(self):
        """Server CPU seconds in user space and in the kernel."""
        with open(f"/proc/{self.proc.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return int(fields[11]) / CLK_TCK, int(fields[12]) / CLK_TCK

    def rss(self):
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
        return 0

    def publish(self, channel, body):
        req = urllib.request.Request(f"http://127.0.0.1:{self.admin}/publish/{channel}", data=body)
        urllib.request.urlopen(req, timeout=10).read()

    def gauge(self, name):
        """Sum of metric `name` over its series."""
        text = urllib.request.urlopen(f"http://127.0.0.1:{self.admin}/metrics", timeout=10).read()
        return sum(float(line.rsplit(" ", 1)[1]) for line in text.decode().splitlines()
                   if line.startswith(name + "{") or line.startswith(name + " "))

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def new_flags(binary):
    """Whether `binary` has the channel-creation limit (absent before it existed), which
    idle_channels turns off: it measures what idle channels cost, not the limiter."""
    out = subprocess.run([binary, "--help"], capture_output=True, text=True).stdout
    return "--channel-create-rate-per-ip" in out


def masked(opcode, payload):
    mask = os.urandom(4)
    body = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    n = len(payload)
    head = bytes([0x80 | opcode])
    if n < 126:
        head += bytes([0x80 | n])
    else:
        head += bytes([0x80 | 126]) + struct.pack(">H", n)
    return head + mask + body


def ws_connect(port, path, rcvbuf=None):
    return ws_connect_keeping(port, path, rcvbuf)[0]


def ws_connect_keeping(port, path, rcvbuf=None):
    """Opens a WebSocket; returns the socket and the bytes that came after the 101 in the
    same reads (frames the server sends at once, such as a recovery)."""
    s = socket.socket()
    if rcvbuf:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    s.connect(("127.0.0.1", port))
    key = base64.b64encode(os.urandom(16)).decode()
    s.sendall((f"GET {path} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
               f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = s.recv(4096)
        if not chunk:
            raise RuntimeError("closed during handshake")
        head += chunk
    return s, head.split(b"\r\n\r\n", 1)[1]


def read_frame(sock, buf):
    """Reads one server frame (unmasked) from `sock`, with `buf` holding leftover bytes;
    returns (opcode, payload, leftover)."""
    while True:
        if len(buf) >= 2:
            n, head = buf[1] & 0x7F, 2
            if n == 126 and len(buf) >= 4:
                n, head = struct.unpack(">H", buf[2:4])[0], 4
            elif n == 127 and len(buf) >= 10:
                n, head = struct.unpack(">Q", buf[2:10])[0], 10
            if n < 126 or head > 2:
                if len(buf) >= head + n:
                    return buf[0] & 0x0F, buf[head:head + n], buf[head + n:]
        chunk = sock.recv(65536)
        if not chunk:
            raise RuntimeError("echo connection closed")
        buf += chunk


def echo_rtts(sock, count, gap_s):
    """`count` echo round trips on `sock` (server pings are answered on the way)."""
    rtts, buf = [], b""
    for _ in range(count):
        t0 = time.perf_counter()
        sock.sendall(masked(0x1, b"probe"))
        while True:
            opcode, payload, buf = read_frame(sock, buf)
            if opcode == 0x9:
                sock.sendall(masked(0xA, payload))
            elif opcode == 0x1:
                break
        rtts.append((time.perf_counter() - t0) * 1000)
        time.sleep(gap_s)
    rtts.sort()
    return {"p50_ms": round(rtts[len(rtts) // 2], 3),
            "p99_ms": round(rtts[int(len(rtts) * 0.99) - 1], 3),
            "max_ms": round(rtts[-1], 3)}


def ping_flood(binary, pings=100_000):
    """A client sends `pings` pings and never reads; an echo client probes the shard."""
    gw = Gateway(binary)
    try:
        probe = ws_connect(gw.port, "/echo")
        attacker = ws_connect(gw.port, "/flood", rcvbuf=4096)
        cpu0, rss0 = gw.cpu(), gw.rss()
        frame = masked(0x9, b"")
        attacker.setblocking(False)
        blob, sent, t0 = frame * pings, 0, time.time()
        latency = None
        while sent < len(blob) and time.time() - t0 < 60:
            try:
                sent += attacker.send(blob[sent:sent + 65536])
            except BlockingIOError:
                time.sleep(0.001)
            if latency is None and sent > len(blob) // 4:
                latency = echo_rtts(probe, 200, 0.002)
        time.sleep(1)
        return {"case": "ping_flood", "pings": pings, "sent_bytes": sent,
                "server_cpu_s": round(gw.cpu() - cpu0, 3),
                "rss_growth_mib": round((gw.rss() - rss0) / 2**20, 2),
                "echo_during": latency or echo_rtts(probe, 200, 0.002)}
    finally:
        gw.stop()


def poll_hoard(binary, pollers=50, ring=64, size=64 * 1024):
    """`pollers` long-poll clients that never read, on a ring of `ring` × `size` messages."""
    gw = Gateway(binary, "--poll-ring", str(ring), "--poll-timeout", "30")
    socks = []
    try:
        seed = socket.create_connection(("127.0.0.1", gw.port))
        seed.sendall(b"GET /poll/hoard HTTP/1.1\r\nHost: x\r\n\r\n")
        time.sleep(0.3)
        for i in range(ring):
            gw.publish("hoard", (b"%08d" % i) * (size // 8))
        # The seed's answer names the channel's epoch; the hoarders ask from its start.
        seed.settimeout(5)
        answer = b""
        while b'"epoch":"' not in answer or len(answer.split(b'"epoch":"', 1)[1]) < 8:
            answer += seed.recv(65536)
        epoch = answer.split(b'"epoch":"', 1)[1][:8]
        rss0, cpu0 = gw.rss(), gw.cpu()
        for _ in range(pollers):
            s = socket.socket()
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            s.connect(("127.0.0.1", gw.port))
            s.sendall(b"GET /poll/hoard?since=" + epoch + b":0 HTTP/1.1\r\nHost: x\r\n\r\n")
            socks.append(s)
        time.sleep(2)
        return {"case": "poll_hoard", "pollers": pollers, "ring": ring, "message_bytes": size,
                "server_cpu_s": round(gw.cpu() - cpu0, 3),
                "rss_growth_mib": round((gw.rss() - rss0) / 2**20, 2)}
    finally:
        for s in socks:
            s.close()
        gw.stop()


def idle_channels(binary, channels=100_000):
    """Echo cost per round trip before and after `channels` idle long-poll channels exist."""
    # Polls held 30 s; channels linger 60 s after their poller left: none expires
    # while it is measured.
    gw = Gateway(binary, "--poll-timeout", "30", "--connect-rate-per-ip", "0",
                 *(["--channel-create-rate-per-ip", "0"] if new_flags(binary) else []),
                 "--max-connections", "200000")
    try:
        probe = ws_connect(gw.port, "/echo")

        def echo_cost(n=30_000):
            (user0, sys0), t0 = gw.cpu_split(), time.time()
            lat = echo_rtts(probe, n, 0)
            user, kernel = gw.cpu_split()
            return {"cpu_us_per_rtt": round((user + kernel - user0 - sys0) / n * 1e6, 2),
                    "user_us_per_rtt": round((user - user0) / n * 1e6, 2),
                    "wall_us_per_rtt": round((time.time() - t0) / n * 1e6, 2), **lat}

        before = echo_cost()
        made, t0 = 0, time.time()
        while made < channels and time.time() - t0 < 120:
            batch = []
            for _ in range(min(500, channels - made)):
                s = socket.socket()
                s.bind((f"127.0.{1 + made // 60000}.{2 + (made // 250) % 250}", 0))
                s.connect(("127.0.0.1", gw.port))
                s.sendall(f"GET /poll/idle-{made} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
                batch.append(s)
                made += 1
            time.sleep(0.05)
            for s in batch:
                s.close()
        # Measure only once the gateway holds nothing but the probe and the idle channels
        # (the closed pollers gone, nothing left to do), bounded.
        for _ in range(60):
            cpu0 = gw.cpu()
            time.sleep(1)
            if gw.gauge("ringcast_connections") <= 1 and gw.cpu() - cpu0 < 0.02:
                break
        owned = gw.gauge("ringcast_channels")
        after = echo_cost()
        still = gw.gauge("ringcast_channels")
        # The same once the channels expired: what the kernel's state after 100k closed
        # connections costs, apart from the channels themselves (bounded wait).
        for _ in range(90):
            if gw.gauge("ringcast_channels") == 0:
                break
            time.sleep(1)
        expired = echo_cost()

        def ratio(a, b, key):
            return round(a[key] / max(b[key], 1e-9), 2)
        return {"case": "idle_channels", "channels": made, "owned_during": [owned, still],
                "before": before, "after": after, "after_expiry": expired,
                "cpu_ratio": ratio(after, before, "cpu_us_per_rtt"),
                "user_cpu_ratio": ratio(after, before, "user_us_per_rtt"),
                "cpu_ratio_vs_expired": ratio(after, expired, "cpu_us_per_rtt")}
    finally:
        gw.stop()


CASES = {"ping_flood": ping_flood, "poll_hoard": poll_hoard, "idle_channels": idle_channels}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--bin", default="target/release/ringcast")
    ap.add_argument("cases", nargs="*", default=list(CASES))
    args = ap.parse_args()
    with open("/proc/loadavg") as f:
        print(json.dumps({"loadavg": f.read().split()[:3]}), flush=True)
    for case in args.cases:
        print(json.dumps(CASES[case](args.bin)), flush=True)


if __name__ == "__main__":
    main()
