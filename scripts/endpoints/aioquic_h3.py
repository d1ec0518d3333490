"""The HTTP/3 request loop both aioquic servers share (the endpoint's
static file server, scripts/endpoints/aioquic_server.py, and the interop
tests' pattern server, scripts/interop/aioquic_h3_server.py): a subclass
says what a GET answers with `answer(path)`; anything but GET is 405."""

import sys

from aioquic.asyncio.protocol import QuicConnectionProtocol
from aioquic.h3.connection import H3Connection
from aioquic.h3.events import HeadersReceived
from aioquic.quic.events import HandshakeCompleted, ProtocolNegotiated


class H3Responder(QuicConnectionProtocol):
    # The `server` response header.
    name = b"aioquic"
    # Log each handshake (ALPN, resumed, 0-RTT) on stderr.
    log_handshakes = False

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.h3 = None

    def answer(self, path):
        """(status, body, content type) of `GET path` (query removed)."""
        raise NotImplementedError

    def quic_event_received(self, event):
        if isinstance(event, ProtocolNegotiated):
            self.h3 = H3Connection(self._quic)
        elif isinstance(event, HandshakeCompleted) and self.log_handshakes:
            print(
                f"handshake alpn={event.alpn_protocol} resumed={event.session_resumed}"
                f" early_data={event.early_data_accepted}",
                file=sys.stderr,
                flush=True,
            )
        if self.h3 is None:
            return
        for ev in self.h3.handle_event(event):
            if isinstance(ev, HeadersReceived):
                self.respond(ev.stream_id, dict(ev.headers))

    def respond(self, sid, headers):
        method = headers.get(b":method", b"")
        path = headers.get(b":path", b"/").decode(errors="replace").split("?")[0]
        if method != b"GET":
            status, body, ctype = 405, b"405 method not allowed\n", b"text/plain"
        else:
            status, body, ctype = self.answer(path)
        self.h3.send_headers(
            sid,
            [
                (b":status", str(status).encode()),
                (b"content-type", ctype),
                (b"content-length", str(len(body)).encode()),
                (b"server", self.name),
            ],
        )
        self.h3.send_data(sid, body, end_stream=True)
        self.transmit()
