#!/usr/bin/env python3
"""Scale proof (issue 15 item 8): N concurrent WebSocket connections on this box.

  tests/bench/scale.py --conns 20000          # smoke
  tests/bench/scale.py --conns 250000
  tests/bench/scale.py --conns 1000000 --classic-conns 250000

The file-descriptor limit is ~20,000 per process here, so the run starts G gateway
processes (`--per-gateway` connections each, 19,500 by default: 13 for 250k, 52 for 1M),
each with its own listen port (one contiguous block, below the ephemeral range) and admin
port, behind Redis; one `wsload` with `--procs` workers holds the connections, spread over
every gateway's port (wsload sends connection i to port i % G) and over many source
addresses of 127.0.0.0/8 (so no (source IP, destination port) pair comes near the ~28,000
ephemeral ports).

Redis: a Redis Cluster of 3 masters (redis-server --cluster-enabled yes + redis-cli
--cluster create) when the gateway has `--redis-cluster`; otherwise (`--redis auto`
falls back, or `--redis standalone`) one redis-server with `--redis-mode sharded`
(SSUBSCRIBE/SPUBLISH on a standalone Redis 7, the same commands a cluster gets).

Phases (one wsload run each; every one bounded by wsload's --duration and our waits):
  1. hold: C connections on ONE channel. After the ramp, quiet figures: gateways' user RSS
     (sum of VmRSS) before/after and per connection; kernel socket-buffer memory
     (/proc/net/sockstat TCP mem pages x 4096) and kernel slab (/proc/meminfo Slab) per
     connection; conntrack entries; occupancy API (GET /channels/<ch> on every gateway:
     subscribers_node summed must equal the truth, subscribers_cluster the total; skipped
     with a note if the route is missing); then ONE publish (POST /publish on gateway 0,
     body "0:<unix ns>") and wsload ends when every connection has it: publish -> last
     delivery is the max of wsload's per-delivery latency (same clock).
  2. fan-out (sharded): a new ramp of C connections over K channels (~--subs-per-channel
     each, K coprime with G so every channel has subscribers on every gateway), wsload
     publishing at a fixed rate (--fanout-rate deliveries/s) through gateway 0's admin API
     for --fanout-seconds: deliveries/s, p50/p99 publish->receive, lost; Redis CPU
     (utime+stime of every redis-server pid) per million deliveries; gateways' CPU per
     delivery.
  3. fan-out (classic): gateways restarted with --redis-mode interest against a standalone
     redis-server, same channel shape at --classic-conns connections: Redis CPU per
     million deliveries for the comparison.

Kernel settings: read before the run; changed with sysctl only when needed (listed in the
report under sysctl_changed) and restored at exit. Every process started here is tracked
by pid and stopped at exit (try/finally and SIGINT/SIGTERM handlers); every wait is
bounded; the whole run is bounded by --time-limit.
"""

import argparse
import json
import math
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")
EPHEMERAL_LOW = 32768  # ports below this are ours to listen on


def log(msg):
    print(f"[scale {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# --- bookkeeping: processes, sysctls, deadline ---------------------------------------

class Deadline:
    def __init__(self, seconds):
        self.end = time.time() + seconds

    def left(self):
        return self.end - time.time()

    def bound(self, secs):
        """`secs`, but never past the run's deadline (at least 1 s)."""
        return max(1.0, min(secs, self.left()))

    def check(self, what):
        if self.left() <= 0:
            raise TimeoutError(f"run time limit reached before {what}")


PROCS = []  # every Popen started here, stopped in reverse order at exit
# The box is shared: below this much MemAvailable the run kills its load generator
# (its sockets close, memory comes back) rather than let the OOM killer pick a victim.
GUARD = {"bytes": 1.5 * 2**30, "tripped": None}


def spawn(cmd, log_path, env=None, stdout=subprocess.DEVNULL):
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=stdout,
                            stderr=open(log_path, "w"), env=env)
    PROCS.append(proc)
    return proc


def stop(proc, secs=10, sig=signal.SIGTERM):
    if proc is None or proc.poll() is not None:
        return
    try:
        proc.send_signal(sig)
        proc.wait(secs)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)
    except ProcessLookupError:
        pass


def stop_all(procs, secs=15):
    """SIGTERM to all of `procs` at once, then wait (bounded) and SIGKILL the rest."""
    live = [p for p in procs if p.poll() is None]
    for p in live:
        try:
            p.send_signal(signal.SIGTERM)
        except ProcessLookupError:
            pass
    end = time.time() + secs
    for p in live:
        try:
            p.wait(max(0.1, end - time.time()))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(10)


class Sysctls:
    """Reads, changes (only when asked) and restores kernel settings."""

    def __init__(self):
        self.original = {}
        self.changed = {}

    @staticmethod
    def path(key):
        return "/proc/sys/" + key.replace(".", "/")

    def read(self, key):
        try:
            with open(self.path(key)) as f:
                return f.read().strip()
        except OSError:
            return None

    def set(self, key, value, why):
        old = self.read(key)
        if old is None:
            return False
        if key not in self.original:
            self.original[key] = old
        with open(self.path(key), "w") as f:
            f.write(str(value))
        self.changed[key] = {"from": old, "to": str(value), "why": why}
        log(f"sysctl {key}: {old!r} -> {value!r} ({why})")
        return True

    def restore(self):
        for key, old in self.original.items():
            try:
                with open(self.path(key), "w") as f:
                    f.write(old)
                log(f"sysctl {key} restored to {old!r}")
            except OSError as err:
                log(f"could not restore {key}: {err}")
        self.original.clear()


# --- /proc readers ------------------------------------------------------------------

