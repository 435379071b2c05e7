#!/usr/bin/env python3
"""An independent WebSocket-over-HTTP/2 client (RFC 8441) against a yamabiko server.

HTTP/2 comes from the Python `h2` package; WebSocket frames from `wsproto`'s frame
layer (FrameProtocol, without wsproto's own HTTP/1.1 handshake). Neither is ours, so
this checks yamabiko's server against someone else's reading of the RFCs.

    h2_client.py HOST PORT [--tls CA_PEM] [--server-name NAME]

Checks, on ONE HTTP/2 connection: the server's SETTINGS enable extended CONNECT;
several WebSockets as streams side by side (text, a 300 KB binary message, ping/pong);
permessage-deflate negotiated and used (RSV1 on the server's frames); a wrong
:protocol gets 400 and a missing sec-websocket-version 426 on their own streams while
the others go on; a RST_STREAM(CANCEL) ends one stream and not the others; the close
handshake ends with the server's close frame and then END_STREAM (not RST_STREAM).
Exits 0 when every check passed. Every wait is bounded.
"""

import argparse
import socket
import ssl
import sys
import time

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions
import h2.settings
from wsproto.extensions import PerMessageDeflate
from wsproto.frame_protocol import CloseReason, FrameProtocol, Opcode

TIMEOUT = 10.0


class Failed(Exception):
    pass


def check(cond, what):
    if not cond:
        raise Failed(what)
    print(f"ok: {what}")


class Connection:
    """One HTTP/2 connection, pumped by hand."""

    def __init__(self, host, port, ca=None, server_name="localhost"):
        sock = socket.create_connection((host, port), timeout=TIMEOUT)
        self.scheme = "http"
        if ca:
            ctx = ssl.create_default_context(cafile=ca)
            ctx.set_alpn_protocols(["h2"])
            sock = ctx.wrap_socket(sock, server_hostname=server_name)
            check(sock.selected_alpn_protocol() == "h2", "ALPN selected h2")
            self.scheme = "https"
        self.sock = sock
        self.authority = f"{server_name}:{port}"
        self.h2 = h2.connection.H2Connection(
            h2.config.H2Configuration(client_side=True, header_encoding="utf-8")
        )
        self.h2.initiate_connection()
        self.flush()
        self.streams = {}
        self.enable_connect = None
        self.wait(lambda: self.enable_connect is not None, "the server's SETTINGS")

    def flush(self):
        data = self.h2.data_to_send()
        if data:
            self.sock.sendall(data)

    def pump(self):
        data = self.sock.recv(65536)
        if not data:
            raise Failed("the server closed the connection")
        for ev in self.h2.receive_data(data):
            if isinstance(ev, h2.events.RemoteSettingsChanged):
                cc = ev.changed_settings.get(h2.settings.SettingCodes.ENABLE_CONNECT_PROTOCOL)
                if self.enable_connect is None:
                    self.enable_connect = bool(cc and cc.new_value == 1)
            elif isinstance(ev, h2.events.ResponseReceived):
                self.streams[ev.stream_id].on_response(dict(ev.headers))
            elif isinstance(ev, h2.events.DataReceived):
                self.h2.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
                self.streams[ev.stream_id].on_data(ev.data)
            elif isinstance(ev, h2.events.StreamEnded):
                self.streams[ev.stream_id].ended = True
            elif isinstance(ev, h2.events.StreamReset):
                self.streams[ev.stream_id].reset = ev.error_code
            elif isinstance(ev, h2.events.ConnectionTerminated):
                raise Failed(f"the server ended the connection: {ev.error_code}")
        self.flush()

    def wait(self, cond, what):
        deadline = time.monotonic() + TIMEOUT
        while not cond():
            if time.monotonic() > deadline:
                raise Failed(f"timed out waiting for {what}")
            self.pump()

    def open(self, path="/", protocol="websocket", version="13", extensions=None):
        sid = self.h2.get_next_available_stream_id()
        headers = [
            (":method", "CONNECT"),
            (":scheme", self.scheme),
            (":authority", self.authority),
            (":path", path),
        ]
        if protocol is not None:
            headers.insert(1, (":protocol", protocol))
        if version is not None:
            headers.append(("sec-websocket-version", version))
        pmd = None
        if extensions:
            pmd = PerMessageDeflate()
            # As wsproto's own handshake writes it: the name, then the parameters.
            headers.append(("sec-websocket-extensions", f"{pmd.name}; {pmd.offer()}"))
        ws = WebSocket(self, sid, pmd)
        self.streams[sid] = ws
        self.h2.send_headers(sid, headers, end_stream=False)
        self.flush()
        self.wait(lambda: ws.status is not None or ws.reset is not None, "a response")
        return ws


