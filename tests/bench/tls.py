#!/usr/bin/env python3
"""What TLS costs the gateway (issue 14), plain and TLS side by side in one run, with
wsload (release builds) as the client and server CPU read from /proc (this box is shared
by client and server, so CPU per operation is the figure, not the rate wsload reached):

- memory: user-space RSS per idle connection at --connections (19,000 by default:
  one wsload process), plain vs TLS (ECDSA P-256), default shards;
- handshakes: server CPU per new connection (accept, TLS handshake, HTTP upgrade,
  close) with --shards 1, plain vs TLS full (ECDSA P-256, RSA 2048) vs TLS resumed
  (session tickets); handshakes/s per shard = 1 / that CPU;
- fan-out: server CPU per delivery of paced 64-byte messages (1,000 subscribers of one
  channel, 200 publishes/s), plain vs TLS, --shards 1 and default.

Certificates are made with the openssl CLI in a temporary directory. Prints one JSON
object; the load average at start comes first.

Usage: tests/bench/tls.py [--bin target/release/ringcast] [--wsload target/release/wsload]
       [--connections 19000] [only: memory handshakes fanout]
Every run is bounded by wsload's own --duration; every process is stopped by its pid.
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


def openssl(workdir, *args):
    subprocess.run(["openssl", *args], cwd=workdir, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def make_certs(workdir):
    """A root CA and two leaves for 127.0.0.1: ec.{pem,key} and rsa.{pem,key}."""
    with open(os.path.join(workdir, "leaf.cnf"), "w") as f:
        f.write("subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n")
    openssl(workdir, "req", "-x509", "-nodes", "-newkey", "ec", "-pkeyopt",
            "ec_paramgen_curve:P-256", "-keyout", "root.key", "-out", "root.pem",
            "-days", "2", "-subj", "/CN=bench root")
    for name, key in (("ec", ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"]),
                      ("rsa", ["-newkey", "rsa:2048"])):
        openssl(workdir, "req", "-nodes", *key, "-keyout", f"{name}.key", "-out",
                f"{name}.csr", "-subj", "/CN=127.0.0.1")
        openssl(workdir, "x509", "-req", "-in", f"{name}.csr", "-CA", "root.pem",
                "-CAkey", "root.key", "-CAcreateserial", "-out", f"{name}.pem",
                "-days", "2", "-extfile", "leaf.cnf")


def wait_ready(path, seconds=60):
    """Waits (bounded) for wsload's --ready-file."""
    deadline = time.monotonic() + seconds
    while not os.path.exists(path) and time.monotonic() < deadline:
        time.sleep(0.05)


