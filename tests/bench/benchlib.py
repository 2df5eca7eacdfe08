"""Shared pieces of the SPEC §9 benchmarks written in Python: a throwaway
stack (the integration harness's, with rate limits opened), extra nginx
routes, the empty FastCGI responder, wrk runs and their figures, and the
report every bench prints (figures, ratios against a ceiling measured in
the same run, PASS/FAIL per bar, JSON in $BENCH_OUT).

A bar that is missed prints FAIL but only makes the bench exit non-zero
when BENCH_STRICT=1: the figures of a shared machine are noise, and the
bars are judged on a quiet one. A run that could not measure at all (the
stack did not start, wrk failed) exits 2 whatever the setting.

Python 3.11 standard library only (plus the programs the stack uses).
"""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))
import harness  # noqa: E402  (path set above)
from harness import BIN_DIR, REPO, Client, free_port  # noqa: E402,F401

BENCH_BIN = os.path.abspath(os.environ.get("STOA_BENCH_BIN")
                            or os.path.join(REPO, "build", "release", "bench"))
PASSWORD = "Bench horse battery staple 42!"
UNIT_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0, "h": 3600000.0}


class SetupError(Exception):
    """The bench could not be set up or could not measure."""


def note(msg):
    print(f"bench: {msg}", file=sys.stderr, flush=True)


def env_int(name, default, minimum=1):
    raw = os.environ.get(name, "")
    if raw == "":
        return default
    if not re.fullmatch(r"[0-9]+", raw) or int(raw) < minimum:
        raise SetupError(f"{name} must be an integer >= {minimum}: {raw!r}")
    return int(raw)


def env_float(name, default):
    raw = os.environ.get(name, "")
    if raw == "":
        return default
    try:
        return float(raw)
    except ValueError:
        raise SetupError(f"{name} must be a number: {raw!r}") from None


def env_counts(name, default):
    """A list of positive integers, space- or comma-separated."""
    raw = os.environ.get(name, "") or default
    out = []
    for part in re.split(r"[\s,]+", raw.strip()):
        if not re.fullmatch(r"[1-9][0-9]*", part):
            raise SetupError(f"{name} must list positive integers: {raw!r}")
        out.append(int(part))
    return out


