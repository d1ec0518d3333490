#!/usr/bin/env python3
"""A tiny aioquic HTTP/3 server with the quicbench resources: GET /bytes/N
(the splitmix64 pattern), GET / (health), 404 otherwise. Prints
"LISTENING <port>" on stdout when ready; stops when stdin closes or after
--max-seconds (so a crashed test never leaves it running).
"""

import argparse
import asyncio
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import pattern  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "endpoints"))
from qb_contract import leaf_and_chain  # noqa: E402
from aioquic_h3 import H3Responder  # noqa: E402

from aioquic.asyncio import serve  # noqa: E402
from aioquic.h3.connection import H3_ALPN  # noqa: E402
from aioquic.quic.configuration import QuicConfiguration  # noqa: E402
from cryptography import x509  # noqa: E402
from cryptography.hazmat.primitives.serialization import load_pem_private_key  # noqa: E402

MAX_BYTES = 64 << 20


class H3Server(H3Responder):
    name = b"aioquic-interop"

    def answer(self, path):
        if path == "/":
            return 200, b"quicbench ok\n", b"text/plain"
        if path.startswith("/bytes/"):
            n = path[len("/bytes/") :]
            if not n.isdigit():
                return 400, b"400 bad request\n", b"text/plain"
            if int(n) > MAX_BYTES:
                return 413, b"413 too large\n", b"text/plain"
            return 200, pattern.chunk(0, int(n)), b"application/octet-stream"
        return 404, b"404 not found\n", b"text/plain"


def configuration(cert_path, key_path):
    cfg = QuicConfiguration(is_client=False, alpn_protocols=H3_ALPN)
    with open(cert_path, "rb") as f:
        certs = x509.load_pem_x509_certificates(f.read())

    cfg.certificate, cfg.certificate_chain = leaf_and_chain(certs, cert_path)
    with open(key_path, "rb") as f:
        cfg.private_key = load_pem_private_key(f.read(), password=None)
    return cfg


async def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--cert", required=True)
    ap.add_argument("--key", required=True)
    ap.add_argument("--max-seconds", type=float, default=120.0)
    args = ap.parse_args()

    server = await serve(
        args.host, args.port, configuration=configuration(args.cert, args.key), create_protocol=H3Server
    )
    port = server._transport.get_extra_info("sockname")[1]
    print(f"LISTENING {port}", flush=True)

    loop = asyncio.get_running_loop()
    stdin_closed = loop.run_in_executor(None, sys.stdin.read)
    try:
        await asyncio.wait_for(stdin_closed, args.max_seconds)
    except asyncio.TimeoutError:
        pass
    server.close()


if __name__ == "__main__":
    asyncio.run(main())
