"""Helpers for the end-to-end tests of the jobs worker, mail and outbound
webhooks: SQL through psql, loopback stand-ins for a webhook receiver and an
SMTP server, extra stoa-jobs processes beside a stack's own, FastCGI requests
straight to a pool, and an independent Standard Webhooks verifier.

Python 3.11 standard library only; the SMTP stand-in runs aiosmtpd (Debian's
python3-aiosmtpd) in a child interpreter that has it.
"""

import base64
import email.message
import hashlib
import hmac
import http.server
import importlib.util
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time

import harness
from harness import BIN_DIR, START_TIMEOUT, Response, pid_alive, read_pid_file, wait_until

# What stack.sh keeps to itself (the programs would read them as config).
STACK_ONLY_VARS = ("STOA_RUN_DIR", "STOA_BIN_DIR", "STOA_HTTPS_PORT", "STOA_HTTP_PORT",
                   "STOA_RATE_API", "STOA_BURST_API", "STOA_RATE_AUTH", "STOA_BURST_AUTH")


# --- Postgres ------------------------------------------------------------

class Db(harness.Db):
    """The stack's Postgres, with the outbox and webhook tables at hand."""

    def job(self, job_id):
        """The outbox row with a few derived columns (seconds relative to now)."""
        return self.row(
            "SELECT id, kind, payload, dedupe_key, attempts, max_attempts, last_error, locked_by,"
            " extract(epoch FROM locked_until - now())::float8 AS lease_left_s,"
            " extract(epoch FROM run_at - now())::float8 AS run_in_s,"
            " done_at IS NOT NULL AS done, dead_at IS NOT NULL AS dead,"
            " extract(epoch FROM created_at)::bigint AS created_epoch"
            " FROM jobs.outbox WHERE id = :'id'", id=job_id)

    def wait_job(self, job_id, predicate, timeout):
        """Polls the job until predicate(row) holds; returns the last row."""
        last = {}

        def check():
            last["row"] = self.job(job_id)
            return last["row"] is not None and predicate(last["row"])

        wait_until(check, timeout, interval=0.1)
        return last["row"]

    def insert_job(self, kind, payload, max_attempts=None, dedupe_key=None):
        row = self.row(
            "INSERT INTO jobs.outbox (kind, payload, max_attempts, dedupe_key)"
            " VALUES (:'kind', :'payload'::jsonb, coalesce(nullif(:'max', '')::int, 25),"
            " nullif(:'dedupe', '')) RETURNING id",
            kind=kind, payload=json.dumps(payload), max=str(max_attempts or ""),
            dedupe=dedupe_key or "")
        return row["id"]

    def insert_endpoint(self, url, events, secret=None):
        """An admin.webhook_endpoints row as the admin API would write it;
        returns (id, secret)."""
        secret = secret or new_webhook_secret()
        row = self.row(
            "INSERT INTO admin.webhook_endpoints (url, events, secret)"
            " VALUES (:'url', :'events'::text[], :'secret') RETURNING id",
            url=url, events="{" + ",".join(events) + "}", secret=secret)
        return row["id"], secret

    def retire_endpoint(self, endpoint_id):
        self.exec("UPDATE admin.webhook_endpoints SET deleted_at = now()"
                  " WHERE id = :'id' AND deleted_at IS NULL", id=endpoint_id)

    def deliveries(self, event_id):
        return self.rows("SELECT endpoint_id, event_id, event_type, attempt, status, latency_ms,"
                         " error FROM admin.webhook_deliveries WHERE event_id = :'ev'"
                         " ORDER BY id", ev=event_id)


# --- Standard Webhooks -----------------------------------------------------

def new_webhook_secret():
    return "whsec_" + base64.b64encode(os.urandom(24)).decode()


def webhook_signature_valid(secret, msg_id, timestamp, body, header):
    """Standard Webhooks verification, written from the spec: the key is the
    base64 behind "whsec_", the MAC is HMAC-SHA256 over id.timestamp.body,
    and the header holds space-separated "v1,<base64>" entries."""
    if not secret.startswith("whsec_"):
        return False
    key = base64.b64decode(secret[len("whsec_"):])
    signed = msg_id.encode() + b"." + timestamp.encode() + b"." + body
    expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    for entry in header.split(" "):
        version, _, sig = entry.partition(",")
        if version == "v1" and hmac.compare_digest(sig, expected):
            return True
    return False