def proc_cpu(pid):
    """(user, system) CPU seconds of pid."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            rest = f.read().rsplit(") ", 1)[1].split()
        return int(rest[11]) / CLK_TCK, int(rest[12]) / CLK_TCK
    except OSError:
        return 0.0, 0.0


def proc_rss(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def children(pid):
    out = []
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                out += [int(x) for x in f.read().split()]
    except OSError:
        pass
    return out


def sockstat():
    """TCP figures of /proc/net/sockstat: inuse, orphan, tw, alloc, mem (pages)."""
    with open("/proc/net/sockstat") as f:
        for line in f:
            if line.startswith("TCP:"):
                parts = line.split()[1:]
                return {parts[i]: int(parts[i + 1]) for i in range(0, len(parts), 2)}
    return {}


def meminfo():
    out = {}
    with open("/proc/meminfo") as f:
        for line in f:
            key, _, rest = line.partition(":")
            out[key] = int(rest.split()[0]) * 1024
    return out


def loadavg():
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def conntrack_count():
    try:
        with open("/proc/sys/net/netfilter/nf_conntrack_count") as f:
            return int(f.read())
    except OSError:
        return None


TCPEXT_KEYS = ("TCPMemoryPressures", "TCPMemoryPressuresChrono", "PruneCalled", "RcvPruned",
               "TCPRcvQDrop", "TCPBacklogDrop", "TCPTimeouts", "ListenOverflows", "ListenDrops",
               "TCPAbortOnMemory", "TCPAbortOnTimeout", "TW", "TCPTimeWaitOverflow")


def tcpext():
    """The TcpExt counters of /proc/net/netstat that tell memory pressure and drops."""
    try:
        with open("/proc/net/netstat") as f:
            lines = f.read().splitlines()
    except OSError:
        return {}
    for names, values in zip(lines[::2], lines[1::2]):
        if names.startswith("TcpExt:"):
            table = dict(zip(names.split()[1:], (int(v) for v in values.split()[1:])))
            return {k: table.get(k, 0) for k in TCPEXT_KEYS}
    return {}


def tcpext_delta(before):
    after = tcpext()
    return {k: after[k] - before.get(k, 0) for k in after if after[k] != before.get(k, 0)}


def kernel_snapshot():
    m = meminfo()
    s = sockstat()
    return {"t": time.time(), "tcp_inuse": s.get("inuse", 0), "tcp_alloc": s.get("alloc", 0),
            "tcp_tw": s.get("tw", 0), "tcp_mem_pages": s.get("mem", 0),
            "slab": m.get("Slab", 0), "sunreclaim": m.get("SUnreclaim", 0),
            "mem_available": m.get("MemAvailable", 0), "mem_free": m.get("MemFree", 0),
            "mem_total": m.get("MemTotal", 0),
            "conntrack": conntrack_count(), "loadavg": loadavg()}


class Sampler(threading.Thread):
    """Samples the kernel's TCP memory and MemAvailable every `every` s (peak/low)."""

    def __init__(self, every=0.1):
        super().__init__(daemon=True)
        self.every = every
        self.halt = threading.Event()
        self.peak_mem_pages = 0
        self.low_available = None

    def run(self):
        while not self.halt.wait(self.every):
            try:
                mem = sockstat().get("mem", 0)
                avail = meminfo().get("MemAvailable", 0)
            except OSError:
                continue
            self.peak_mem_pages = max(self.peak_mem_pages, mem)
            if avail < GUARD["bytes"] and not GUARD["tripped"]:
                GUARD["tripped"] = f"MemAvailable {avail / 2**30:.2f} GiB < guard"
                log(f"memory guard: {GUARD['tripped']}: killing wsload")
                for proc in PROCS:
                    if proc.args and proc.args[0].endswith("wsload") and proc.poll() is None:
                        proc.kill()
            self.low_available = avail if self.low_available is None else min(self.low_available, avail)

    def finish(self):
        self.halt.set()
        self.join(2)
        return {"tcp_mem_peak_bytes": self.peak_mem_pages * PAGE,
                "mem_available_low_bytes": self.low_available}


# --- HTTP and ports -----------------------------------------------------------------

def http(addr, path, body=None, timeout=10):
    """(status, text) of an HTTP request to addr (host:port)."""
    req = urllib.request.Request(f"http://{addr}{path}", data=body)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read().decode(errors="replace")
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode(errors="replace")


def metric_sum(text, name):
    total = 0.0
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        series, _, value = line.rpartition(" ")
        if series.split("{", 1)[0] == name:
            try:
                total += float(value)
            except ValueError:
                pass
    return total


def bindable(port):
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def free_block(n, start, used, limit=EPHEMERAL_LOW):
    """First p >= start with p..p+n-1 bindable on 127.0.0.1 and not in `used`."""
    p = start
    while p + n <= limit:
        bad = next((q for q in range(p, p + n) if q in used or not bindable(q)), None)
        if bad is None:
            used.update(range(p, p + n))
            return p
        p = bad + 1
    raise RuntimeError(f"no block of {n} free ports below {limit}")


def wait(what, secs, done, every=0.1):
    end = time.time() + secs
    while time.time() < end:
        if done():
            return
        time.sleep(every)
    raise TimeoutError(f"{what} did not happen within {secs:.0f} s")


# --- Redis --------------------------------------------------------------------------

def redis_cli(port, *args, timeout=20):
    return subprocess.run(["redis-cli", "-h", "127.0.0.1", "-p", str(port), *args],
                          capture_output=True, text=True, timeout=timeout).stdout.strip()