def raise_nofile(needed):
    """Raises this process's open-file limit (inherited by wrk and the
    clients it starts) to at least `needed`, within the hard limit."""
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= needed:
        return
    if hard != resource.RLIM_INFINITY and hard < needed:
        raise SetupError(f"{needed} open files needed, the hard limit is {hard}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))


# --- the stack ---------------------------------------------------------------

class BenchStack(harness.Stack):
    """A harness stack with rate limits out of the way, a metrics port of
    its own and helpers the benches share. Use as a context manager."""

    def __init__(self, processes=None, env=None):
        processes = processes or env_int("BENCH_PROCESSES", 2)
        base = {
            "STOA_RATE_API": "100000r/s", "STOA_BURST_API": "100000",
            "STOA_RATE_AUTH": "100000r/s", "STOA_BURST_AUTH": "100000",
            # A bench measures the work, not the info lines about it.
            "STOA_LOG_LEVEL": os.environ.get("BENCH_LOG_LEVEL", "warn"),
        }
        base.update(env or {})
        super().__init__(env=base, pool_processes=processes)
        self.processes = processes
        self._children = []  # (name, Popen) started by the bench, stopped first

    def __enter__(self):
        note(f"starting a throwaway stack ({self.processes} processes per pool)")
        try:
            self.start()
        except Exception:
            self.destroy(dump_logs=True, check_leftovers=False)
            raise
        return self

    def __exit__(self, exc_type, exc, tb):
        self.stop_children()
        self.destroy(dump_logs=exc_type is not None and exc_type is not KeyboardInterrupt,
                     check_leftovers=False)
        return False

    @property
    def base(self):
        return f"https://127.0.0.1:{self.https_port}"

    def new_client(self, timeout=15.0):
        return Client("127.0.0.1", self.https_port, self.path("tls", "cert.pem"), timeout=timeout)

    # extra processes

    def spawn(self, name, argv, **kw):
        """Starts a helper process in a session of its own; it is stopped
        (its whole group) before the stack."""
        log = open(self.path("log", f"bench-{name}.log"), "ab")
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                start_new_session=True, **kw)
        log.close()
        self._children.append((name, proc))
        return proc

    def stop_children(self):
        for name, proc in reversed(self._children):
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    note(f"{name} ignored SIGTERM; killing it")
                    try:
                        os.killpg(proc.pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                    proc.wait()
        self._children = []

    def start_empty_responder(self, processes=None):
        """The empty libfcgi responder (the ceiling of a pool process) on
        $RUN/sock/empty.sock, behind /bench/empty with the pools' keep-alive
        rule, and nginx's own answer on /bench/static."""
        binary = os.path.join(BENCH_BIN, "stoa-empty-fcgi")
        if not os.access(binary, os.X_OK):
            raise SetupError(f"missing {binary} (make {os.path.relpath(binary, REPO)})")
        processes = processes or self.processes
        sock = self.path("sock", "empty.sock")
        # spawn-fcgi -n keeps multiwatch in the foreground, so it is ours.
        self.spawn("empty", ["spawn-fcgi", "-n", "-s", sock, "-M", "0600", "--",
                             "/usr/bin/multiwatch", "-f", str(processes), "--", binary])
        keepalive = self.pool_keepalive()
        self.add_nginx("empty", http=f"""
upstream bench_empty {{
    server unix:{sock};
    {f"keepalive {keepalive};" if keepalive else "# no idle connections kept"}
    keepalive_requests 20;
    keepalive_timeout 100ms;
}}
""", server=f"""
location = /bench/static {{
    default_type application/json;
    return 200 '{{"status":"ok"}}';
}}
location = /bench/empty {{
    fastcgi_pass bench_empty;
    include {self.path("nginx", "fastcgi_stoa.conf")};
}}
""")
        self.wait_for("/bench/empty")

    def pool_keepalive(self):
        """The idle upstream connections per worker nginx gives the pools,
        read from the rendered config."""
        with open(self.path("nginx", "nginx.conf")) as f:
            text = f.read()
        m = re.search(r"upstream\s+stoa_auth\s*\{([^}]*)\}", text)
        k = re.search(r"^\s*keepalive\s+(\d+);", m.group(1), re.M) if m else None
        return int(k.group(1)) if k else 0

    def add_nginx(self, name, http="", server=""):
        """Adds http-level and server-level drop-ins and reloads nginx."""
        header = "# Written by the benchmarks (tests/bench).\n"
        with open(self.path("nginx", "http.d", f"bench-{name}.conf"), "w") as f:
            f.write(header + http)
        with open(self.path("nginx", "conf.d", f"bench-{name}.conf"), "w") as f:
            f.write(header + server)
        rc, out = self._stack_sh("reload", 60)
        if rc != 0:
            raise SetupError(f"nginx rejects the bench configuration:\n{out}")

    def wait_for(self, path, headers=None, timeout=20.0):
        c = self.new_client(timeout=3.0)
        deadline = time.monotonic() + timeout
        last = None
        try:
            while time.monotonic() < deadline:
                try:
                    last = c.request("GET", path, headers=headers, raw=True).status
                    if last == 200:
                        return
                except OSError as e:
                    last = e
                    c.close()
                time.sleep(0.1)
        finally:
            c.close()
        raise SetupError(f"{path} answers {last}, not 200")

    # accounts

    def register_and_login(self, tag="bench"):
        """A fresh user: (user id, email, access token, login response)."""
        email = f"{tag}-{os.urandom(6).hex()}@example.com"
        c = self.new_client()
        try:
            r = c.request("POST", "/v1/auth/register",
                          body={"email": email, "password": PASSWORD, "name": "Bench User"})
            if r.status != 201:
                raise SetupError(f"register answered {r.status}: {r.body!r}")
            r = c.request("POST", "/v1/auth/login", body={"email": email, "password": PASSWORD})
            if r.status != 200:
                raise SetupError(f"login answered {r.status}: {r.body!r}")
            body = r.json
        finally:
            c.close()
        return body["user"]["id"], email, body["access_token"], body

    # stores

    def psql(self, sql, *args):
        """Runs SQL as the application role; psql variables :'v1', :'v2', ...
        carry args (quoted by psql). Returns the unaligned, tuples-only
        output."""
        argv = [f"{harness.PG_BIN}/psql", "-X", "-q", "-tA", "-v", "ON_ERROR_STOP=1",
                "-h", self.path("pg", "sock"), "-p", "5432", "-U", "stoa", "-d", "stoa"]
        for i, a in enumerate(args, 1):
            argv += ["-v", f"v{i}={a}"]
        done = subprocess.run(argv, input=sql, capture_output=True, text=True, timeout=600)
        if done.returncode != 0:
            raise SetupError(f"psql failed: {done.stderr.strip()}")
        return done.stdout.strip()

    def conf_value(self, key, default=None):
        env = os.environ.get("STOA_" + key.upper())
        if env is not None:
            return env
        value = default
        with open(self.conf_path()) as f:
            for line in f:
                m = re.match(rf"\s*{re.escape(key)}\s*=\s*(.*?)\s*$", line)
                if m:
                    value = m.group(1)
        return value

    def pool_processes_rss(self):
        """{pool: [(pid, VmRSS KiB)]} for every process of every pool."""
        out = {}
        for pool in harness.POOLS:
            rows = []
            for pid in sorted(self.pool_children(pool)):
                rows.append((pid, vm_rss_kib(pid)))
            out[pool] = rows
        return out

    def pool_processes_at_rest(self, timeout=10.0):
        """{pool: [(pid, breakdown)]} (harness.memory_breakdown: rss, heap,
        stacks, anon, files in KiB) once no pool process has used CPU for a
        moment: read while a request is in flight, a login's Argon2id
        (~19 MiB until the hash ends) would count as the process's size."""
        pids = {pool: sorted(self.pool_children(pool)) for pool in harness.POOLS}
        if not harness.wait_idle([p for group in pids.values() for p in group],
                                 timeout=timeout):
            note("the pools did not go idle: reading them busy")
        return {pool: [(pid, harness.memory_breakdown(pid)) for pid in group]
                for pool, group in pids.items()}


def vm_rss_kib(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


# --- wrk -----------------------------------------------------------------------

def to_ms(text):
    m = re.fullmatch(r"([0-9.]+)(us|ms|s|m|h)", text or "")
    return round(float(m.group(1)) * UNIT_MS[m.group(2)], 3) if m else None


def parse_wrk(text):
    """The figures of one wrk --latency run."""
    out = {"requests_per_second": None, "requests": None, "p50_ms": None, "p99_ms": None,
           "max_ms": None, "non_2xx": 0, "socket_errors": 0, "timeouts": 0}
    m = re.search(r"Requests/sec:\s+([0-9.]+)", text)
    if m:
        out["requests_per_second"] = float(m.group(1))
    m = re.search(r"^\s*(\d+) requests in", text, re.M)
    if m:
        out["requests"] = int(m.group(1))
    for q, key in (("50", "p50_ms"), ("99", "p99_ms")):
        m = re.search(rf"^\s+{q}%\s+(\S+)", text, re.M)
        if m:
            out[key] = to_ms(m.group(1))
    m = re.search(r"^\s+Latency\s+\S+\s+\S+\s+(\S+)", text, re.M)
    if m:
        out["max_ms"] = to_ms(m.group(1))
    m = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text)
    if m:
        out["non_2xx"] = int(m.group(1))
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    if m:
        nums = [int(x) for x in m.groups()]
        out["socket_errors"] = sum(nums)
        out["timeouts"] = nums[3]
    return out


def wrk_command(stack, path, connections, seconds, threads=None, headers=(), script=None,
                timeout_s=5):
    threads = min(threads or env_int("BENCH_THREADS", 2), connections)
    argv = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s",
            f"--timeout={timeout_s}s", "--latency"]
    for h in headers:
        argv += ["-H", h]
    if script:
        argv += ["-s", script]
    argv.append(stack.base + path)
    return argv