# --- receivers and endpoints a test cleans up after ------------------------

class ReceiverMixin:
    """For a StackTestCase with a `db` (Db): webhook receivers and
    endpoints that go away when the test ends."""

    def receiver(self, **kwargs):
        r = Receiver(**kwargs)
        self.addCleanup(r.close)
        return r

    def endpoint(self, url, events):
        endpoint_id, _ = self.db.insert_endpoint(url, events)
        self.addCleanup(self.db.retire_endpoint, endpoint_id)
        return endpoint_id


# --- a webhook receiver ----------------------------------------------------

class Receiver:
    """An HTTP server on a loopback address that records every request and
    answers request i with statuses[i] (the last one repeats), after
    `delay` seconds."""

    def __init__(self, host="127.0.0.1", statuses=(200,), delay=0.0):
        self.host = host
        self.statuses = list(statuses)
        self.delay = delay
        self.requests = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                with receiver.lock:
                    index = len(receiver.requests)
                    receiver.requests.append({
                        "path": self.path, "headers": {k.lower(): v for k, v in self.headers.items()},
                        "body": body, "at": time.monotonic()})
                    status = receiver.statuses[min(index, len(receiver.statuses) - 1)]
                if receiver.delay:
                    time.sleep(receiver.delay)
                self.send_response(status)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            do_GET = do_POST

            def log_message(self, *args):
                pass

        class Server(http.server.ThreadingHTTPServer):
            address_family = socket.AF_INET6 if ":" in host else socket.AF_INET
            daemon_threads = True
            block_on_close = False

            def handle_error(self, request, client_address):
                pass  # a client that went away mid-answer (a killed worker)

        self.server = Server((host, 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self):
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/hook"

    def count(self):
        with self.lock:
            return len(self.requests)

    def wait_for(self, n, timeout):
        got, _ = wait_until(lambda: self.count() >= n, timeout, interval=0.05)
        return got

    def close(self):
        self.server.shutdown()
        self.server.server_close()


# --- an SMTP server --------------------------------------------------------

_SMTP_SINK = r"""
import json, os, sys
from aiosmtpd.controller import Controller

port, outdir = int(sys.argv[1]), sys.argv[2]

class Handler:
    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address.startswith("bounce"):
            return "550 5.1.1 no such mailbox"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        n = len([f for f in os.listdir(outdir) if f.endswith(".json")])
        doc = {"mail_from": envelope.mail_from, "rcpt_tos": envelope.rcpt_tos,
               "data": envelope.original_content.decode("latin-1")}
        tmp = os.path.join(outdir, f".{n}.tmp")
        with open(tmp, "w") as f:
            json.dump(doc, f)
        os.rename(tmp, os.path.join(outdir, f"{n:04d}.json"))
        return "250 OK queued"

sys.stdin.readline()  # "listen": bind only when told, the port is down until then
controller = Controller(Handler(), hostname="127.0.0.1", port=port)
controller.start()
print("listening", flush=True)
sys.stdin.readline()  # anything or EOF: stop
controller.stop()
"""


def _python_with_aiosmtpd():
    if importlib.util.find_spec("aiosmtpd") is not None:
        return sys.executable
    for candidate in ("/usr/bin/python3",):
        if os.path.exists(candidate) and subprocess.run(
                [candidate, "-c", "import aiosmtpd"], capture_output=True).returncode == 0:
            return candidate
    raise RuntimeError("aiosmtpd is not installed (Debian: python3-aiosmtpd)")


class SmtpSink:
    """A real SMTP server (aiosmtpd) on 127.0.0.1:port in a child process,
    down until listen() is called. Every message it accepts is stored with
    its envelope; recipients starting with "bounce" get a 550."""

    def __init__(self, port):
        self.port = port
        self.dir = tempfile.mkdtemp(prefix="stoa-smtp-")
        self.proc = subprocess.Popen([_python_with_aiosmtpd(), "-c", _SMTP_SINK, str(port), self.dir],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL, text=True)

    def listen(self):
        self.proc.stdin.write("listen\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if line.strip() != "listening":
            raise RuntimeError(f"the SMTP sink did not start: {line!r}")

    def messages(self):
        out = []
        for name in sorted(os.listdir(self.dir)):
            if name.endswith(".json"):
                with open(os.path.join(self.dir, name)) as f:
                    out.append(json.load(f))
        return out

    def close(self):
        if self.proc.poll() is None:
            try:
                self.proc.stdin.close()
                self.proc.wait(timeout=10)
            except (subprocess.TimeoutExpired, BrokenPipeError):
                self.proc.kill()
                self.proc.wait()
        for stream in (self.proc.stdin, self.proc.stdout):
            try:
                stream.close()
            except BrokenPipeError:
                pass
        shutil.rmtree(self.dir, ignore_errors=True)


# --- jobs worker processes -------------------------------------------------

def log_lines(stack, program="stoa-jobs"):
    """The JSON lines of a program's log (unparsable lines are skipped)."""
    out = []
    try:
        with open(stack.path("log", f"{program}.log"), "rb") as f:
            for raw in f:
                try:
                    out.append(json.loads(raw))
                except ValueError:
                    pass
    except FileNotFoundError:
        pass
    return out


def wait_listening(stack, pid, timeout=10.0):
    """True once worker `pid` logged that it listens for new jobs."""
    def seen():
        return any(line.get("pid") == pid and line.get("msg", "").startswith("listening on")
                   for line in log_lines(stack))
    return wait_until(seen, timeout, interval=0.05)[0]


class Worker:
    """A stoa-jobs process of our own beside (or instead of) the stack's,
    like a second host's worker. env: config overrides (STOA_<KEY>).

    Its --config path names the run dir with a "/./" in it: the same file,
    but not the exact command line stack.sh looks for when it reaps workers
    it does not supervise, so a `stack.sh start` leaves this one alone (and
    the harness still finds it by the run dir if a test leaks it)."""

    def __init__(self, stack, env=None):
        self.stack = stack
        full_env = program_env(stack, env)
        self.stderr = open(stack.path("log", "stoa-jobs-extra.stderr"), "ab")
        self.proc = subprocess.Popen(
            [os.path.join(BIN_DIR, "stoa-jobs"), "--config", stack.run + "/./stoa.conf"],
            env=full_env, stdin=subprocess.DEVNULL, stdout=self.stderr, stderr=self.stderr,
            start_new_session=True)
        self.pid = self.proc.pid
        if not wait_listening(stack, self.pid):
            self.kill()
            raise AssertionError(f"stoa-jobs {self.pid} did not start listening "
                                 f"(exit {self.proc.poll()})")

    def stop(self, timeout=15.0):
        """SIGTERM; returns the exit status (None if it had to be killed)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.kill()
                return None
        self.stderr.close()
        return self.proc.returncode

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.stderr.close()


def program_env(stack, overrides=None):
    """The environment stack.sh gives the programs, plus config overrides."""
    env = {k: v for k, v in stack.env().items() if k not in STACK_ONLY_VARS}
    env.update(overrides or {})
    return env


class PoolProcess:
    """One process of a pool program on a socket of our own, started the way
    spawn-fcgi does (the listening socket as fd 0). nginx keeps idle
    FastCGI connections to the stack's pool processes, and libfcgi serves
    one connection at a time, so a request of ours on the stack's socket
    could wait for nginx to let go; this process serves only us."""

    def __init__(self, stack, pool):
        self.sock_path = stack.path("sock", f"direct-{pool}.sock")
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(self.sock_path)
        listener.listen(16)
        self.stderr = open(stack.path("log", f"direct-{pool}.stderr"), "ab")
        try:
            self.proc = subprocess.Popen(
                [os.path.join(BIN_DIR, f"stoa-{pool}"), "--config", stack.conf_path()],
                stdin=listener.fileno(), stdout=self.stderr, stderr=self.stderr,
                env=program_env(stack), start_new_session=True)
        finally:
            listener.close()

    def stop(self, timeout=10.0):
        """SIGTERM; returns the exit status (None if it had to be killed)."""
        rc = None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                rc = self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        else:
            rc = self.proc.returncode
        self.stderr.close()
        try:
            os.unlink(self.sock_path)
        except FileNotFoundError:
            pass
        return rc


def stack_worker_pid(stack):
    return read_pid_file(stack.path("pids", "jobs.pid"))


def stop_stack_worker(stack, sig=signal.SIGTERM, timeout=15.0):
    """Signals the stack's own worker and waits for it to be gone; returns
    its pid."""
    pid = stack_worker_pid(stack)
    if pid is None or not pid_alive(pid):
        return pid
    os.kill(pid, sig)
    gone, _ = wait_until(lambda: not pid_alive(pid), timeout, interval=0.05)
    if not gone:
        raise AssertionError(f"the stack's stoa-jobs ({pid}) outlived {sig!r} by {timeout}s")
    return pid


def restart_stack_worker(stack):
    """stack.sh start (idempotent) brings a missing worker back; returns the
    new worker's pid once it listens."""
    rc, out = stack._stack_sh("start", START_TIMEOUT)
    if rc != 0:
        raise AssertionError(f"stack.sh start exited {rc}:\n{out}")
    pid = stack_worker_pid(stack)
    if pid is None or not wait_listening(stack, pid):
        raise AssertionError(f"the stack's worker ({pid}) is not listening after stack.sh start")
    return pid


# --- FastCGI straight to a pool ---------------------------------------------

_BEGIN, _END, _PARAMS, _STDIN, _STDOUT = 1, 3, 4, 5, 6


def _record(rtype, content):
    return struct.pack("!BBHHBx", 1, rtype, 1, len(content), 0) + content


def _length(n):
    return struct.pack("!B", n) if n < 128 else struct.pack("!I", n | 0x80000000)


def fastcgi_request(sock_path, method, uri, body=b"", content_type=None, params=None,
                    timeout=15.0):
    """One FastCGI request on a pool's unix socket, with the params nginx
    would pass (plus `params`, e.g. the gateway's identity). Returns a
    harness Response."""
    path, _, query = uri.partition("?")
    if isinstance(body, str):
        body = body.encode()
    env = {"REQUEST_METHOD": method, "DOCUMENT_URI": path, "REQUEST_URI": uri,
           "QUERY_STRING": query, "REMOTE_ADDR": "127.0.0.1",
           "REQUEST_ID": "jobs-test-" + os.urandom(6).hex(), "SERVER_PROTOCOL": "HTTP/1.1"}
    if content_type:
        env["CONTENT_TYPE"] = content_type
    if body:
        env["CONTENT_LENGTH"] = str(len(body))
    env.update(params or {})
    encoded = b"".join(_length(len(k.encode())) + _length(len(v.encode())) + k.encode() + v.encode()
                       for k, v in env.items())
    payload = _record(_BEGIN, struct.pack("!HB5x", 1, 0))
    payload += _record(_PARAMS, encoded) + _record(_PARAMS, b"")
    for off in range(0, len(body), 32768):
        payload += _record(_STDIN, body[off:off + 32768])
    payload += _record(_STDIN, b"")
    t0 = time.monotonic()
    buf = b""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(sock_path)
        s.sendall(payload)
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            buf += chunk
    out, pos, ended = b"", 0, False
    while pos + 8 <= len(buf):
        _, rtype, _, length, padding = struct.unpack("!BBHHBx", buf[pos:pos + 8])
        if rtype == _STDOUT:
            out += buf[pos + 8:pos + 8 + length]
        elif rtype == _END:
            ended = True
        pos += 8 + length + padding
    if not ended:
        raise AssertionError(f"no FCGI_END_REQUEST from {sock_path}: {buf[:300]!r}")
    head, _, data = out.partition(b"\r\n\r\n")
    headers = email.message.Message()
    status, reason = 200, "OK"
    for line in head.decode("latin-1").split("\r\n"):
        name, _, value = line.partition(":")
        if name.lower() == "status":
            code, _, reason = value.strip().partition(" ")
            status = int(code)
        elif name:
            headers[name.strip()] = value.strip()
    return Response(status, reason, headers, data, time.monotonic() - t0)
