#!/usr/bin/env python3
"""HTTP/3 static file server on aioquic for the endpoint contract
(docs/endpoints.md): serves the files of QB_WWW at their paths.

Environment: QB_LISTEN_ADDR, QB_PORT, QB_CERT, QB_KEY, QB_WWW, QB_CC
(cubic|newreno), QB_KEYLOG, QB_QLOG_DIR, QB_OUTPUT_DIR.

Session tickets are kept in memory (so a client can resume, and send 0-RTT
requests, for as long as this process runs). Every handshake is logged on
stderr as "handshake alpn=h3 resumed=True early_data=True".
Runs until SIGTERM.
"""

import asyncio
import os
import signal
import sys

from aioquic.asyncio import serve
from aioquic.h3.connection import H3_ALPN
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.logger import QuicFileLogger
from cryptography import x509

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from qb_contract import Contract, leaf_and_chain  # noqa: E402
from aioquic_h3 import H3Responder  # noqa: E402
from cryptography.hazmat.primitives.serialization import load_pem_private_key

CC = {"cubic": "cubic", "newreno": "reno"}
CHUNK = 1 << 20


_C = Contract("aioquic-server")
env = _C.env


class Server(H3Responder):
    www = "/"
    log_handshakes = True

    def answer(self, path):
        # Stay inside the document root.
        full = os.path.realpath(os.path.join(self.www, path.lstrip("/")))
        if (full == self.www or full.startswith(self.www + os.sep)) and os.path.isfile(full):
            with open(full, "rb") as f:
                return 200, f.read(), b"application/octet-stream"
        return 404, b"404 not found\n", b"text/plain"


def configuration():
    cc = os.environ.get("QB_CC") or "cubic"
    if cc not in CC:
        sys.exit(f"aioquic-server: congestion controller QB_CC={cc} is not available here (can run: {' '.join(CC)})")
    cfg = QuicConfiguration(is_client=False, alpn_protocols=H3_ALPN, congestion_control_algorithm=CC[cc])
    cfg.max_datagram_frame_size = None
    with open(env("QB_CERT"), "rb") as f:
        certs = x509.load_pem_x509_certificates(f.read())

    cfg.certificate, cfg.certificate_chain = leaf_and_chain(certs, env("QB_CERT"))
    with open(env("QB_KEY"), "rb") as f:
        cfg.private_key = load_pem_private_key(f.read(), password=None)
    if os.environ.get("QB_KEYLOG"):
        cfg.secrets_log_file = open(os.environ["QB_KEYLOG"], "a", buffering=1)
    if os.environ.get("QB_QLOG_DIR"):
        os.makedirs(os.environ["QB_QLOG_DIR"], exist_ok=True)
        cfg.quic_logger = QuicFileLogger(os.environ["QB_QLOG_DIR"])
    return cfg


class TicketStore:
    def __init__(self):
        self.tickets = {}

    def add(self, ticket):
        self.tickets[ticket.ticket] = ticket

    def pop(self, label):
        return self.tickets.pop(label, None)


async def main():
    if (os.environ.get("QB_PROTOCOL") or "h3") != "h3":
        sys.exit(f"aioquic-server: QB_PROTOCOL={os.environ['QB_PROTOCOL']} is not h3")
    Server.www = os.path.realpath(env("QB_WWW"))
    cfg = configuration()
    store = TicketStore()
    server = await serve(
        env("QB_LISTEN_ADDR"),
        int(env("QB_PORT")),
        configuration=cfg,
        create_protocol=Server,
        session_ticket_fetcher=store.pop,
        session_ticket_handler=store.add,
    )
    print(f"aioquic-server: listening on {os.environ['QB_LISTEN_ADDR']}:{os.environ['QB_PORT']} (udp), www {Server.www}", file=sys.stderr, flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    server.close()


if __name__ == "__main__":
    asyncio.run(main())
