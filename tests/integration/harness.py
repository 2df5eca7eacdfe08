"""Throwaway stoa stacks for the end-to-end tests.

Each test class that derives from StackTestCase gets its own stack
(Postgres, Redis, the FastCGI pools, the jobs worker and nginx) brought up by
scripts/stack.sh in a fresh temp dir on free loopback ports, and torn down
again whatever happens: class cleanup, atexit and a SIGTERM/SIGHUP handler all
lead to the same idempotent Stack.destroy(). When a test of the class failed,
the tail of every log of the stack is printed before the dir is removed.

Python 3.11 standard library only.
"""

import atexit
import http.client
import json
import os
import re
import shutil
import signal
import socket
import ssl
import struct
import subprocess
import sys
import tempfile
import threading
import time
import unittest

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BIN_DIR = os.path.abspath(os.environ.get("STOA_BIN_DIR") or os.path.join(REPO, "bin"))
STACK_SH = os.path.join(REPO, "scripts", "stack.sh")
PG_BIN = "/usr/lib/postgresql/15/bin"
POOLS = ("auth", "billing", "analytics", "admin")

# What nginx accepts as a client request id; generated ids must match it too.
SANE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,128}$")

START_TIMEOUT = 150.0
STOP_TIMEOUT = 90.0
STOP_CLEAN_WITHIN = 10.0
LOG_TAIL_LINES = 40


def free_port():
    """A loopback TCP port that was free a moment ago (the kernel picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def is_root():
    return os.geteuid() == 0


# --- /proc helpers ---------------------------------------------------------

def proc_stat(pid):
    """(state, ppid, starttime) of a process, or None when it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            raw = f.read().decode("utf-8", "replace")
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # The command name is in parentheses and may itself contain spaces.
    rest = raw[raw.rfind(")") + 2:].split()
    return rest[0], int(rest[1]), int(rest[19])


def proc_cmdline(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode("utf-8", "replace").strip()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return ""


def all_pids():
    return [int(name) for name in os.listdir("/proc") if name.isdigit()]


def pid_alive(pid, starttime=None):
    """True while pid runs (zombies count as gone) and, when starttime is
    given, is still the same process (not a recycled pid)."""
    st = proc_stat(pid)
    if st is None or st[0] == "Z":
        return False
    return starttime is None or st[2] == starttime


def children_of(ppid):
    """Live direct children of ppid, sorted."""
    out = []
    for pid in all_pids():
        st = proc_stat(pid)
        if st and st[1] == ppid and st[0] != "Z":
            out.append(pid)
    return sorted(out)


def read_pid_file(path):
    try:
        with open(path) as f:
            first = f.readline().strip()
        return int(first) if first else None
    except (FileNotFoundError, ValueError, PermissionError):
        return None


def wait_until(predicate, timeout, interval=0.02):
    """Polls predicate until it returns a true value or timeout passes.
    Returns (value, elapsed seconds)."""
    t0 = time.monotonic()
    while True:
        value = predicate()
        elapsed = time.monotonic() - t0
        if value or elapsed >= timeout:
            return value, elapsed
        time.sleep(interval)


# --- HTTP ------------------------------------------------------------------

class Response:
    """One HTTP answer: status, headers (case-insensitive), body bytes and
    the parsed JSON body (None when the body is not JSON)."""

    def __init__(self, status, reason, headers, body, elapsed):
        self.status = status
        self.reason = reason
        self.headers = headers
        self.body = body
        self.elapsed = elapsed
        try:
            self.json = json.loads(body.decode("utf-8")) if body else None
        except (UnicodeDecodeError, ValueError):
            self.json = None

    def header(self, name, default=None):
        return self.headers.get(name, default)

    def header_all(self, name):
        return self.headers.get_all(name) or []

    def __repr__(self):
        text = self.body[:600].decode("utf-8", "replace")
        return f"<{self.status} {self.reason} {dict(self.headers.items())!r} {text!r}>"


class Client:
    """HTTPS client for one stack: verifies the stack's own certificate
    (including the 127.0.0.1 IP SAN) and reuses one keep-alive connection."""

    def __init__(self, host, port, cafile, timeout=15.0):
        self.host = host
        self.port = port
        self.timeout = timeout
        self.context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=cafile)
        self.context.check_hostname = True
        self.context.verify_mode = ssl.CERT_REQUIRED
        self.conn = None
        self.used = False

    def close(self):
        if self.conn is not None:
            self.conn.close()
        self.conn = None
        self.used = False

    def _connection(self):
        if self.conn is None:
            self.conn = http.client.HTTPSConnection(
                self.host, self.port, timeout=self.timeout, context=self.context)
            self.used = False
        return self.conn

    def tls_version(self):
        """Protocol of the live connection (TLSv1.2/TLSv1.3)."""
        self.request("GET", "/healthz")
        conn = self._connection()
        if conn.sock is None:
            conn.connect()
        return conn.sock.version()

    def request(self, method, path, body=None, headers=None, raw=False):
        """Sends one request. body: a JSON-able value (sent as JSON with
        Content-Type: application/json) unless raw, in which case str/bytes go
        out as they are and no Content-Type is added. headers: extra headers;
        a None value removes a default one."""
        hdrs = {}
        if body is not None and not raw:
            body = json.dumps(body).encode("utf-8")
            hdrs["Content-Type"] = "application/json"
        elif isinstance(body, str):
            body = body.encode("utf-8")
        if headers:
            hdrs.update(headers)
        hdrs = {k: v for k, v in hdrs.items() if v is not None}

        for attempt in (0, 1):
            conn = self._connection()
            reused = self.used
            t0 = time.monotonic()
            try:
                try:
                    conn.request(method, path, body=body, headers=hdrs)
                except (BrokenPipeError, ConnectionResetError):
                    # The server may answer (413) and stop reading before the
                    # whole body is sent: its answer is still worth reading.
                    pass
                resp = conn.getresponse()
                data = resp.read()
            except (http.client.RemoteDisconnected, http.client.BadStatusLine,
                    http.client.ResponseNotReady, http.client.CannotSendRequest,
                    BrokenPipeError, ConnectionResetError, ssl.SSLEOFError):
                self.close()
                if reused and attempt == 0:
                    continue  # a keep-alive connection the server had closed
                raise
            elapsed = time.monotonic() - t0
            self.used = True
            if resp.will_close:
                self.close()
            return Response(resp.status, resp.reason, resp.headers, data, elapsed)
        raise AssertionError("unreachable")


