"""Readers of the live channel for the end-to-end tests: a small
Server-Sent Events reader on http.client, and a minimal WebSocket client on
an ssl socket (Debian 12 has no python3-websockets in the base system).
Python 3.11 standard library only."""

import base64
import hashlib
import http.client
import os
import queue
import socket
import ssl
import struct
import threading
import time

# Heard "within 1 s of the commit" (SPEC §8); the tests allow 2 s.
HEAR_S = 2.0


class SseReader:
    """One EventSource-style subscriber: GET path over its own TLS
    connection; a thread parses the stream into events on a queue. A None
    on the queue means the server closed the stream."""

    def __init__(self, stack, path, headers=None, http_version=None):
        ctx = ssl.create_default_context(cafile=stack.path("tls", "cert.pem"))
        self.conn = http.client.HTTPSConnection("127.0.0.1", stack.https_port, timeout=30,
                                                context=ctx)
        hdrs = {"Accept": "text/event-stream"}
        hdrs.update(headers or {})
        self.conn.request("GET", path, headers=hdrs)
        self.resp = self.conn.getresponse()
        self.status = self.resp.status
        self.headers = self.resp.headers
        self.events = queue.Queue()
        self.closed = threading.Event()
        if self.status == 200:
            self.thread = threading.Thread(target=self._read, daemon=True)
            self.thread.start()
        else:
            self.body = self.resp.read()
            self.conn.close()

    body = b""

    def _read(self):
        event = {}
        try:
            while True:
                line = self.resp.readline()
                if not line:
                    break
                line = line.decode().rstrip("\r\n")
                if line == "":
                    if "data" in event:
                        self.events.put(event)
                    event = {}
                elif line.startswith(":"):
                    continue  # a comment: the keep-alive ping
                else:
                    name, _, value = line.partition(":")
                    event[name] = value[1:] if value.startswith(" ") else value
        except (OSError, ValueError, http.client.HTTPException):
            pass
        self.closed.set()
        self.events.put(None)

    def next(self, timeout=HEAR_S):
        """The next event ({"event","id","data"}), None when the stream
        closed, or raises queue.Empty."""
        return self.events.get(timeout=timeout)

    def wait_type(self, event_type, timeout=HEAR_S):
        """The first event of this type within timeout (others skipped),
        or None."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            try:
                ev = self.next(left)
            except queue.Empty:
                return None
            if ev is None:
                return None
            if ev.get("event") == event_type:
                return ev

    def drain(self, wait=0.5):
        """Every event heard within wait seconds."""
        out = []
        deadline = time.monotonic() + wait
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return out
            try:
                ev = self.next(left)
            except queue.Empty:
                return out
            if ev is None:
                return out
            out.append(ev)

    def close(self):
        try:
            if self.conn.sock is not None:
                self.conn.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.conn.close()


class WsClient:
    """A minimal WebSocket client (RFC 6455) over HTTP/1.1 and TLS."""

    def __init__(self, stack, path, headers=None):
        ctx = ssl.create_default_context(cafile=stack.path("tls", "cert.pem"))
        ctx.set_alpn_protocols(["http/1.1"])
        raw = socket.create_connection(("127.0.0.1", stack.https_port), timeout=10)
        self.sock = ctx.wrap_socket(raw, server_hostname="127.0.0.1")
        key = base64.b64encode(os.urandom(16)).decode()
        lines = [f"GET {path} HTTP/1.1", f"Host: 127.0.0.1:{stack.https_port}",
                 "Upgrade: websocket", "Connection: Upgrade", f"Sec-WebSocket-Key: {key}",
                 "Sec-WebSocket-Version: 13"]
        lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        self.buf = b""
        while b"\r\n\r\n" not in self.buf:
            chunk = self.sock.recv(4096)
            if not chunk:
                break
            self.buf += chunk
        head, _, self.buf = self.buf.partition(b"\r\n\r\n")
        self.status = int(head.split(b" ", 2)[1])
        self.accept = None
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.decode().partition(":")
            if name.strip().lower() == "sec-websocket-accept":
                self.accept = value.strip()
        expected = base64.b64encode(hashlib.sha1(
            (key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").encode()).digest()).decode()
        self.accept_ok = self.accept == expected

    def _need(self, n):
        while len(self.buf) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed")
            self.buf += chunk
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def recv_text(self, timeout=HEAR_S):
        """The next text frame's payload (pings answered, skipped), or None
        on a close frame, a closed socket or timeout."""
        self.sock.settimeout(timeout)
        try:
            while True:
                b0, b1 = self._need(2)
                opcode, n = b0 & 0x0F, b1 & 0x7F
                if n == 126:
                    n = struct.unpack("!H", self._need(2))[0]
                elif n == 127:
                    n = struct.unpack("!Q", self._need(8))[0]
                payload = self._need(n)
                if opcode == 0x1:
                    return payload.decode()
                if opcode == 0x8:
                    return None
                if opcode == 0x9:
                    self.send(payload, opcode=0xA)
        except (socket.timeout, ConnectionError, ssl.SSLError, OSError):
            return None

    def send(self, payload, opcode=0x1):
        if isinstance(payload, str):
            payload = payload.encode()
        mask = os.urandom(4)
        n = len(payload)
        head = bytes([0x80 | opcode])
        if n < 126:
            head += bytes([0x80 | n])
        else:
            head += bytes([0x80 | 126]) + struct.pack("!H", n)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self.sock.sendall(head + mask + masked)

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass
