#!/usr/bin/env python3
"""HTTP/3 client on aioquic for the endpoint contract (docs/endpoints.md).

Fetches every URL of QB_REQUESTS over one QUIC connection to
QB_SERVER_ADDR:QB_SERVER_PORT, at most QB_PARALLEL requests in flight, saves
each body as QB_DOWNLOADS/<last path segment>, and writes one QB_TIMINGS line
per request (times measured in this process with time.monotonic_ns):

  connect_ms, tls_ms  handshake complete (QUIC has no separate transport
                      connect); only on the requests started with the
                      connection, whose times count from the connection
                      attempt; later requests count from their own start
  ttfb_ms             response headers received
  total_ms            last body byte received (stream end)

QB_RESUME=1: resume with the pickled session ticket in QB_SESSION_FILE when
there is one, and store the newest ticket there. QB_EARLY_DATA=1: also send
the requests as 0-RTT (before the handshake completes) when the ticket allows
it. QB_CC: cubic or newreno (aioquic's "reno"). QB_KEYLOG, QB_QLOG_DIR honoured.
Exit 0 only when every request got status 200 and its body was saved.
"""

import asyncio
import json
import os
import pickle
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from qb_contract import Contract  # noqa: E402
import time
from urllib.parse import urlsplit

from aioquic.asyncio import connect
from aioquic.asyncio.protocol import QuicConnectionProtocol
from aioquic.h3.connection import H3_ALPN, H3Connection
from aioquic.h3.events import DataReceived, HeadersReceived
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.events import HandshakeCompleted
from aioquic.quic.logger import QuicFileLogger

CC = {"cubic": "cubic", "newreno": "reno"}
# A bound on the whole run (a server that never answers must not hang us).
TIMEOUT_S = float(os.environ.get("QB_CLIENT_TIMEOUT_S", "300"))


_C = Contract("aioquic-client")
die, env = _C.die, _C.env


def now():
    return time.monotonic_ns()


class Request:
    def __init__(self, index, url):
        self.index = index
        self.url = url
        parts = urlsplit(url)
        self.authority = parts.netloc
        self.path = parts.path or "/"
        self.name = self.path.rstrip("/").rsplit("/", 1)[-1]
        self.start_ns = None
        self.with_connection = False
        self.headers_ns = None
        self.end_ns = None
        self.status = None
        self.bytes = 0
        self.file = None
        self.done = None


class Client(QuicConnectionProtocol):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.h3 = H3Connection(self._quic)
        self.streams = {}
        self.handshake_ns = None
        self.resumed = None
        self.early_data = None

    def quic_event_received(self, event):
        if isinstance(event, HandshakeCompleted):
            self.handshake_ns = now()
            self.resumed = event.session_resumed
            self.early_data = event.early_data_accepted
        for ev in self.h3.handle_event(event):
            req = self.streams.get(getattr(ev, "stream_id", None))
            if req is None:
                continue
            if isinstance(ev, HeadersReceived) and req.status is None:
                req.headers_ns = now()
                req.status = int(dict(ev.headers).get(b":status", b"0"))
            elif isinstance(ev, DataReceived):
                req.file.write(ev.data)
                req.bytes += len(ev.data)
            if getattr(ev, "stream_ended", False) and not req.done.done():
                req.end_ns = now()
                req.file.close()
                req.done.set_result(None)

    async def fetch(self, req, downloads):
        if req.start_ns is None:
            req.start_ns = now()
        req.file = open(os.path.join(downloads, req.name), "wb")
        req.done = asyncio.get_running_loop().create_future()
        sid = self._quic.get_next_available_stream_id()
        self.streams[sid] = req
        self.h3.send_headers(
            sid,
            [
                (b":method", b"GET"),
                (b":scheme", b"https"),
                (b":authority", req.authority.encode()),
                (b":path", req.path.encode()),
                (b"user-agent", b"aioquic"),
            ],
            end_stream=True,
        )
        self.transmit()
        await req.done