class Bench:
    def __init__(self, args, workdir):
        self.args, self.workdir = args, workdir
        self.certs = {"ecdsa": (f"{workdir}/ec.pem", f"{workdir}/ec.key"),
                      "rsa": (f"{workdir}/rsa.pem", f"{workdir}/rsa.key")}

    def gateway(self, shards, key=None):
        cert = ("--tls-cert", self.certs[key][0], "--tls-key", self.certs[key][1]) if key else ()
        return Gateway(self.args.bin, *cert, shards=shards)

    def url(self, gw, key, path):
        scheme = "wss" if key else "ws"
        return f"{scheme}://127.0.0.1:{gw.port}{path}"

    def wsload(self, gw, key, scenario, *flags, ready=None, insecure=False):
        cmd = [self.args.wsload, scenario, *flags]
        if key and insecure:
            # Each connection its own SNI name, so each resumes its own session.
            cmd += ["--tls-insecure"]
        elif key:
            cmd += ["--tls-ca", f"{self.workdir}/root.pem"]
        if ready:
            cmd += ["--ready-file", ready]
        return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                text=True)

    def memory(self, key):
        """RSS per idle connection: growth from before the ramp to after it."""
        gw = self.gateway(None, key)
        try:
            time.sleep(0.5)
            before = gw.rss()
            ready = os.path.join(self.workdir, f"ready-{key}")
            run = self.wsload(gw, key, "hold", "--url", self.url(gw, key, "/idle-{ch}"),
                              "--channels", "100", "--connections", str(self.args.connections),
                              "--rate", "3000", "--duration", "8", ready=ready)
            wait_ready(ready, 120)
            time.sleep(3)
            after = gw.rss()
            report = json.loads(run.communicate(timeout=120)[0].strip().splitlines()[-1])
            held = report["connected"]
            return {"connections": held, "rss_before_mib": round(before / 2**20, 1),
                    "rss_after_mib": round(after / 2**20, 1),
                    "bytes_per_connection": round((after - before) / max(held, 1))}
        finally:
            gw.stop()

    def handshakes(self, key, resume):
        """Server CPU per reconnect (close + connect + handshake + upgrade), --shards 1."""
        gw = self.gateway(1, key)
        try:
            flags = ["--url", self.url(gw, key, "/hs"), "--connections", "1000",
                     "--interval", "1", "--churn", "100%", "--duration", "6",
                     "--rate", "2000"]
            if key and not resume:
                flags.append("--tls-no-resume")
            ready = os.path.join(self.workdir, f"ready-hs-{key}-{resume}")
            run = self.wsload(gw, key, "churn", *flags, ready=ready, insecure=True)
            wait_ready(ready)
            cpu0 = gw.cpu()
            report = json.loads(run.communicate(timeout=120)[0].strip().splitlines()[-1])
            cpu = gw.cpu() - cpu0
            reconnects = report["churn"]["reconnects"]
            per = cpu / max(reconnects, 1)
            return {"reconnects": reconnects, "failures": report["churn"]["reconnect_failures"],
                    "server_cpu_us_per_connection": round(per * 1e6, 1),
                    "connections_per_s_per_shard": round(1 / per) if per else None}
        finally:
            gw.stop()

    def fanout(self, key, shards):
        """Server CPU per delivery, 1,000 subscribers, 200 publishes/s of 64 bytes."""
        gw = self.gateway(shards, key)
        try:
            ready = os.path.join(self.workdir, f"ready-fan-{key}-{shards}")
            run = self.wsload(gw, key, "push", "--url", self.url(gw, key, "/fan"),
                              "--connections", "1000", "--admin",
                              f"http://127.0.0.1:{gw.admin}", "--publish-rate", "200",
                              "--duration", "8", "--size", "64", ready=ready)
            wait_ready(ready)
            return push_figures(gw, run, timeout=120)
        finally:
            gw.stop()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--bin", default="target/release/ringcast")
    parser.add_argument("--wsload", default="target/release/wsload")
    parser.add_argument("--connections", type=int, default=19000)
    parser.add_argument("only", nargs="*", default=["memory", "handshakes", "fanout"])
    args = parser.parse_args()
    out = {"load_at_start": open("/proc/loadavg").read().split()[:3], "cores": os.cpu_count()}
    with tempfile.TemporaryDirectory(prefix="ringcast-tls-bench-") as workdir:
        make_certs(workdir)
        bench = Bench(args, workdir)
        if "memory" in args.only:
            out["memory"] = {"plain": bench.memory(None), "tls_ecdsa": bench.memory("ecdsa")}
        if "handshakes" in args.only:
            out["handshakes_shards_1"] = {
                "plain": bench.handshakes(None, True),
                "tls_ecdsa_full": bench.handshakes("ecdsa", False),
                "tls_ecdsa_resumed": bench.handshakes("ecdsa", True),
                "tls_rsa_full": bench.handshakes("rsa", False),
                "tls_rsa_resumed": bench.handshakes("rsa", True),
            }
        if "fanout" in args.only:
            out["fanout"] = {f"{name}_shards_{shards or 'default'}": bench.fanout(key, shards)
                             for shards in (1, None)
                             for name, key in (("plain", None), ("tls", "ecdsa"))}
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