def plain_http_request(port, method, path, headers=None, timeout=10.0):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        t0 = time.monotonic()
        conn.request(method, path, headers=headers or {})
        resp = conn.getresponse()
        data = resp.read()
        return Response(resp.status, resp.reason, resp.headers, data, time.monotonic() - t0)
    finally:
        conn.close()


# --- FastCGI (to talk to a pool binary directly) ---------------------------

FCGI_BEGIN_REQUEST, FCGI_END_REQUEST, FCGI_PARAMS, FCGI_STDIN, FCGI_STDOUT = 1, 3, 4, 5, 6


def _fcgi_record(rtype, content, request_id=1):
    return struct.pack("!BBHHBx", 1, rtype, request_id, len(content), 0) + content


def _fcgi_length(n):
    return struct.pack("!B", n) if n < 128 else struct.pack("!I", n | 0x80000000)


def fastcgi_get(sock_path, uri, timeout=5.0):
    """One FastCGI GET on a unix socket; returns (status, headers text, body)."""
    params = {
        "REQUEST_METHOD": "GET", "DOCUMENT_URI": uri, "REQUEST_URI": uri,
        "SCRIPT_NAME": uri, "QUERY_STRING": "", "REMOTE_ADDR": "127.0.0.1",
        "REQUEST_ID": "fastcgi-direct-1", "SERVER_PROTOCOL": "HTTP/1.1",
    }
    encoded = b"".join(_fcgi_length(len(k)) + _fcgi_length(len(v)) + k.encode() + v.encode()
                       for k, v in params.items())
    payload = (_fcgi_record(FCGI_BEGIN_REQUEST, struct.pack("!HB5x", 1, 0))
               + _fcgi_record(FCGI_PARAMS, encoded) + _fcgi_record(FCGI_PARAMS, b"")
               + _fcgi_record(FCGI_STDIN, b""))
    out = b""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(sock_path)
        s.sendall(payload)
        buf = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            buf += chunk
        pos, ended = 0, False
        while pos + 8 <= len(buf):
            _, rtype, _, length, padding = struct.unpack("!BBHHBx", buf[pos:pos + 8])
            content = buf[pos + 8:pos + 8 + length]
            pos += 8 + length + padding
            if rtype == FCGI_STDOUT:
                out += content
            elif rtype == FCGI_END_REQUEST:
                ended = True
        if not ended:
            raise AssertionError(f"no FCGI_END_REQUEST from {sock_path}: {buf[:300]!r}")
    head, _, body = out.replace(b"\r\n", b"\n").partition(b"\n\n")
    head = head.decode("latin-1")
    status = 200
    for line in head.split("\n"):
        if line.lower().startswith("status:"):
            status = int(line.split(":", 1)[1].split()[0])
    return status, head, body