class Redis:
    """One standalone redis-server, or a cluster of 3 masters (no replicas)."""

    def __init__(self, workdir, ports_used, cluster, name, nice=0):
        self.workdir = workdir
        self.cluster = cluster
        self.procs = []
        self.ports = []
        count = 3 if cluster else 1
        for i in range(count):
            # a cluster node also binds port + 10000 (its bus): keep both free and low
            p = free_block(1, 7000 if cluster else 16379, ports_used)
            while cluster and (p + 10000 in ports_used or not bindable(p + 10000)):
                p = free_block(1, p + 1, ports_used)
            if cluster:
                ports_used.add(p + 10000)
            self.ports.append(p)
            cmd = ["redis-server", "--port", str(p), "--bind", "127.0.0.1", "--save", "",
                   "--appendonly", "no", "--maxclients", "10000",
                   "--client-output-buffer-limit", "pubsub 1gb 1gb 0",
                   "--dir", workdir]
            if cluster:
                cmd += ["--cluster-enabled", "yes",
                        "--cluster-config-file", f"{name}-nodes-{p}.conf",
                        "--cluster-node-timeout", "2000"]
            if nice:
                cmd = ["nice", "-n", str(nice), *cmd]
            self.procs.append(spawn(cmd, os.path.join(workdir, f"{name}-redis-{p}.log")))
        for p in self.ports:
            wait("redis PING", 15, lambda p=p: redis_cli(p, "PING", timeout=2) == "PONG", 0.1)
        if cluster:
            out = subprocess.run(
                ["redis-cli", "--cluster", "create", *[f"127.0.0.1:{p}" for p in self.ports],
                 "--cluster-replicas", "0", "--cluster-yes"],
                capture_output=True, text=True, timeout=60)
            if out.returncode != 0:
                raise RuntimeError(f"redis-cli --cluster create failed: {out.stdout[-500:]} {out.stderr[-500:]}")
            for p in self.ports:
                wait("cluster_state:ok", 30,
                     lambda p=p: "cluster_state:ok" in redis_cli(p, "CLUSTER", "INFO", timeout=2), 0.2)

    def cpu(self):
        return sum(sum(proc_cpu(p.pid)) for p in self.procs)

    def cpu_each(self):
        return [round(sum(proc_cpu(p.pid)), 2) for p in self.procs]

    def measure_idle(self, secs):
        """Redis CPU seconds per second while nothing is published (clock ticks: 10 ms)."""
        c0, t0 = self.cpu(), time.time()
        time.sleep(secs)
        self.idle_cpu_per_s = (self.cpu() - c0) / (time.time() - t0)
        return self.idle_cpu_per_s

    def url(self):
        return "redis://" + ",".join(f"127.0.0.1:{p}" for p in self.ports)

    def close(self):
        stop_all(self.procs, 5)


# --- gateways -----------------------------------------------------------------------

class Gateways:
    def __init__(self, args, workdir, ports_used, count, redis, mode, cluster, name):
        self.args = args
        self.count = count
        self.base = free_block(count, args.port_base, ports_used)
        self.admin_base = free_block(count, self.base + count, ports_used)
        self.procs = []
        self.admins = [f"127.0.0.1:{self.admin_base + i}" for i in range(count)]
        env = dict(os.environ, RUST_LOG="warn")
        for i in range(count):
            if cluster:  # the gateway follows the slot map itself
                redis_flags = ["--redis", redis.url(), "--redis-cluster"]
            else:  # one node: a standalone Redis, or (classic mode) one master of a cluster
                # each, spread round-robin (classic PUBLISH is broadcast over the cluster bus)
                port = redis.ports[i % len(redis.ports)]
                redis_flags = ["--redis", f"redis://127.0.0.1:{port}/0"]
            redis_flags += ["--redis-mode", mode]
            cmd = [args.ringcast, "--listen", f"127.0.0.1:{self.base + i}",
                   "--admin", self.admins[i], "--shards", str(args.shards), "--no-pin",
                   "--drain-seconds", "1", "--ping-interval", str(args.ping_interval),
                   *redis_flags, *args.gateway_flag]
            self.procs.append(spawn(cmd, os.path.join(workdir, f"{name}-gw{i}.log"), env=env))
        self.cmd_example = " ".join(cmd)
        for i, admin in enumerate(self.admins):
            wait(f"gateway {i} broker up", 30, lambda a=admin, i=i: self._up(a, i), 0.1)

    def _up(self, admin, i):
        if self.procs[i].poll() is not None:
            raise RuntimeError(f"gateway {i} exited with {self.procs[i].returncode}")
        try:
            return metric_sum(http(admin, "/metrics", timeout=2)[1], "ringcast_broker_up") >= 1
        except OSError:
            return False

    def url(self, path):
        return f"ws://127.0.0.1:{self.base}-{self.base + self.count - 1}{path}"

    def rss(self):
        return sum(proc_rss(p.pid) for p in self.procs)

    def cpu(self):
        u = s = 0.0
        for p in self.procs:
            a, b = proc_cpu(p.pid)
            u, s = u + a, s + b
        return u, s

    def metric(self, name):
        return sum(metric_sum(http(a, "/metrics")[1], name) for a in self.admins)

    def closed_by_reason(self):
        """ringcast_connections_closed_total summed over the gateways, per reason."""
        out = {}
        for a in self.admins:
            try:
                text = http(a, "/metrics", timeout=5)[1]
            except OSError:
                continue
            for line in text.splitlines():
                if line.startswith("ringcast_connections_closed_total{"):
                    series, _, value = line.rpartition(" ")
                    reason = series.split('reason="', 1)[1].split('"', 1)[0] if 'reason="' in series else "?"
                    out[reason] = out.get(reason, 0) + int(float(value))
        return {k: v for k, v in out.items() if v}  # cumulative since the gateways started

    def alive(self):
        return sum(p.poll() is None for p in self.procs)

    def close(self):
        stop_all(self.procs, 20)


# --- wsload ---------------------------------------------------------------------------

