"""An independent WebSocket client (Python `websockets`) for the end-to-end tests.

Usage: subscriber.py URL COUNT
Connects to URL, prints "ready" once the handshake is done, then prints each of the
next COUNT messages as one JSON line {"type": "text"|"binary", "data": ...} and exits.
Exits non-zero on timeout (30 s) or on a close before COUNT messages. For a wss:// URL
the server certificate is checked against the CA file in $RINGCAST_CA.
"""
import asyncio
import json
import os
import ssl
import sys

import websockets


async def main(url: str, count: int) -> None:
    tls = None
    if url.startswith("wss://"):
        tls = ssl.create_default_context(cafile=os.environ["RINGCAST_CA"])
    async with websockets.connect(url, open_timeout=10, max_size=2**20, ssl=tls) as ws:
        print("ready", flush=True)
        for _ in range(count):
            msg = await asyncio.wait_for(ws.recv(), timeout=30)
            if isinstance(msg, bytes):
                print(json.dumps({"type": "binary", "data": msg.hex()}), flush=True)
            else:
                print(json.dumps({"type": "text", "data": msg}), flush=True)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2])))