# --- the stack -------------------------------------------------------------

_ACTIVE_STACKS = set()
_ACTIVE_LOCK = threading.Lock()


class Stack:
    """One throwaway stack in its own temp dir. start() and destroy() are
    the whole life cycle; destroy() is idempotent."""

    def __init__(self, env=None, pool_processes=2):
        self.extra_env = dict(env or {})
        self.pool_processes = pool_processes
        self.run = None
        self.https_port = None
        self.http_port = None
        self.client = None
        self.start_output = ""
        self.destroyed = False
        self._script = None  # a stack.sh run in progress

    # life cycle

    def env(self):
        env = dict(os.environ)
        env.update({
            "STOA_RUN_DIR": self.run,
            "STOA_BIN_DIR": BIN_DIR,
            "STOA_HTTPS_PORT": str(self.https_port),
            "STOA_HTTP_PORT": str(self.http_port),
            "STOA_POOL_PROCESSES": str(self.pool_processes),
            # The example config listens for metrics on a fixed port; stacks
            # may run side by side, so each gets its own.
            "STOA_METRICS_LISTEN": f"127.0.0.1:{free_port()}",
        })
        env.update(self.extra_env)
        return env

    def start(self):
        self.https_port = free_port()
        self.http_port = free_port()
        while self.http_port == self.https_port:
            self.http_port = free_port()
        self.run = tempfile.mkdtemp(prefix="stoa-it-")
        self._env = self.env()
        with _ACTIVE_LOCK:
            _ACTIVE_STACKS.add(self)
        # The postgres OS user must traverse it when the suite runs as root.
        os.chmod(self.run, 0o755)
        rc, out = self._stack_sh("start", START_TIMEOUT)
        self.start_output = out
        if rc != 0:
            raise RuntimeError(f"stack.sh start exited {rc}:\n{out}")
        self.client = Client("127.0.0.1", self.https_port, self.path("tls", "cert.pem"))
        return self

    def _stack_sh(self, action, timeout):
        """Runs stack.sh with output to an anonymous file (not a pipe: the
        daemons it starts could keep a pipe open forever). The script runs
        in its own session so a terminal Ctrl-C does not hit the stack
        halfway; teardown stops it explicitly. When the wait is interrupted
        (Ctrl-C, SIGTERM), the script is killed before anything else so a
        half-done start cannot bring processes up after the teardown."""
        with tempfile.TemporaryFile() as out:
            proc = subprocess.Popen(["bash", STACK_SH, action], cwd=REPO, env=self._env,
                                    stdin=subprocess.DEVNULL, stdout=out,
                                    stderr=subprocess.STDOUT, start_new_session=True)
            self._script = proc
            try:
                rc = proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self._kill_script()
                rc = f"timeout after {timeout:.0f}s"
            except BaseException:
                self._kill_script()
                raise
            finally:
                self._script = None
            out.seek(0)
            return rc, out.read().decode("utf-8", "replace")

    def _kill_script(self):
        proc = self._script
        if proc is not None and proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait()

    def stop(self):
        """stack.sh stop; returns (rc, output)."""
        if self.client is not None:
            self.client.close()
        return self._stack_sh("stop", STOP_TIMEOUT)

    def destroy(self, dump_logs=False, check_leftovers=True):
        """Stops the stack, checks that none of its processes survived
        (killing and naming any that did), prints the logs when asked and
        removes the dir. Raises AssertionError on a failed stop or a
        survivor, after cleaning up."""
        # Not marked done until the end: a signal that interrupts a destroy
        # in progress runs it again from the top (every step is idempotent).
        if self.destroyed or self.run is None:
            return
        problems = []
        try:
            # Interrupted in the middle of stack.sh (a signal): end that first.
            self._kill_script()
            before = self.snapshot()
            t0 = time.monotonic()
            rc, out = self.stop()
            took = time.monotonic() - t0
            if rc != 0:
                problems.append(f"stack.sh stop exited {rc}:\n{out}")
            elif took > STOP_CLEAN_WITHIN:
                # Every program stops within a second or two of its signal;
                # a slow stop means stack.sh had to wait out (and kill)
                # something that ignored it.
                problems.append(f"stack.sh stop took {took:.1f}s (> {STOP_CLEAN_WITHIN:.0f}s):\n{out}")
            survivors = self.survivors(before)
            if survivors:
                problems.append("processes survived stack.sh stop:\n" + "\n".join(
                    f"  pid {pid}: {cmd}" for pid, cmd in survivors))
                for pid, _ in survivors:
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except (ProcessLookupError, PermissionError):
                        pass
            if dump_logs or problems:
                self.dump_logs()
        finally:
            shutil.rmtree(self.run, ignore_errors=True)
            self.destroyed = True
            with _ACTIVE_LOCK:
                _ACTIVE_STACKS.discard(self)
        if problems and check_leftovers:
            raise AssertionError("\n".join(problems))

    # paths and processes

    def path(self, *parts):
        return os.path.join(self.run, *parts)

    def conf_path(self):
        return self.path("stoa.conf")

    def pool_pid(self, pool):
        """The supervisor (multiwatch) pid of a pool."""
        return read_pid_file(self.path("pids", f"{pool}.pid"))

    def pool_children(self, pool):
        pid = self.pool_pid(pool)
        return children_of(pid) if pid else []

    def snapshot(self):
        """{pid: starttime} of every process of this stack: the pid files, the
        postmaster, nginx, everything naming the run dir, and all their
        descendants (nginx workers and Postgres backends do not name it)."""
        roots = set()
        pid_files = [self.path("nginx", "nginx.pid"), self.path("pg", "data", "postmaster.pid")]
        pids_dir = self.path("pids")
        if os.path.isdir(pids_dir):
            pid_files += [os.path.join(pids_dir, n) for n in os.listdir(pids_dir)]
        for f in pid_files:
            pid = read_pid_file(f)
            if pid:
                roots.add(pid)
        stats = {}
        for pid in all_pids():
            st = proc_stat(pid)
            if st is None or pid == os.getpid():
                continue
            stats[pid] = st
            if self.run + "/" in proc_cmdline(pid):
                roots.add(pid)
        found = {pid for pid in roots if pid in stats and stats[pid][0] != "Z"}
        frontier = set(found)
        while frontier:
            frontier = {pid for pid, st in stats.items()
                        if st[1] in frontier and st[0] != "Z" and pid not in found}
            found |= frontier
        return {pid: stats[pid][2] for pid in found}

    def survivors(self, before):
        """Processes of `before` still alive, plus any process naming the run
        dir: [(pid, cmdline)]."""
        deadline = time.monotonic() + 3.0
        while True:
            alive = {pid for pid, start in before.items() if pid_alive(pid, start)}
            for pid in all_pids():
                if pid != os.getpid() and pid_alive(pid) and self.run + "/" in proc_cmdline(pid):
                    alive.add(pid)
            # A process may be a moment away from exiting (reaping by init).
            if not alive or time.monotonic() > deadline:
                return [(pid, proc_cmdline(pid)) for pid in sorted(alive)]
            time.sleep(0.1)

    def dump_logs(self, lines=LOG_TAIL_LINES):
        err = sys.stderr
        err.write(f"\n===== stoa stack {self.run} (https {self.https_port}, "
                  f"http {self.http_port}) =====\n")
        if self.start_output:
            err.write("----- stack.sh start -----\n" + self.start_output[-4000:] + "\n")
        log_dir = self.path("log")
        names = sorted(os.listdir(log_dir)) if os.path.isdir(log_dir) else []
        for name in names:
            full = os.path.join(log_dir, name)
            if not os.path.isfile(full):
                continue
            try:
                with open(full, "rb") as f:
                    f.seek(0, os.SEEK_END)
                    f.seek(max(0, f.tell() - 256 * 1024))
                    tail = f.read().decode("utf-8", "replace").splitlines()[-lines:]
            except OSError as e:
                tail = [f"(unreadable: {e})"]
            err.write(f"----- {name} (last {len(tail)} lines) -----\n")
            err.write("\n".join(tail) + "\n")
        err.flush()

    # stores

    def _as_postgres(self, argv):
        return ["runuser", "-u", "postgres", "--"] + argv if is_root() else argv

    def pg_ctl(self, *args, timeout=60):
        argv = self._as_postgres([os.path.join(PG_BIN, "pg_ctl"), *args,
                                  "-D", self.path("pg", "data")])
        # cwd: the postgres user must be able to enter it.
        return subprocess.run(argv, cwd=self.run, stdin=subprocess.DEVNULL,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                              timeout=timeout, env=self._env)

    def postgres_stop(self):
        return self.pg_ctl("stop", "-m", "fast", "-w")

    def postgres_running(self):
        pid = read_pid_file(self.path("pg", "data", "postmaster.pid"))
        return bool(pid) and pid_alive(pid)

    def postgres_start(self):
        # The settings of the cluster live in its own config files, so a plain
        # start brings it back the way stack.sh configured it.
        return self.pg_ctl("start", "-w", "-t", "30", "-l", self.path("log", "postgres.log"))

    def redis_socket(self):
        return self.path("redis", "redis.sock")

    def redis_stop(self):
        return subprocess.run(["redis-cli", "-s", self.redis_socket(), "shutdown", "nosave"],
                              stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, timeout=30)

    def redis_running(self):
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                s.settimeout(1.0)
                s.connect(self.redis_socket())
                s.sendall(b"PING\r\n")
                return s.recv(64).startswith(b"+PONG")
        except OSError:
            return False

    def redis_start(self):
        return subprocess.run(["redis-server", self.path("redis", "redis.conf")],
                              cwd=self.run, stdin=subprocess.DEVNULL,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=30)