class Wsload:
    def __init__(self, args, workdir, name, scenario, url, conns, channels, source_ips,
                 duration, extra):
        self.ready = os.path.join(workdir, f"{name}.ready")
        self.report_path = os.path.join(workdir, f"{name}.json")
        self.done = os.path.join(workdir, f"{name}.done")
        self.metrics_port = free_port_any()
        self.procs_n = max(1, math.ceil(conns / args.per_wsload))
        self.cmd = [args.wsload, scenario, "--url", url, "--connections", str(conns),
                    "--channels", str(channels), "--procs", str(self.procs_n),
                    "--rate", str(args.rate), "--source-ips", source_ips,
                    "--duration", str(duration), "--connect-timeout", "30",
                    "--tolerate", "100%", "--ready-file", self.ready, "--done-file", self.done,
                    "--json", self.report_path,
                    "--metrics", f"127.0.0.1:{self.metrics_port}", *extra]
        self.started = time.time()
        self.proc = spawn(self.cmd, os.path.join(workdir, f"{name}.log"))

    def metric(self, name):
        try:
            return metric_sum(http(f"127.0.0.1:{self.metrics_port}", "/metrics", timeout=2)[1], name)
        except OSError:
            return float("nan")

    def rss(self):
        pids = [self.proc.pid] + children(self.proc.pid)
        return sum(proc_rss(p) for p in pids)

    def cpu(self):
        pids = [self.proc.pid] + children(self.proc.pid)
        return sum(sum(proc_cpu(p)) for p in pids)

    def wait_ramp(self, secs, target, gateways, progress):
        guard = Sampler(0.25)
        guard.start()
        try:
            return self._wait_ramp(secs, target, gateways, progress)
        finally:
            guard.finish()

    def _wait_ramp(self, secs, target, gateways, progress):
        """Waits for the ready file, logging connections every 5 s; returns the
        connections wsload counted, or raises with where the ramp stood."""
        end = time.time() + secs
        last_log = 0.0
        best, best_at = 0, time.time()
        while time.time() < end:
            if os.path.exists(self.ready):
                with open(self.ready) as f:
                    text = f.read().strip()
                if text:
                    return int(text)
            if self.proc.poll() is not None:
                raise RuntimeError(f"wsload exited during the ramp ({self.proc.returncode}); "
                                   f"memory guard: {GUARD['tripped']}")
            if time.time() - last_log >= 5:
                last_log = time.time()
                conns = self.metric("wsload_connections")
                errors = self.metric("wsload_connect_errors_total")
                snap = kernel_snapshot()
                progress.append({"s": round(time.time() - self.started, 1), "connections": conns,
                                 "connect_errors": errors, **snap})
                log(f"ramp {conns:,.0f}/{target:,} connections, {errors:,.0f} connect errors, "
                    f"gateways alive {gateways.alive()}/{gateways.count}, "
                    f"MemAvailable {snap['mem_available'] / 2**30:.1f} GiB, load {snap['loadavg']}")
                if conns == conns and conns > best:
                    best, best_at = conns, time.time()
            time.sleep(0.2)
        raise TimeoutError(f"ramp not done within {secs:.0f} s: best {best:,.0f} connections")

    def result(self, secs):
        try:
            self.proc.wait(secs)
        except subprocess.TimeoutExpired:
            # its workers die with it (PR_SET_PDEATHSIG); the kernel closes their sockets
            log(f"wsload did not end within {secs:.0f} s: killing it (pid {self.proc.pid})")
            self.proc.kill()
            self.proc.wait(30)
        try:
            with open(self.report_path) as f:
                return json.loads(f.read().strip().splitlines()[-1])
        except (OSError, ValueError, IndexError) as err:
            log(f"no wsload report ({err})")
            return {}


def free_port_any():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ip_range(second, third_first, count):
    """`count` source addresses 127.<second>.<third>.<1..250>, as wsload ranges."""
    parts, left, third = [], count, third_first
    while left > 0:
        n = min(250, left)
        parts.append(f"127.{second}.{third}.1-127.{second}.{third}.{n}")
        left -= n
        third += 1
    return ",".join(parts)


# --- phases -------------------------------------------------------------------------

def occupancy(gateways, channel, truth, deadline):
    """GET /channels/<channel> on every gateway; checks the sums against the truth."""
    status, body = http(gateways.admins[0], f"/channels/{channel}")
    if status == 404 and "subscribers" not in body:
        return {"skipped": f"GET /channels/{channel} answered 404 (route not in this build)"}
    if status != 200:
        return {"skipped": f"GET /channels/{channel} answered {status}: {body[:200]}"}
    out = {}
    t0 = time.time()
    end = time.time() + deadline.bound(10)
    while True:
        answers, took = [], []
        for a in gateways.admins:
            t = time.time()
            st, b = http(a, f"/channels/{channel}")
            took.append(time.time() - t)
            answers.append(json.loads(b) if st == 200 else {"status": st})
        node_sum = sum(int(x.get("subscribers_node", 0)) for x in answers)
        clusters = [x.get("subscribers_cluster") for x in answers]
        ok_cluster = all(c == truth for c in clusters)
        if (node_sum == truth and ok_cluster) or time.time() > end:
            break
        time.sleep(0.25)
    out.update({"truth": truth, "subscribers_node_sum": node_sum,
                "subscribers_node_ok": node_sum == truth,
                "subscribers_cluster": sorted(set(map(str, clusters))),
                "subscribers_cluster_ok": ok_cluster,
                "seconds_to_agree": round(time.time() - t0, 2),
                "answer_ms_max": round(max(took) * 1e3, 2),
                "answer_ms_mean": round(sum(took) / len(took) * 1e3, 2),
                "example_answer": answers[0]})
    return out


def rss_per_conn(after, before, conns):
    return round((after - before) / max(conns, 1), 1)