class WebSocket:
    """A WebSocket on one stream, framed by wsproto."""

    def __init__(self, conn, sid, pmd):
        self.conn, self.sid, self.pmd = conn, sid, pmd
        self.status = None
        self.headers = {}
        self.frames = None
        self.raw_first_bytes = []
        self.ended = False
        self.reset = None
        self.messages = []
        self.controls = []
        self.partial = None
        self.body = b""

    def on_response(self, headers):
        self.headers = headers
        self.status = int(headers[":status"])
        exts = []
        if self.pmd and "sec-websocket-extensions" in headers:
            self.pmd.finalize(headers["sec-websocket-extensions"])
            exts = [self.pmd]
        self.frames = FrameProtocol(client=True, extensions=exts)

    def on_data(self, data):
        if not 200 <= (self.status or 0) < 300:
            self.body += data  # a refusal's body, not WebSocket frames
            return
        self.raw_first_bytes.append(data[:1])
        self.frames.receive_bytes(data)
        for frame in self.frames.received_frames():
            if frame.opcode in (Opcode.PING, Opcode.PONG, Opcode.CLOSE):
                self.controls.append((frame.opcode, frame.payload))
                continue
            # wsproto hands a large frame over in pieces, each with the frame's
            # opcode; a message starts only when none is in progress.
            if self.partial is None:
                self.partial = (frame.opcode, [])
            self.partial[1].append(frame.payload)
            if frame.message_finished:
                kind, parts = self.partial
                joined = "".join(parts) if kind == Opcode.TEXT else b"".join(parts)
                self.messages.append(joined)
                self.partial = None

    def send(self, payload):
        self.send_bytes(self.frames.send_data(payload))

    def send_bytes(self, data):
        """Sends as the windows allow (h2 leaves flow control to its user)."""
        data = bytes(data)
        h2c = self.conn.h2
        deadline = time.monotonic() + TIMEOUT
        while data:
            room = min(h2c.local_flow_control_window(self.sid), h2c.max_outbound_frame_size)
            if room == 0:
                if time.monotonic() > deadline:
                    raise Failed(f"no send window on stream {self.sid}")
                self.conn.pump()
                continue
            h2c.send_data(self.sid, data[:room])
            data = data[room:]
            self.conn.flush()

    def recv(self):
        self.conn.wait(lambda: self.messages, f"a message on stream {self.sid}")
        return self.messages.pop(0)

    def recv_control(self):
        self.conn.wait(lambda: self.controls, f"a control frame on stream {self.sid}")
        return self.controls.pop(0)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("host")
    ap.add_argument("port", type=int)
    ap.add_argument("--tls", metavar="CA_PEM")
    ap.add_argument("--server-name", default="localhost")
    args = ap.parse_args()

    c = Connection(args.host, args.port, args.tls, args.server_name)
    check(c.enable_connect, "SETTINGS_ENABLE_CONNECT_PROTOCOL = 1")

    a = c.open()
    check(a.status == 200, "extended CONNECT answered 200")
    check("sec-websocket-accept" not in a.headers, "no Sec-WebSocket-Accept over HTTP/2")
    b = c.open()
    z = c.open(extensions=True)
    check(
        z.headers.get("sec-websocket-extensions", "").startswith("permessage-deflate"),
        "permessage-deflate negotiated",
    )

    a.send("hello over h2")
    b.send(b"\x00\x01" * 150_000)
    check(a.recv() == "hello over h2", "text echoed")
    check(b.recv() == b"\x00\x01" * 150_000, "300 KB binary echoed")
    a.send_bytes(a.frames.ping(b"are you there"))
    check(a.recv_control() == (Opcode.PONG, b"are you there"), "ping answered with pong")

    text = "compressible " * 2000
    z.raw_first_bytes.clear()
    z.send(text)
    check(z.recv() == text, "compressed text echoed")
    check(z.raw_first_bytes and z.raw_first_bytes[0][0] & 0x40, "the echo came compressed (RSV1)")

    bad = c.open(protocol="not-websocket")
    check(bad.status == 400, "wrong :protocol refused with 400 on its stream")
    nov = c.open(version=None)
    check(nov.status == 426, "missing sec-websocket-version refused with 426")
    check(nov.headers.get("sec-websocket-version") == "13", "426 names version 13")

    c.h2.reset_stream(b.sid, h2.errors.ErrorCodes.CANCEL)
    c.flush()
    a.send("after a reset elsewhere")
    check(a.recv() == "after a reset elsewhere", "other streams go on after RST_STREAM and refusals")

    a.send_bytes(a.frames.close(1000, "bye"))
    opcode, payload = a.recv_control()
    # The default close handler answers with the same code (gorilla's).
    check(opcode == Opcode.CLOSE and payload[0] == 1000, "close answered with 1000")
    c.wait(lambda: a.ended or a.reset is not None, "the end of the stream")
    check(a.ended, "the server ended the stream with END_STREAM")
    try:
        c.h2.end_stream(a.sid)
        c.flush()
    except h2.exceptions.StreamClosedError:
        pass  # the server may already have cancelled its half of the stream

    z.send("still here")
    check(z.recv() == "still here", "the last stream still echoes")
    z.send_bytes(z.frames.close(1000))
    opcode, _ = z.recv_control()
    check(opcode == Opcode.CLOSE, "second close handshake")
    c.h2.close_connection()
    c.flush()
    c.sock.close()
    print("h2 client: all checks passed")


if __name__ == "__main__":
    try:
        main()
    except Failed as e:
        print(f"FAILED: {e}", file=sys.stderr)
        sys.exit(1)