# --- wrk -----------------------------------------------------------------------

def wrk_counting_lua(label):
    """The part of a wrk Lua script that counts answers by kind: every wrk
    thread starts the globals ok, shed and other (and backoff) at 0, the
    script's own response() counts into them, and done() prints their sums
    over the threads as one line, "<label> ok=N shed=N other=N"."""
    return """local threads = {}
function setup(thread) table.insert(threads, thread) end
function init(args) ok = 0; shed = 0; other = 0; backoff = 0 end
function done(summary, latency, requests)
  local o, s, x = 0, 0, 0
  for _, t in ipairs(threads) do
    o = o + t:get("ok"); s = s + t:get("shed"); x = x + t:get("other")
  end
  io.write(string.format("%s ok=%%d shed=%%d other=%%d\\n", o, s, x))
end
""" % label


# --- Postgres ------------------------------------------------------------------

class Db:
    """psql on the stack's unix socket as the application role. Values go in
    as psql variables and are quoted by psql (:'name'), never pasted into
    the SQL text. billinglib and jobslib add their own reads to it."""

    def __init__(self, stack):
        self.stack = stack

    def _psql(self, sql, variables):
        argv = ["psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1",
                "-h", self.stack.path("pg", "sock"), "-p", "5432", "-U", "stoa", "-d", "stoa"]
        for name, value in variables.items():
            argv += ["-v", f"{name}={value}"]
        # Variables are interpolated in scripts read from standard input,
        # not in -c commands.
        proc = subprocess.run(argv, input=sql, capture_output=True, text=True, timeout=30,
                              cwd="/")
        if proc.returncode != 0:
            raise AssertionError(f"psql failed ({proc.returncode}): {proc.stderr.strip()}\n{sql}")
        return proc.stdout

    def exec(self, sql, **variables):
        self._psql(sql.rstrip().rstrip(";") + ";\n", variables)

    def rows(self, sql, **variables):
        """Rows of a SELECT (or of a statement with RETURNING) as dicts."""
        wrapped = ("WITH q AS (" + sql.rstrip().rstrip(";")
                   + ") SELECT coalesce(json_agg(q), '[]'::json) FROM q;\n")
        return json.loads(self._psql(wrapped, variables))

    def row(self, sql, **variables):
        rows = self.rows(sql, **variables)
        return rows[0] if rows else None

    def value(self, sql, **variables):
        row = self.row(sql, **variables)
        return None if row is None else next(iter(row.values()))

    def count(self, sql, **variables):
        return self.value(f"SELECT count(*) AS n FROM ({sql}) x", **variables)


