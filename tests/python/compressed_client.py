"""A Python `websockets` client offering permessage-deflate, for the end-to-end tests.

Usage: compressed_client.py BASE_URL CHANNEL COUNT ECHO_BYTES
(BASE_URL like ws://127.0.0.1:PORT, no trailing slash)

1. Connects to BASE_URL/CHANNEL with compression="deflate" and prints one JSON line
   {"event": "ready", "extensions": <Sec-WebSocket-Extensions answer or null>}.
2. Prints each of the next COUNT messages as one JSON line
   {"event": "message", "type": "text"|"binary", "data": ..., "compressed": bool},
   where "compressed" says whether the frame carried RSV1 (sent deflated).
3. Opens BASE_URL/echo (compression="deflate"; websockets then deflates every message
   it sends), sends a text of ECHO_BYTES bytes, waits for the echo and prints
   {"event": "echo", "extensions": ..., "same": bool, "length": int, "compressed": bool}.
Exits non-zero on timeout (30 s per step) or on a close before the end.
"""
import asyncio
import json
import sys

from websockets.asyncio.client import connect
from websockets.extensions.permessage_deflate import PerMessageDeflate
from websockets.frames import Opcode

# RSV1 of every text or binary frame received with permessage-deflate active, in
# arrival order; one list per connection (the extension object is per connection).
_RSV1_SEEN: dict[int, list[bool]] = {}
_original_decode = PerMessageDeflate.decode


def _recording_decode(self, frame, *args, **kwargs):
    if frame.opcode in (Opcode.TEXT, Opcode.BINARY):
        _RSV1_SEEN.setdefault(id(self), []).append(bool(frame.rsv1))
    return _original_decode(self, frame, *args, **kwargs)


PerMessageDeflate.decode = _recording_decode


def rsv1_flags(ws) -> list[bool]:
    """RSV1 flags of the data frames `ws` has received so far ([] without deflate)."""
    for extension in ws.protocol.extensions:
        if isinstance(extension, PerMessageDeflate):
            return _RSV1_SEEN.get(id(extension), [])
    return []


def emit(record: dict) -> None:
    print(json.dumps(record), flush=True)


def echo_text(size: int) -> str:
    """A text of exactly `size` bytes, compressible but not a single repeated byte."""
    pattern = " ".join(f"echo-{i}-{'xyz'[i % 3]}" for i in range(97)) + " "
    return (pattern * (size // len(pattern) + 1))[:size]


async def main(base: str, channel: str, count: int, echo_bytes: int) -> None:
    async with connect(
        f"{base}/{channel}", compression="deflate", open_timeout=10, max_size=2**20
    ) as ws:
        emit({"event": "ready",
              "extensions": ws.response.headers.get("Sec-WebSocket-Extensions")})
        for index in range(count):
            msg = await asyncio.wait_for(ws.recv(), timeout=30)
            flags = rsv1_flags(ws)
            compressed = flags[index] if index < len(flags) else False
            if isinstance(msg, bytes):
                emit({"event": "message", "type": "binary", "data": msg.hex(),
                      "compressed": compressed})
            else:
                emit({"event": "message", "type": "text", "data": msg,
                      "compressed": compressed})

    text = echo_text(echo_bytes)
    async with connect(
        f"{base}/echo", compression="deflate", open_timeout=10, max_size=2**20
    ) as ws:
        await ws.send(text)
        reply = await asyncio.wait_for(ws.recv(), timeout=30)
        flags = rsv1_flags(ws)
        emit({"event": "echo",
              "extensions": ws.response.headers.get("Sec-WebSocket-Extensions"),
              "same": reply == text, "length": len(reply),
              "compressed": bool(flags and flags[0])})


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])))