async def main():
    if (os.environ.get("QB_PROTOCOL") or "h3") != "h3":
        die(f"QB_PROTOCOL={os.environ['QB_PROTOCOL']} is not h3")
    addr, port = env("QB_SERVER_ADDR"), int(env("QB_SERVER_PORT"))
    downloads = env("QB_DOWNLOADS")
    os.makedirs(downloads, exist_ok=True)
    urls = env("QB_REQUESTS").split()
    parallel = int(os.environ.get("QB_PARALLEL") or "1")
    if parallel < 1:
        die(f"QB_PARALLEL={parallel} must be at least 1")
    cc = os.environ.get("QB_CC") or "cubic"
    if cc not in CC:
        die(f"congestion controller QB_CC={cc} is not available here (can run: {' '.join(CC)})")
    resume = os.environ.get("QB_RESUME") == "1"
    early = os.environ.get("QB_EARLY_DATA") == "1"
    session_file = env("QB_SESSION_FILE") if (resume or early) else None

    cfg = QuicConfiguration(is_client=True, alpn_protocols=H3_ALPN, congestion_control_algorithm=CC[cc])
    cfg.load_verify_locations(env("QB_CA"))
    cfg.server_name = env("QB_SERVER_NAME")
    if os.environ.get("QB_KEYLOG"):
        cfg.secrets_log_file = open(os.environ["QB_KEYLOG"], "a", buffering=1)
    if os.environ.get("QB_QLOG_DIR"):
        os.makedirs(os.environ["QB_QLOG_DIR"], exist_ok=True)
        cfg.quic_logger = QuicFileLogger(os.environ["QB_QLOG_DIR"])
    if session_file and os.path.exists(session_file):
        try:
            with open(session_file, "rb") as f:
                ticket = pickle.load(f)
        except Exception as e:  # a stale or foreign file: start afresh
            print(f"aioquic-client: ignoring {session_file}: {e}", file=sys.stderr)
            ticket = None
        if ticket is not None:
            if not early:
                # Resume without offering 0-RTT at all.
                ticket.max_early_data_size = None
            cfg.session_ticket = ticket
    tickets = []

    requests = [Request(i, u) for i, u in enumerate(urls)]
    conn_start = now()
    for req in requests[:parallel]:
        req.start_ns = conn_start
        req.with_connection = True
    # With 0-RTT the requests go out before the handshake completes.
    send_early = early and cfg.session_ticket is not None
    async with asyncio.timeout(TIMEOUT_S), connect(
        addr,
        port,
        configuration=cfg,
        create_protocol=Client,
        session_ticket_handler=tickets.append if session_file else None,
        wait_connected=not send_early,
    ) as client:
        queue = list(requests)

        async def worker():
            while queue:
                await client.fetch(queue.pop(0), downloads)

        await asyncio.gather(*(worker() for _ in range(min(parallel, len(requests)))))
        if session_file and not tickets:
            # The ticket may trail the last response: wait a little for it.
            for _ in range(50):
                await asyncio.sleep(0.02)
                if tickets:
                    break
        handshake_ns, resumed, early_data = client.handshake_ns, client.resumed, client.early_data

    if session_file and tickets:
        tmp = session_file + ".tmp"
        with open(tmp, "wb") as f:
            pickle.dump(tickets[-1], f)
        os.replace(tmp, session_file)

    def ms(t, t0):
        return None if t is None else round((t - t0) / 1e6, 3)

    lines = []
    for req in requests:
        rec = {"index": req.index, "status": req.status}
        t0 = req.start_ns
        if req.with_connection and handshake_ns is not None:
            rec["connect_ms"] = rec["tls_ms"] = ms(handshake_ns, conn_start)
        rec["ttfb_ms"] = ms(req.headers_ns, t0)
        rec["total_ms"] = ms(req.end_ns, t0)
        rec["bytes"] = req.bytes
        if req.with_connection:
            rec["resumed"] = bool(resumed)
            rec["early_data"] = bool(early_data and send_early)
        lines.append(json.dumps(rec))
    if os.environ.get("QB_TIMINGS"):
        with open(os.environ["QB_TIMINGS"], "a") as f:
            f.write("".join(line + "\n" for line in lines))
    print(f"aioquic-client: resumed={resumed} early_data={bool(early_data and send_early)}", file=sys.stderr)
    bad = [r for r in requests if r.status != 200]
    for r in bad:
        print(f"aioquic-client: {r.url}: status {r.status}", file=sys.stderr)
    return 1 if bad else 0


if __name__ == "__main__":
    try:
        sys.exit(asyncio.run(main()))
    except TimeoutError:
        die(f"no complete answer within {TIMEOUT_S} s (QB_CLIENT_TIMEOUT_S)")
    except (ConnectionError, OSError) as e:
        die(f"{type(e).__name__}: {e}")
