#!/usr/bin/env python3
"""Fetch https://HOST:PORT/PATH over HTTP/3 with aioquic and verify the body
against the quicbench pattern. Prints one JSON line; exit 0 only if the status
is 200 and the body is exactly the expected pattern bytes.

Traffic goes only to the address given (tests use 127.0.0.1).
"""

import argparse
import asyncio
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import pattern  # noqa: E402

from aioquic.asyncio import connect  # noqa: E402
from aioquic.asyncio.protocol import QuicConnectionProtocol  # noqa: E402
from aioquic.h3.connection import H3_ALPN, H3Connection  # noqa: E402
from aioquic.h3.events import DataReceived, HeadersReceived  # noqa: E402
from aioquic.quic.configuration import QuicConfiguration  # noqa: E402


class H3Client(QuicConnectionProtocol):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.h3 = H3Connection(self._quic)
        self.waiters = {}
        self.heads = {}
        self.bodies = {}

    def quic_event_received(self, event):
        for ev in self.h3.handle_event(event):
            sid = getattr(ev, "stream_id", None)
            if sid not in self.waiters:
                continue
            if isinstance(ev, HeadersReceived):
                self.heads[sid] = dict(ev.headers)
            elif isinstance(ev, DataReceived):
                self.bodies[sid].extend(ev.data)
            if getattr(ev, "stream_ended", False) and not self.waiters[sid].done():
                self.waiters[sid].set_result(None)

    async def get(self, authority: str, path: str):
        sid = self._quic.get_next_available_stream_id()
        self.waiters[sid] = asyncio.get_running_loop().create_future()
        self.bodies[sid] = bytearray()
        self.h3.send_headers(
            sid,
            [
                (b":method", b"GET"),
                (b":scheme", b"https"),
                (b":authority", authority.encode()),
                (b":path", path.encode()),
                (b"user-agent", b"aioquic-interop"),
            ],
            end_stream=True,
        )
        self.transmit()
        await self.waiters[sid]
        return self.heads.get(sid, {}), bytes(self.bodies[sid])


async def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--path", default="/bytes/1048576")
    ap.add_argument("--cafile", required=True, help="PEM of certificates to trust")
    ap.add_argument("--server-name", default="localhost")
    ap.add_argument("--timeout", type=float, default=30.0)
    args = ap.parse_args()

    cfg = QuicConfiguration(is_client=True, alpn_protocols=H3_ALPN)
    cfg.load_verify_locations(args.cafile)
    cfg.server_name = args.server_name
    t0 = time.monotonic()
    async with connect(args.host, args.port, configuration=cfg, create_protocol=H3Client) as client:
        head, body = await asyncio.wait_for(
            client.get(f"{args.server_name}:{args.port}", args.path), args.timeout
        )
    elapsed = time.monotonic() - t0
    status = int(head.get(b":status", b"0"))
    expected = None
    mismatch = None
    if args.path.startswith("/bytes/"):
        expected = int(args.path[len("/bytes/") :].split("?")[0])
        mismatch = pattern.first_mismatch(0, body)
    ok = status == 200 and (expected is None or (len(body) == expected and mismatch is None))
    print(
        json.dumps(
            {
                "status": status,
                "bytes": len(body),
                "expected": expected,
                "first_mismatch": mismatch,
                "verified": ok,
                "seconds": round(elapsed, 4),
            }
        )
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