def phase_hold(args, workdir, gateways, deadline, result):
    conns = args.conns
    k0 = kernel_snapshot()
    ext0 = tcpext()
    rss0 = gateways.rss()
    cpu0 = gateways.cpu()
    result["before_ramp"] = {"gateways_rss_bytes": rss0, **k0}
    ramp_bound = conns / args.rate * 3 + 60
    hold_max = deadline.bound(ramp_bound + 240)
    wl = Wsload(args, workdir, "hold", "hold", gateways.url("/scale"), conns, 1,
                ip_range(1, 0, args.source_ips), hold_max, ["--expect-messages", "1"])
    progress = []
    result["ramp_progress"] = progress
    try:
        connected = wl.wait_ramp(deadline.bound(ramp_bound), conns, gateways, progress)
    except (TimeoutError, RuntimeError) as err:
        result["ramp_stopped"] = {"error": str(err), "kernel": kernel_snapshot(),
                                  "gateways_alive": gateways.alive()}
        raise
    ramp_wall = time.time() - wl.started
    log(f"ramp done: {connected:,} connections in {ramp_wall:.1f} s; settling {args.settle} s")
    cpu1 = gateways.cpu()
    time.sleep(args.settle)
    cpu2 = gateways.cpu()
    # idle: the connections only exchange pings (--ping-interval) in this window
    idle_rate = (sum(cpu2) - sum(cpu1)) / args.settle
    result["_gateways_idle_cpu_per_s"] = idle_rate
    k1 = kernel_snapshot()
    rss1 = gateways.rss()
    wl_rss = wl.rss()
    result["after_ramp"] = {
        "connected": connected, "ramp_wall_s": round(ramp_wall, 2),
        "gateways_rss_bytes": rss1,
        "gateways_user_rss_per_conn_bytes": rss_per_conn(rss1, rss0, connected),
        "gateways_cpu_ramp_s": [round(cpu1[0] - cpu0[0], 2), round(cpu1[1] - cpu0[1], 2)],
        "gateways_cpu_ms_per_1000_connects": round((sum(cpu1) - sum(cpu0)) / max(connected, 1) * 1e6, 2),
        "gateways_idle_cpu_per_s": round(idle_rate, 3),
        "gateways_idle_cpu_us_per_conn_per_s": round(idle_rate / max(connected, 1) * 1e6, 3),
        "kernel_tcp_mem_bytes": k1["tcp_mem_pages"] * PAGE,
        "kernel_tcp_mem_per_conn_bytes": round((k1["tcp_mem_pages"] - k0["tcp_mem_pages"]) * PAGE / max(connected, 1), 1),
        "kernel_slab_per_conn_bytes": round((k1["slab"] - k0["slab"]) / max(connected, 1), 1),
        "kernel_unreclaimable_slab_per_conn_bytes": round((k1["sunreclaim"] - k0["sunreclaim"]) / max(connected, 1), 1),
        "mem_available_drop_per_conn_bytes": round((k0["mem_available"] - k1["mem_available"]) / max(connected, 1), 1),
        "mem_free_drop_per_conn_bytes": round((k0["mem_free"] - k1["mem_free"]) / max(connected, 1), 1),
        "mem_total_change_bytes": k1["mem_total"] - k0["mem_total"],
        "wsload_rss_bytes": wl_rss, "tcp_time_wait": k1["tcp_tw"],
        "tcp_sockets_inuse": k1["tcp_inuse"], "conntrack_entries": k1["conntrack"],
        "tcpext_during_ramp": tcpext_delta(ext0),
        **{k: k1[k] for k in ("mem_available", "slab", "loadavg")},
    }
    log("after ramp: " + json.dumps(result["after_ramp"]))
    deadline.check("occupancy")
    result["occupancy"] = occupancy(gateways, "scale", connected, deadline)
    log("occupancy: " + json.dumps(result["occupancy"]))
    # One publish through gateway 0; wsload ends when every connection has it.
    sampler = Sampler(0.05)
    sampler.start()
    rcpu0 = result["_redis"].cpu()
    gcpu0 = gateways.cpu()
    ext1 = tcpext()
    t_pub = time.time()
    status, body = http(gateways.admins[0], "/publish/scale", f"0:{time.time_ns()}".encode())
    if status != 202:
        raise RuntimeError(f"publish answered {status}: {body[:200]}")
    # wsload writes --done-file once every connection has the message (before it closes
    # them): publish -> done file is an upper bound of the time to the last delivery
    # (detection lags by up to ~0.2 s); its report (per-delivery latency) comes after the
    # close, which may take long at a million: waited for at most --close-wait s.
    t_done = None
    try:
        wait("every connection has the publish", deadline.bound(args.deliver_wait),
             lambda: os.path.exists(wl.done) and open(wl.done).read().strip() != "", 0.02)
        t_done = time.time()
        log(f"all {connected:,} have the publish after {t_done - t_pub:.2f} s (done file)")
    except TimeoutError as err:
        result["one_publish_error"] = str(err)
        log(str(err))
    gcpu1 = gateways.cpu()
    ext_publish = tcpext_delta(ext1)
    closed = gateways.closed_by_reason()
    report = {}
    try:
        report = wl.result(deadline.bound(args.close_wait))
    except (OSError, ValueError) as err:
        result["hold_report_error"] = f"no wsload report ({err}); killed after --close-wait"
    t_end = time.time()
    peaks = sampler.finish()
    lat = report.get("latency") or {}
    result["one_publish"] = {
        "subscribers": connected, "received": report.get("messages"),
        "conns_complete": report.get("conns_complete"),
        "to_last_delivery_ms": lat.get("max_ms"), "p50_ms": lat.get("p50_ms"),
        "p99_ms": lat.get("p99_ms"), "first_ms": lat.get("min_ms"),
        "to_done_file_ms": round((t_done - t_pub) * 1e3, 1) if t_done else None,
        # gateways' CPU from the publish to the done file
        "gateways_cpu_s": round(sum(gcpu1) - sum(gcpu0), 3),
        "gateways_cpu_us_per_delivery": round((sum(gcpu1) - sum(gcpu0)) / max(connected, 1) * 1e6, 2),
        "wall_to_wsload_exit_s": round(t_end - t_pub, 2), **peaks,
        "tcpext_publish_to_done": ext_publish, "gateway_closes_by_reason": closed,
    }
    result["hold_report"] = {k: report.get(k) for k in (
        "target", "connected", "failed", "connect_errors", "ramp_seconds",
        "connect_rate_per_s", "closed_by_server", "protocol_errors", "messages", "pings",
        "seq_gaps", "seq_dups", "recv_enobufs", "connect_latency", "client", "missing_workers")}
    log("one publish: " + json.dumps(result["one_publish"]))