def run_wrk(stack, path, connections, seconds, **kw):
    """One wrk run to completion; its figures (raises SetupError when wrk
    itself failed or printed no figures)."""
    raise_nofile(connections + 256)
    argv = wrk_command(stack, path, connections, seconds, **kw)
    done = subprocess.run(argv, capture_output=True, text=True, timeout=seconds * 4 + 120)
    result = parse_wrk(done.stdout)
    if done.returncode != 0 or result["requests_per_second"] is None:
        raise SetupError(f"wrk failed on {path}: {done.stdout}{done.stderr}")
    result["output"] = done.stdout
    return result


def start_wrk(stack, path, connections, seconds, **kw):
    """A wrk run in the background (another load runs meanwhile); finish
    it with finish_wrk()."""
    raise_nofile(connections + 256)
    argv = wrk_command(stack, path, connections, seconds, **kw)
    out = tempfile.TemporaryFile(mode="w+")
    proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    return proc, out, path


def finish_wrk(handle, timeout=600):
    proc, out, path = handle
    text = collect_wrk(proc, out, timeout)
    result = parse_wrk(text)
    if proc.returncode != 0 or result["requests_per_second"] is None:
        raise SetupError(f"wrk failed on {path}: {text}")
    result["output"] = text
    return result


def collect_wrk(proc, out, timeout):
    """Waits up to timeout for a wrk run started on the file out (killing it
    after that); its output, and out is closed."""
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    out.seek(0)
    text = out.read()
    out.close()
    return text


def interrupt_wrk(proc, out):
    """Ends a wrk run that sleeps out its -d (SIGINT: it prints its figures
    and runs its done()); its output, and out is closed."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
    return collect_wrk(proc, out, 30)


def shed_counting_lua(shed_message=None):
    """response() and delay() for a script that counts its answers with
    harness.wrk_counting_lua(): 200 is ok; a 503 (whose body holds
    shed_message, when one is given) is a shed, and its connection waits as
    the Retry-After asks, as a client should (retrying at once would only
    spend the cores the shedder lacks); anything else is other."""
    match = (f" and body and body:find({lua_string(shed_message)}, 1, true)"
             if shed_message else "")
    return f"""function response(status, headers, body)
  if status == 200 then ok = ok + 1
  elseif status == 503{match} then
    shed = shed + 1
    backoff = (tonumber(headers["Retry-After"]) or 1) * 1000
  else other = other + 1 end