def _destroy_all_stacks():
    with _ACTIVE_LOCK:
        stacks = list(_ACTIVE_STACKS)
    for stack in stacks:
        try:
            stack.destroy(dump_logs=False, check_leftovers=False)
        except Exception as e:  # best effort on the way out
            sys.stderr.write(f"stoa harness: cleanup of {stack.run} failed: {e}\n")


def _on_terminate(signum, frame):
    _destroy_all_stacks()
    os._exit(128 + signum)


atexit.register(_destroy_all_stacks)
if threading.current_thread() is threading.main_thread():
    for _sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(_sig, _on_terminate)


# --- test case base --------------------------------------------------------

# Rate limits a suite that sends many requests from one address needs
# opened (stack_env of its test case).
OPEN_LIMITS = {"STOA_RATE_AUTH": "1000r/s", "STOA_BURST_AUTH": "1000",
               "STOA_RATE_API": "10000r/s", "STOA_BURST_API": "10000"}


class StackTestCase(unittest.TestCase):
    """Base class: one stack per class, shared by its tests (in name order).
    Subclasses may set stack_env (extra environment for stack.sh and the
    programs) and pool_processes."""

    stack_env = {}
    pool_processes = 2
    stack = None
    _failed = False

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls._failed = False
        for target in (STACK_SH, os.path.join(BIN_DIR, "stoa-auth")):
            if not os.path.exists(target):
                # Not a skip: a suite that goes green without running is a lie.
                raise RuntimeError(f"{target} is missing (build first)")
        cls.stack = Stack(env=cls.stack_env, pool_processes=cls.pool_processes)
        cls.addClassCleanup(cls._teardown_stack)
        try:
            cls.stack.start()
        except BaseException:
            cls._failed = True
            raise

    @classmethod
    def _teardown_stack(cls):
        stack, cls.stack = cls.stack, None
        if stack is not None:
            stack.destroy(dump_logs=cls._failed)

    def run(self, result=None):
        # Remember a failure of any test (or subtest) of the class so the
        # class teardown keeps and prints the stack's logs.
        if result is None:
            return super().run(result)
        before = len(result.failures) + len(result.errors) + len(result.unexpectedSuccesses)
        out = super().run(result)
        if len(result.failures) + len(result.errors) + len(result.unexpectedSuccesses) > before:
            type(self)._failed = True
        return out

    # Redis stopped and started under the running stack

    # Whether start_redis() also waits for the auth pool's readiness (the
    # one pool that reads Redis on every login) before it returns.
    redis_start_waits_for_auth = True

    def stop_redis(self):
        self.stack.redis_stop()
        gone, _ = wait_until(lambda: not self.stack.redis_running(), 5.0, interval=0.05)
        self.assertTrue(gone, "redis did not stop")

    def start_redis(self):
        if not self.stack.redis_running():
            started = self.stack.redis_start()
            self.assertEqual(started.returncode, 0, started.stderr)
            up, _ = wait_until(self.stack.redis_running, 5.0, interval=0.05)
            self.assertTrue(up, "redis did not come back")
        if self.redis_start_waits_for_auth:
            ok, _ = wait_until(lambda: self.stack.client.request(
                "GET", "/v1/auth/readyz").status == 200, 5.0, interval=0.1)
            self.assertTrue(ok, "auth pool not ready again after Redis came back")

    # helpers

    def request(self, method, path, body=None, headers=None, raw=False):
        return self.stack.client.request(method, path, body=body, headers=headers, raw=raw)

    def assert_json_content_type(self, resp):
        ctype = resp.header("Content-Type", "")
        self.assertEqual(ctype.split(";")[0].strip().lower(), "application/json",
                         f"Content-Type of {resp!r}")

    def assert_request_id(self, resp):
        """Exactly one sane X-Request-Id header; returns it."""
        ids = resp.header_all("X-Request-Id")
        self.assertEqual(len(ids), 1, f"want one X-Request-Id header: {resp!r}")
        self.assertRegex(ids[0], SANE_REQUEST_ID, f"X-Request-Id of {resp!r}")
        return ids[0]

    def assert_ok_json(self, resp, status=200):
        self.assertEqual(resp.status, status, repr(resp))
        self.assert_json_content_type(resp)
        self.assertIsInstance(resp.json, dict, f"JSON object body: {resp!r}")
        self.assert_request_id(resp)
        return resp.json

    def assert_error(self, resp, status, code):
        """The SPEC §3 error shape, exactly; returns error.details."""
        self.assertEqual(resp.status, status, repr(resp))
        self.assert_json_content_type(resp)
        doc = resp.json
        self.assertIsInstance(doc, dict, f"JSON object body: {resp!r}")
        self.assertEqual(set(doc), {"error", "request_id"}, f"top-level keys: {resp!r}")
        err = doc["error"]
        self.assertIsInstance(err, dict, repr(resp))
        self.assertEqual(set(err), {"code", "message", "details"}, f"error keys: {resp!r}")
        self.assertEqual(err["code"], code, repr(resp))
        self.assertIsInstance(err["message"], str, repr(resp))
        self.assertTrue(err["message"].strip(), f"empty message: {resp!r}")
        self.assertIsInstance(err["details"], dict, repr(resp))
        self.assertIsInstance(doc["request_id"], str, repr(resp))
        header_id = self.assert_request_id(resp)
        self.assertEqual(doc["request_id"], header_id, f"body and header request id: {resp!r}")
        return err["details"]


# --- process memory ----------------------------------------------------------

def cpu_ticks(pid):
    """utime + stime of a process (clock ticks), or None when it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return None
    return int(fields[11]) + int(fields[12])


def wait_idle(pids, quiet=0.3, timeout=10.0):
    """Waits until none of pids has used CPU for `quiet` seconds (no request
    in flight: a pool process caught mid-hash holds Argon2id's ~19 MiB).
    Returns True when they went quiet within timeout."""
    deadline = time.monotonic() + timeout
    last = {pid: cpu_ticks(pid) for pid in pids}
    still_since = time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(0.05)
        now = {pid: cpu_ticks(pid) for pid in pids}
        if now != last:
            last, still_since = now, time.monotonic()
        elif time.monotonic() - still_since >= quiet:
            return True
    return False


def memory_breakdown(pid):
    """Resident KiB of a process by kind, from /proc/<pid>/smaps: heap (the
    brk heap), stacks (the main one and threads' stacks: a writable mapping
    right above its guard page), anon (other anonymous memory: malloc's
    second arena, mmap'd blocks, thread-local data), files (mapped files,
    mostly libraries' pages shared with other processes) and rss (their
    sum, VmRSS). None when the process is gone."""
    out = {"rss": 0, "heap": 0, "stacks": 0, "anon": 0, "files": 0}
    prev = None  # (end address, perms, name) of the mapping before
    kind = None
    try:
        with open(f"/proc/{pid}/smaps") as f:
            for line in f:
                head = line.split(None, 5)
                if "-" in head[0] and not head[0].endswith(":"):
                    start, end = (int(x, 16) for x in head[0].split("-"))
                    perms = head[1]
                    name = head[5].strip() if len(head) > 5 else ""
                    if name == "[heap]":
                        kind = "heap"
                    elif name == "[stack]":
                        kind = "stacks"
                    elif name.startswith("/"):
                        kind = "files"
                    elif (not name and perms.startswith("rw") and prev and prev[0] == start
                          and prev[1].startswith("---") and not prev[2]
                          and prev[3] <= 64 * 1024):
                        kind = "stacks"
                    else:
                        kind = "anon"
                    prev = (end, perms, name, end - start)
                elif head[0] == "Rss:" and kind:
                    kb = int(head[1])
                    out[kind] += kb
                    out["rss"] += kb
    except (FileNotFoundError, ProcessLookupError):
        return None
    return out