def phase_fanout(args, workdir, gateways, redis, conns, name, source_second, deadline, result):
    g = gateways.count
    k = max(1, round(conns / args.subs_per_channel))
    while math.gcd(k, g) != 1:
        k += 1
    subs = conns / k
    publish_rate = max(1.0, args.fanout_rate / subs)
    ramp_bound = conns / args.rate * 3 + 60
    wl = Wsload(args, workdir, name, "push", gateways.url("/f-{ch}"), conns, k,
                ip_range(source_second, 0, args.source_ips), args.fanout_seconds,
                ["--admin", f"http://{gateways.admins[0]}", "--publish-rate", f"{publish_rate:.2f}",
                 "--size", "64", "--publishers", "2"])
    rss0 = gateways.rss()
    progress = []
    connected = wl.wait_ramp(deadline.bound(ramp_bound), conns, gateways, progress)
    rcpu0, gcpu0, wcpu0 = redis.cpu(), gateways.cpu(), wl.cpu()
    reach0 = redis.cpu_each()
    ext0 = tcpext()
    idle_rate = redis.idle_cpu_per_s
    sampler = Sampler(0.1)
    sampler.start()
    t0 = time.time()
    # CPU counters stop at wsload's done file (publishing and a 1 s quiet drain over,
    # before it closes its connections, whose cost is not a delivery's)
    try:
        wait("fan-out end", deadline.bound(args.fanout_seconds + 30),
             lambda: os.path.exists(wl.done) and open(wl.done).read().strip() != "", 0.05)
    except TimeoutError as err:
        result[f"{name}_error"] = str(err)
    wall = time.time() - t0
    rcpu, gcpu = redis.cpu() - rcpu0, gateways.cpu()
    closed = gateways.closed_by_reason()
    reconnects = gateways.metric("ringcast_broker_reconnects_total")
    redis_each = [round(b - a, 2) for a, b in zip(reach0, redis.cpu_each())]
    ext = tcpext_delta(ext0)
    report = wl.result(deadline.bound(args.close_wait))
    peaks = sampler.finish()
    delivered = report.get("messages") or 0
    push = report.get("push") or {}
    lat = report.get("latency") or {}
    out = {
        "connections": connected, "channels": k, "subscribers_per_channel": round(subs, 1),
        "gateways": g, "publish_rate_per_s": round(publish_rate, 2),
        "target_deliveries_per_s": args.fanout_rate, "seconds": args.fanout_seconds,
        "published": push.get("published"), "deliveries": delivered,
        "deliveries_per_s": round(delivered / args.fanout_seconds),
        "wsload_deliveries_per_s": round(report.get("deliveries_per_s") or 0),
        "lost": push.get("lost"), "duplicated": push.get("duplicated"),
        "out_of_order": push.get("out_of_order"),
        "p50_ms": lat.get("p50_ms"), "p99_ms": lat.get("p99_ms"), "max_ms": lat.get("max_ms"),
        # Redis CPU net of its idle rate (serverCron and the like, measured before the
        # ramp with every gateway connected), over the publishing and draining wall time
        "redis_cpu_s": round(rcpu, 3), "redis_idle_cpu_per_s": round(idle_rate, 4),
        "redis_cpu_s_per_node": redis_each, "redis_nodes": len(redis.procs),
        "redis_cpu_s_per_million_deliveries": round(max(rcpu - idle_rate * wall, 0) / max(delivered / 1e6, 1e-9), 4),
        "redis_cpu_us_per_publish": round(max(rcpu - idle_rate * wall, 0) / max(push.get("published") or 1, 1) * 1e6, 2),
        "gateways_cpu_s": [round(gcpu[0] - gcpu0[0], 2), round(gcpu[1] - gcpu0[1], 2)],
        "gateways_cpu_us_per_delivery": round((sum(gcpu) - sum(gcpu0)) / max(delivered, 1) * 1e6, 3),
        # the same net of the idle (ping) rate the hold phase measured, when it ran
        "gateways_cpu_us_per_delivery_net_of_idle": round(
            max(sum(gcpu) - sum(gcpu0) - result.get("_gateways_idle_cpu_per_s", 0.0) * conns / args.conns * wall, 0)
            / max(delivered, 1) * 1e6, 3) if "_gateways_idle_cpu_per_s" in result else None,
        "wsload_cpu_s": round(wl.cpu() - wcpu0, 2) if wl.proc.poll() is None else None,
        "gateways_rss_bytes_after_ramp": rss0,
        "ramp_seconds": report.get("ramp_seconds"), "connect_rate_per_s": report.get("connect_rate_per_s"),
        "closed_by_server": report.get("closed_by_server"), "failed": report.get("failed"),
        "wall_s": round(wall, 1), "loadavg_after": loadavg(), **peaks, "tcpext": ext,
        "gateway_closes_by_reason": closed, "broker_reconnects_total": reconnects,
    }
    result[name] = out
    log(f"{name}: " + json.dumps(out))


# --- main ---------------------------------------------------------------------------