end
function delay()
  local d = backoff
  backoff = 0
  return d
end
"""


def answer_counts(run, label):
    """(ok, shed, other) from the line harness.wrk_counting_lua(label)
    prints in wrk's output; None when the line is missing."""
    m = re.search(label + r" ok=(\d+) shed=(\d+) other=(\d+)", run.get("output") or "")
    return tuple(map(int, m.groups())) if m else None


def lua_string(s):
    """A Lua string literal for s (long brackets cannot hold every text)."""
    out = ['"']
    for ch in s.encode():
        if ch in (0x22, 0x5c) or ch < 0x20 or ch > 0x7e:
            out.append("\\%03d" % ch)
        else:
            out.append(chr(ch))
    out.append('"')
    return "".join(out)


# --- the report ----------------------------------------------------------------

class Report:
    """Figures, ratios and bars of one bench, printed as a table and kept
    as JSON."""

    def __init__(self, name, settings):
        self.name = name
        self.settings = dict(settings)
        self.figures = []  # (label, value, unit, extra dict)
        self.bars = []     # {bar, value, limit, op, passed}
        self.problems = []
        self.notes = []
        self.data = {}

    def figure(self, label, value, unit="", **extra):
        self.figures.append({"label": label, "value": value, "unit": unit, **extra})

    def bar(self, label, value, op, limit):
        """op: '>=', '<=' or '<'. A value of None (not measured) fails."""
        if value is None:
            passed = False
        elif op == ">=":
            passed = value >= limit
        elif op == "<":
            passed = value < limit
        else:
            passed = value <= limit
        self.bars.append({"bar": label, "value": value, "op": op, "limit": limit,
                          "passed": passed})
        return passed

    def problem(self, text):
        self.problems.append(text)

    def note(self, text):
        self.notes.append(text)

    def finish(self):
        """Prints everything, writes $BENCH_OUT, and returns the exit
        status: 1 when a bar failed under BENCH_STRICT=1 or a run had
        errors, else 0."""
        print()
        print(f"== {self.name}")
        for f in self.figures:
            v = f["value"]
            text = "-" if v is None else (f"{v:,.0f}" if isinstance(v, (int, float)) and abs(v) >= 100
                                          else f"{v:.3f}" if isinstance(v, float) else str(v))
            print(f"  {f['label']:<58} {text:>12} {f['unit']}")
        if self.bars:
            print("  bars:")
        for b in self.bars:
            v = "-" if b["value"] is None else (f"{b['value']:.3f}" if isinstance(b["value"], float)
                                                else str(b["value"]))
            print(f"    {'PASS' if b['passed'] else 'FAIL'}  {b['bar']}: {v} {b['op']} {b['limit']}")
        for n in self.notes:
            print(f"  note: {n}")
        for p in self.problems:
            print(f"  PROBLEM: {p}")
        print("  settings: " + ", ".join(f"{k}={v}" for k, v in self.settings.items()))
        strict = os.environ.get("BENCH_STRICT") == "1"
        failed_bars = [b for b in self.bars if not b["passed"]]
        result = {"bench": self.name, "settings": self.settings, "figures": self.figures,
                  "bars": self.bars, "problems": self.problems, "notes": self.notes,
                  "data": self.data}
        out = os.environ.get("BENCH_OUT")
        if out:
            with open(out, "w") as f:
                json.dump(result, f, indent=2)
                f.write("\n")
        if self.problems:
            print(f"bench: {self.name}: FAILED: runs had errors (see above)")
            return 1
        if failed_bars:
            print(f"bench: {self.name}: {len(failed_bars)} bar(s) missed"
                  + ("" if strict else " (BENCH_STRICT=1 makes that an error)"))
            return 1 if strict else 0
        return 0


def wrk_problems(label, result):
    """Errors wrk saw in one run, as report lines."""
    out = []
    if result.get("non_2xx"):
        out.append(f"{label}: {result['non_2xx']} non-2xx answers")
    if result.get("socket_errors"):
        out.append(f"{label}: {result['socket_errors']} socket errors "
                   f"({result['timeouts']} timeouts)")
    return out


def main(body):
    """Runs body() -> exit status; setup failures exit 2."""
    try:
        sys.exit(body())
    except SetupError as e:
        print(f"bench: error: {e}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        sys.exit(130)


def which(prog):
    if shutil.which(prog) is None:
        raise SetupError(f"{prog} is not installed")
