#!/usr/bin/env python3
"""What channel history costs (issue 12), one gateway process per case, --shards 1.

  memory        RSS per kept message (100,000 messages of 64 B over 1,000 channels)
                and per channel with history (10,000 channels, one message each)
  fanout        server CPU per delivery with history on and off, 1,000 subscribers of
                one channel, 300 publishes paced 5 ms apart, off/on/off/on in one run

Usage: tests/bench/history.py [--bin target/release/ringcast] [memory fanout]
Prints one JSON object per case. Every loop is bounded; the gateway is stopped by pid.
"""

import argparse
import json
import os
import select
import socket
import sys
import threading
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from abuse import Gateway, ws_connect  # noqa: E402


def batch_publish(gw, items):
    body = "\n".join(json.dumps(i) for i in items).encode()
    req = urllib.request.Request(f"http://127.0.0.1:{gw.admin}/publish", data=body)
    urllib.request.urlopen(req, timeout=30).read()


def memory(binary):
    out = {"case": "memory"}
    gw = Gateway(binary, "--history-size", "100", "--history-max-bytes", str(1 << 30))
    try:
        time.sleep(0.5)
        rss0 = gw.rss()
        payload = "x" * 64
        for start in range(0, 100_000, 1000):
            batch_publish(gw, [{"channel": f"m{(start + i) % 1000}", "data": payload}
                               for i in range(1000)])
        time.sleep(1.5)
        rss1 = gw.rss()
        out["kept_messages"] = gw.gauge("ringcast_history_messages")
        out["rss_per_kept_message_b"] = round((rss1 - rss0) / 100_000, 1)
        out["history_bytes_per_message_b"] = round(gw.gauge("ringcast_history_bytes") / 100_000, 1)
        for start in range(0, 10_000, 1000):
            batch_publish(gw, [{"channel": f"c{start + i}", "data": payload} for i in range(1000)])
        time.sleep(1.5)
        rss2 = gw.rss()
        out["rss_per_channel_with_one_message_b"] = round((rss2 - rss1) / 10_000, 1)
    finally:
        gw.stop()
    return out


def drain(socks, stop):
    while not stop.is_set():
        ready, _, _ = select.select(socks, [], [], 0.1)
        for s in ready:
            try:
                s.recv(1 << 20)
            except OSError:
                pass


def fanout_once(binary, history, subscribers=1000, publishes=300):
    flags = ["--history-size", "100"] if history else []
    gw = Gateway(binary, "--max-connections", "5000", *flags)
    socks, stop = [], threading.Event()
    try:
        for _ in range(subscribers):
            socks.append(ws_connect(gw.port, "/fan", rcvbuf=1 << 20))
        reader = threading.Thread(target=drain, args=(socks, stop), daemon=True)
        reader.start()
        time.sleep(1)
        cpu0, t0 = gw.cpu(), time.time()
        body = b"y" * 64
        for _ in range(publishes):
            gw.publish("fan", body)
            time.sleep(0.005)
        time.sleep(1)
        cpu = gw.cpu() - cpu0
        delivered = gw.gauge("ringcast_messages_delivered_total")
        stop.set()
        reader.join()
        return {"history": history, "deliveries": delivered, "server_cpu_s": round(cpu, 3),
                "cpu_us_per_delivery": round(cpu / max(delivered, 1) * 1e6, 3),
                "seconds": round(time.time() - t0, 1)}
    finally:
        stop.set()
        for s in socks:
            s.close()
        gw.stop()


def fanout(binary):
    runs = [fanout_once(binary, h) for h in (False, True, False, True)]
    off = [r["cpu_us_per_delivery"] for r in runs if not r["history"]]
    on = [r["cpu_us_per_delivery"] for r in runs if r["history"]]
    return {"case": "fanout", "runs": runs,
            "ratio_on_vs_off": round(sum(on) / max(sum(off), 1e-9), 3)}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--bin", default="target/release/ringcast")
    parser.add_argument("cases", nargs="*", default=["memory", "fanout"])
    args = parser.parse_args()
    print(json.dumps({"loadavg": open("/proc/loadavg").read().split()[:3]}))
    for case in args.cases:
        print(json.dumps({"memory": memory, "fanout": fanout}[case](args.bin)), flush=True)


if __name__ == "__main__":
    main()