def plan_sysctls(args, sysctls, workdir):
    """Raises only what this run needs; returns notes."""
    notes = []
    need_files = int(args.conns * 2.1 + 100_000)
    if int(sysctls.read("fs.file-max") or 0) < need_files:
        sysctls.set("fs.file-max", need_files, "2 fds per connection (both ends) + slack")
    # conntrack: only if it actually tracks loopback connections (probe with a few).
    if conntrack_count() is not None:
        before = conntrack_count()
        with socket.socket() as srv:
            srv.bind(("127.0.0.1", 0))
            srv.listen(64)
            clients = [socket.create_connection(srv.getsockname()) for _ in range(20)]
            time.sleep(0.2)
            delta = conntrack_count() - before
            for c in clients:
                c.close()
        tracked = delta >= 10
        notes.append(f"nf_conntrack loaded; 20 probe connections added {delta} entries")
        if tracked:
            limit = int(sysctls.read("net.netfilter.nf_conntrack_max") or 0)
            if limit < args.conns * 1.3:
                sysctls.set("net.netfilter.nf_conntrack_max", int(args.conns * 1.3) + 10_000,
                            "conntrack tracks loopback connections here")
    if args.tcp_mem == "auto":
        # One publish to every connection charges each socket at least a page of buffer
        # memory at once (measured peaks: 4.5 KiB per connection at 20k, 5.9 KiB at 250k
        # and 500k, where it touched the pressure mark); above tcp_mem's
        # "pressure" TCP starts to trim buffers, above "max" it drops packets.
        low, pressure, high = (int(x) for x in sysctls.read("net.ipv4.tcp_mem").split())
        want_pressure = int(args.conns * 6144 / PAGE)
        if pressure < want_pressure:
            want = f"{low} {want_pressure} {int(args.conns * 8192 / PAGE)}"
            sysctls.set("net.ipv4.tcp_mem", want,
                        "a publish to every connection needs ~1 page per socket at once")
    elif args.tcp_mem:
        sysctls.set("net.ipv4.tcp_mem", args.tcp_mem.replace(",", " "), "--tcp-mem given")
    return notes


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--conns", type=int, default=20_000)
    p.add_argument("--per-gateway", type=int, default=19_500,
                   help="connections per gateway process (fd limit 20,000)")
    p.add_argument("--per-wsload", type=int, default=19_500, help="connections per wsload worker")
    p.add_argument("--shards", type=int, default=1, help="--shards of every gateway")
    p.add_argument("--rate", type=float, default=15_000, help="connects/s over all wsload workers")
    p.add_argument("--source-ips", type=int, default=64, help="source addresses per wsload run")
    p.add_argument("--redis", choices=["auto", "cluster", "standalone"], default="auto",
                   help="auto: a 3-master Redis Cluster if the gateway has --redis-cluster, "
                        "else one redis-server with --redis-mode sharded")
    p.add_argument("--subs-per-channel", type=int, default=1000)
    p.add_argument("--redis-nice", type=int, default=-10,
                   help="nice value of redis-server (as if on its own core: with 100+ busy "
                        "processes on 2 cores a starved Redis missed the gateways' PINGs, 2 s)")
    p.add_argument("--fanout-rate", type=float, default=50_000, help="deliveries/s asked for")
    p.add_argument("--fanout-seconds", type=float, default=20)
    p.add_argument("--classic-conns", type=int, default=None,
                   help="connections of the classic-mode phase (default --conns; 0 skips)")
    p.add_argument("--phases", default="hold,sharded,classic")
    p.add_argument("--classic-redis", choices=["standalone", "cluster"], default="standalone",
                   help="classic phase against one redis-server, or against a 3-master Redis "
                        "Cluster with the gateways spread over its masters (PUBLISH crosses the "
                        "cluster bus to every master)")
    p.add_argument("--redis-idle-seconds", type=float, default=5,
                   help="idle Redis CPU measured this long, subtracted from the fan-out's")
    p.add_argument("--ping-interval", type=int, default=30)
    p.add_argument("--settle", type=float, default=5,
                   help="quiet seconds after the ramp (the gateways' idle CPU is measured then)")
    p.add_argument("--tcp-mem", default="auto",
                   help="'auto' (raise pressure/max to 6/8 KiB per connection when below), "
                        "'MIN,PRESSURE,MAX' pages, or '' to leave it")
    p.add_argument("--time-limit", type=float, default=600)
    p.add_argument("--deliver-wait", type=float, default=120,
                   help="most seconds the one publish may take to reach everyone")
    p.add_argument("--close-wait", type=float, default=120,
                   help="most seconds wsload may take to close and report after that")
    p.add_argument("--mem-guard-gib", type=float, default=1.5,
                   help="kill wsload when MemAvailable drops below this (shared box)")
    p.add_argument("--port-base", type=int, default=20000)
    p.add_argument("--gateway-flag", action="append", default=[], help="extra gateway flag (repeatable)")
    p.add_argument("--ringcast", default=os.path.join(ROOT, "target/release/ringcast"))
    p.add_argument("--wsload", default=os.path.join(ROOT, "target/release/wsload"))
    p.add_argument("--out", default=os.path.join(ROOT, "target/bench"))
    args = p.parse_args()
    if args.classic_conns is None:
        args.classic_conns = args.conns

    deadline = Deadline(args.time_limit)
    GUARD["bytes"] = args.mem_guard_gib * 2**30
    os.makedirs(args.out, exist_ok=True)
    workdir = tempfile.mkdtemp(prefix=f"ringcast-scale-{args.conns}-", dir=args.out)
    log(f"logs in {workdir}; load average {loadavg()}")
    help_text = subprocess.run([args.ringcast, "--help"], capture_output=True, text=True).stdout
    has_cluster = "--redis-cluster" in help_text
    cluster = args.redis == "cluster" or (args.redis == "auto" and has_cluster)
    if cluster and not has_cluster:
        sys.exit("--redis cluster: this gateway build has no --redis-cluster")
    count = math.ceil(args.conns / args.per_gateway)
    sysctls = Sysctls()
    result = {"conns": args.conns, "gateways": count, "shards_per_gateway": args.shards,
              "redis": "cluster of 3 masters, --redis-cluster --redis-mode sharded" if cluster
              else "standalone redis-server, --redis-mode sharded (no --redis-cluster in this build)",
              "command": " ".join(sys.argv), "started_utc": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()),
              "loadavg_start": loadavg(), "cores": os.cpu_count(),
              "kernel": os.uname().release, "workdir": workdir}

    def on_signal(signum, _frame):
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    gateways = redis = None
    ports_used = set()
    try:
        result["sysctl_read"] = {k: sysctls.read(k) for k in (
            "fs.file-max", "fs.nr_open", "net.core.somaxconn", "net.ipv4.tcp_mem",
            "net.ipv4.ip_local_port_range", "net.ipv4.tcp_max_syn_backlog",
            "net.netfilter.nf_conntrack_max", "net.ipv4.tcp_tw_reuse", "net.ipv4.tcp_max_tw_buckets")}
        result["notes"] = plan_sysctls(args, sysctls, workdir)
        phases = args.phases.split(",")
        if "hold" in phases or "sharded" in phases:
            redis = Redis(workdir, ports_used, cluster, "sharded", args.redis_nice)
            result["_redis"] = redis
            gateways = Gateways(args, workdir, ports_used, count, redis, "sharded", cluster, "sharded")
            result["gateway_command_example"] = gateways.cmd_example
            result["redis_idle_cpu_per_s_sharded"] = redis.measure_idle(args.redis_idle_seconds)
            log(f"{count} gateways up (ports {gateways.base}-{gateways.base + count - 1}), "
                f"RSS {gateways.rss() / 2**20:.0f} MiB; Redis {redis.url()}")
            if "hold" in phases:
                phase_hold(args, workdir, gateways, deadline, result)
            if "sharded" in phases:
                deadline.check("sharded fan-out")
                phase_fanout(args, workdir, gateways, redis, args.conns, "fanout_sharded", 2,
                             deadline, result)
            result["gateway_closes"] = {"sharded_alive_at_end": gateways.alive()}
            gateways.close()
            redis.close()
            gateways = redis = None
        if "classic" in phases and args.classic_conns:
            deadline.check("classic fan-out")
            redis = Redis(workdir, ports_used, args.classic_redis == "cluster", "classic", args.redis_nice)
            gcount = math.ceil(args.classic_conns / args.per_gateway)
            result["classic_redis"] = args.classic_redis
            gateways = Gateways(args, workdir, ports_used, gcount, redis, "interest", False, "classic")
            result["redis_idle_cpu_per_s_classic"] = redis.measure_idle(args.redis_idle_seconds)
            phase_fanout(args, workdir, gateways, redis, args.classic_conns, "fanout_classic", 3,
                         deadline, result)
    except (Exception, KeyboardInterrupt) as err:  # report what stopped the run
        result["error"] = f"{type(err).__name__}: {err}"
        result["kernel_at_error"] = kernel_snapshot()
        log(f"stopped: {result['error']}")
    finally:
        for proc in reversed(PROCS):
            stop(proc, 20)
        sysctls.restore()
        result.pop("_redis", None)
        result.pop("_gateways_idle_cpu_per_s", None)
        result["sysctl_changed"] = sysctls.changed
        result["loadavg_end"] = loadavg()
        result["memory_guard"] = GUARD["tripped"]
        result["wall_s"] = round(time.time() - (deadline.end - args.time_limit), 1)
        path = os.path.join(args.out, f"scale-{args.conns}.json")
        with open(path, "w") as f:
            json.dump(result, f, indent=1, default=str)
        log(f"report: {path}")
        summary(result)


def summary(r):
    def row(k, v):
        print(f"| {k} | {v} |")

    def n(v):  # a figure that may be missing (no wsload report after --close-wait)
        return f"{v:,}" if isinstance(v, (int, float)) else str(v)
    print(f"\n### {r['conns']:,} connections: {r['gateways']} gateways x {r['shards_per_gateway']} shard(s); {r['redis']}")
    print("| figure | value |\n|---|---:|")
    row("load average at start / end", f"{r['loadavg_start']} / {r.get('loadavg_end')}")
    a = r.get("after_ramp")
    if a:
        h = r.get("hold_report", {})
        row("connected", n(a["connected"]))
        row("ramp (wsload) s / connects/s", f"{h.get('ramp_seconds')} / {h.get('connect_rate_per_s')}")
        row("gateways' user RSS total (MiB)", f"{a['gateways_rss_bytes'] / 2**20:.0f}")
        row("gateways' user RSS per connection (B)", a["gateways_user_rss_per_conn_bytes"])
        row("kernel socket-buffer memory per connection (B, sockstat)", a["kernel_tcp_mem_per_conn_bytes"])
        row("kernel slab per connection, both ends (B)", a["kernel_slab_per_conn_bytes"])
        row("MemAvailable drop per connection, everything (B)", a["mem_available_drop_per_conn_bytes"])
        row("wsload RSS (MiB)", f"{a['wsload_rss_bytes'] / 2**20:.0f}")
        row("gateways' CPU per 1,000 connects (ms)", a["gateways_cpu_ms_per_1000_connects"])
        row("gateways' idle CPU (pings), us per connection per s", a["gateways_idle_cpu_us_per_conn_per_s"])
    o = r.get("one_publish")
    if o:
        row("one publish: received / subscribers", f"{n(o['received'])} / {n(o['subscribers'])}")
        row("one publish: to last delivery (ms; wsload latency max / done file)",
            f"{o['to_last_delivery_ms']} / {o['to_done_file_ms']}")
        row("one publish: p50 / p99 (ms)", f"{o['p50_ms']} / {o['p99_ms']}")
        row("one publish: peak TCP buffer memory (MiB)", f"{o['tcp_mem_peak_bytes'] / 2**20:.0f}")
        row("one publish: gateways' CPU per delivery (us)", o.get("gateways_cpu_us_per_delivery"))
    occ = r.get("occupancy")
    if occ:
        row("occupancy", json.dumps({k: v for k, v in occ.items() if k != "example_answer"}))
    for name in ("fanout_sharded", "fanout_classic"):
        f = r.get(name)
        if f:
            row(f"{name}: conns / channels / publishes/s", f"{n(f['connections'])} / {f['channels']} / {f['publish_rate_per_s']}")
            row(f"{name}: deliveries/s (asked {f['target_deliveries_per_s']:,.0f})", n(f["deliveries_per_s"]))
            row(f"{name}: p50 / p99 / max (ms)", f"{f['p50_ms']} / {f['p99_ms']} / {f['max_ms']}")
            row(f"{name}: lost / dup / closed", f"{f['lost']} / {f['duplicated']} / {f['closed_by_server']}")
            row(f"{name}: Redis CPU s per 1M deliveries", f["redis_cpu_s_per_million_deliveries"])
            row(f"{name}: Redis CPU s (idle rate per s)", f"{f['redis_cpu_s']} ({f['redis_idle_cpu_per_s']})")
            row(f"{name}: Redis CPU us per publish", f["redis_cpu_us_per_publish"])
            row(f"{name}: gateways CPU us per delivery", f["gateways_cpu_us_per_delivery"])
    if r.get("error"):
        row("stopped by", r["error"])
    row("sysctl changed", json.dumps(r.get("sysctl_changed")) or "none")


if __name__ == "__main__":
    main()
