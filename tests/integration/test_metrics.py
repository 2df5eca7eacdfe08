"""The host's metrics (SPEC §8): one internal listener (metrics_listen,
served by stoa-jobs) answers for every pool of the host in Prometheus text
format, counted by route pattern, never by raw path; counters summed over a
pool's processes never go backwards when one is killed; promtool accepts
the output and the alert rules; a real Prometheus scrapes the stack; the
nginx access line and the pool's line of a request join on its id. The
gateway's workers count the tokens they check, their cache hits and misses
and their refusals by reason into the same scrape, and a killed nginx
worker takes none of its counts with it. `stoa-jobs --scrape-only` (a
gateway host's scrape) serves the gateway's file and stub_status without
ever connecting to Postgres.
"""

import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import unittest
import urllib.parse
import urllib.request
import uuid

from authlib import jwt_claims
from billinglib import WebhookSender
from harness import BIN_DIR, REPO, Client, StackTestCase, children_of, free_port, read_pid_file, wait_until
from test_gateway import Signer

PASSWORD = "Tq7#vLp2!xRz-9mW"
STRIPE_SECRET = "whsec_" + uuid.uuid4().hex
PROMTOOL = shutil.which("promtool")
PROMETHEUS = shutil.which("prometheus")
RULES = os.path.join(REPO, "docs", "alerts.rules.yml")
RULES_TEST = os.path.join(REPO, "tests", "integration", "data", "alerts_test.yml")


def parse_exposition(text):
    """{(name, ((label, value), ...)): float} of a text exposition; raises
    on a line that is neither a comment nor a sample."""
    samples = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        name_labels, _, value = line.rpartition(" ")
        labels = ()
        if "{" in name_labels:
            name, _, rest = name_labels.partition("{")
            assert rest.endswith("}"), line
            pairs = []
            body = rest[:-1]
            i = 0
            while i < len(body):
                eq = body.index("=", i)
                key = body[i:eq]
                assert body[eq + 1] == '"', line
                j = eq + 2
                val = []
                while body[j] != '"':
                    if body[j] == "\\":
                        j += 1
                        val.append({"n": "\n"}.get(body[j], body[j]))
                    else:
                        val.append(body[j])
                    j += 1
                pairs.append((key, "".join(val)))
                i = j + 1
                if i < len(body) and body[i] == ",":
                    i += 1
            labels = tuple(sorted(pairs))
        else:
            name = name_labels
        samples[(name, labels)] = float(value)
    return samples


def value(samples, name, **labels):
    want = set(labels.items())
    found = [v for (n, ls), v in samples.items() if n == name and want <= set(ls)]
    return sum(found) if found else None


GATEWAY_FAMILIES = ("stoa_gateway_verifications_total", "stoa_gateway_cache_total",
                    "stoa_gateway_refusals_total")


def gateway_counts(samples):
    """{(family, label value): count} of the gateway's series."""
    out = {}
    for (name, labels), v in samples.items():
        if name in GATEWAY_FAMILIES:
            d = dict(labels)
            assert d.get("pool") == "gateway", labels
            out[(name, d.get("result") or d.get("reason"))] = v
    return out


class MetricsTest(StackTestCase):
    stack_env = {"STOA_RATE_API": "100000r/s", "STOA_BURST_API": "100000",
                 "STOA_RATE_AUTH": "1000r/s", "STOA_BURST_AUTH": "1000",
                 "STOA_STRIPE_WEBHOOK_SECRET": STRIPE_SECRET}

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.metrics_addr = cls.stack._env["STOA_METRICS_LISTEN"]

    def scrape_text(self):
        with urllib.request.urlopen(f"http://{self.metrics_addr}/metrics", timeout=10) as r:
            self.assertEqual(r.status, 200)
            self.assertTrue(r.headers["Content-Type"].startswith("text/plain; version=0.0.4"))
            return r.read().decode()

    def scrape(self):
        return parse_exposition(self.scrape_text())

    def wait_metrics_up(self):
        def ready():
            try:
                return self.scrape_text()
            except OSError:
                return None
        self.assertTrue(wait_until(ready, 10)[0], "metrics_listen never answered")

    def login(self):
        c = self.stack.client
        email = f"metrics.{uuid.uuid4().hex[:12]}@example.com"
        self.assertEqual(c.request("POST", "/v1/auth/register", {
            "email": email, "password": PASSWORD, "name": "M"}).status, 201)
        r = c.request("POST", "/v1/auth/login", {"email": email, "password": PASSWORD})
        self.assertEqual(r.status, 200, repr(r))
        return r.json["access_token"]

    def scrape_when(self, done, timeout=5):
        """The first scrape (text, parsed) for which done(parsed) holds, or
        the last one after timeout. A pool counts a request once its answer
        is out (its duration covers the send), so a scrape right after the
        last answer can come a moment before the count."""
        last = None

        def attempt():
            nonlocal last
            text = self.scrape_text()
            last = (text, parse_exposition(text))
            return done(last[1])
        wait_until(attempt, timeout)
        return last

    def test_counts_by_route_pattern_and_status_class(self):
        self.wait_metrics_up()
        token = self.login()
        auth = {"Authorization": f"Bearer {token}"}
        before = self.scrape()
        route = dict(pool="auth", method="DELETE", route="/v1/auth/sessions/{id}")
        was_4xx = value(before, "stoa_http_requests_total", status="4xx", **route) or 0
        ids = [str(uuid.uuid4()) for _ in range(3)]
        for i in ids:
            r = self.stack.client.request("DELETE", f"/v1/auth/sessions/{i}", headers=auth)
            self.assertEqual(r.status, 404, repr(r))
        for _ in range(5):
            self.assertEqual(self.stack.client.request("GET", "/v1/auth/healthz").status, 200)
        hz = dict(pool="auth", method="GET", route="/v1/auth/healthz")
        want_hz = (value(before, "stoa_http_requests_total", status="2xx", **hz) or 0) + 5
        text, after = self.scrape_when(lambda m: (
            value(m, "stoa_http_requests_total", status="4xx", **route) == was_4xx + 3
            and (value(m, "stoa_http_requests_total", status="2xx", **hz) or 0) >= want_hz))
        self.assertEqual(value(after, "stoa_http_requests_total", status="4xx", **route),
                         was_4xx + 3)
        # The pattern labels the series; the ids of the paths never show.
        for i in ids:
            self.assertNotIn(i, text)
        self.assertGreaterEqual(value(after, "stoa_http_requests_total", status="2xx", **hz),
                                want_hz)
        # The histogram: the +Inf bucket is the count, the 5 s bucket holds
        # these quick answers, the 0.5 ms bucket is there.
        count = value(after, "stoa_http_request_duration_seconds_count", **hz)
        self.assertEqual(value(after, "stoa_http_request_duration_seconds_bucket", le="+Inf", **hz), count)
        self.assertEqual(value(after, "stoa_http_request_duration_seconds_bucket", le="5", **hz), count)
        self.assertIsNotNone(value(after, "stoa_http_request_duration_seconds_bucket", le="0.0005", **hz))
        self.assertGreater(value(after, "stoa_http_request_duration_seconds_sum", **hz), 0)
        self.assertEqual(value(after, "stoa_http_requests_in_flight", **hz), 0)
        # Every pool and the worker; nginx and the outbox figures.
        for pool in ("auth", "billing", "analytics", "admin", "jobs"):
            self.assertEqual(value(after, "stoa_pool_processes", pool=pool),
                             1 if pool == "jobs" else self.stack.pool_processes, pool)
        self.assertEqual(value(after, "stoa_nginx_up"), 1)
        self.assertGreater(value(after, "stoa_nginx_http_requests_total"), 0)
        self.assertEqual(value(after, "stoa_outbox_scrape_ok"), 1)
        self.assertIsNotNone(value(after, "stoa_outbox_jobs", kind="noop"))
        self.assertIsNotNone(value(after, "stoa_outbox_oldest_due_seconds", kind="noop"))
        self.assertIsNotNone(value(after, "stoa_job_runs_total", pool="jobs"))

    def test_counters_survive_a_killed_process(self):
        self.wait_metrics_up()
        for _ in range(20):
            self.assertEqual(self.stack.client.request("GET", "/v1/auth/healthz").status, 200)
        before = self.scrape()
        total = value(before, "stoa_http_requests_total", pool="auth")
        restarts = value(before, "stoa_pool_restarts_total", pool="auth")
        self.assertGreaterEqual(total, 20)
        children = self.stack.pool_children("auth")
        self.assertEqual(len(children), self.stack.pool_processes)
        os.kill(children[0], signal.SIGKILL)

        def replaced():
            now = self.stack.pool_children("auth")
            return len(now) == self.stack.pool_processes and children[0] not in now
        self.assertTrue(wait_until(replaced, 10)[0])
        # The new process folds the dead one's counts into the retired
        # ones as it starts: the sum never dips, at any scrape.
        deadline = time.monotonic() + 5
        seen_restart = False
        while time.monotonic() < deadline:
            s = self.scrape()
            self.assertGreaterEqual(value(s, "stoa_http_requests_total", pool="auth"), total)
            if value(s, "stoa_pool_restarts_total", pool="auth") >= restarts + 1 and \
                    value(s, "stoa_pool_processes", pool="auth") == self.stack.pool_processes:
                seen_restart = True
                break
            time.sleep(0.1)
        self.assertTrue(seen_restart, "the restart was not counted")
        for _ in range(4):
            self.assertEqual(self.stack.client.request("GET", "/v1/auth/healthz").status, 200)
        _, after = self.scrape_when(
            lambda m: (value(m, "stoa_http_requests_total", pool="auth") or 0) >= total + 4)
        self.assertGreaterEqual(value(after, "stoa_http_requests_total", pool="auth"), total + 4)

    def test_stripe_webhooks_and_their_lag(self):
        self.wait_metrics_up()
        before = self.scrape()
        got = lambda s, r: value(s, "stoa_stripe_webhooks_total", pool="billing", result=r) or 0
        lag_count = value(before, "stoa_stripe_webhook_lag_seconds_count", pool="billing") or 0
        lag_sum = value(before, "stoa_stripe_webhook_lag_seconds_sum", pool="billing") or 0
        hooks = WebhookSender(self.stack, STRIPE_SECRET)
        created = time.time() - 40
        r, event_id = hooks.send("customer.created", {"id": "cus_metrics", "object": "customer"},
                                 created=created)
        self.assertEqual(r.status, 200, repr(r))
        r, _ = hooks.send("customer.created", {"id": "cus_metrics", "object": "customer"},
                          created=created, event_id=event_id)
        self.assertEqual(r.status, 200, repr(r))
        self.assertEqual(hooks.post(b"{}", "t=1,v1=00").status, 400)
        _, after = self.scrape_when(
            lambda m: got(m, "received") >= got(before, "received") + 2)
        self.assertEqual(got(after, "received"), got(before, "received") + 2)
        self.assertEqual(got(after, "duplicate"), got(before, "duplicate") + 1)
        self.assertEqual(got(after, "failed"), got(before, "failed") + 1)
        self.assertEqual(value(after, "stoa_stripe_webhook_lag_seconds_count", pool="billing"),
                         lag_count + 1)
        self.assertGreaterEqual(value(after, "stoa_stripe_webhook_lag_seconds_sum", pool="billing"),
                                lag_sum + 39)
        self.assertEqual(value(after, "stoa_stripe_webhook_lag_seconds_bucket", pool="billing", le="30"),
                         value(before, "stoa_stripe_webhook_lag_seconds_bucket", pool="billing", le="30") or 0)

    def gateway_client(self):
        """A client of its own: one keep-alive connection, so one nginx
        worker (and one worker's cache) answers all its requests."""
        c = Client("127.0.0.1", self.stack.https_port, self.stack.path("tls", "cert.pem"))
        self.addCleanup(c.close)
        return c

    def expired_and_forged(self, token):
        """A token like token but expired an hour ago, signed with the
        stack's key; and token with another token's signature."""
        signer = Signer(self.stack.path("keys"))
        now = int(time.time())
        claims = dict(jwt_claims(token), iat=now - 4000, nbf=now - 4000, exp=now - 3600)
        expired = signer.token(claims)
        h, c, _ = token.split(".")
        other = signer.token(dict(claims, exp=now + 600)).split(".")[2]
        return expired, f"{h}.{c}.{other}"

    def test_gateway_counts_verifications_cache_and_refusals(self):
        self.wait_metrics_up()
        token = self.login()
        expired, forged = self.expired_and_forged(token)
        c = self.gateway_client()
        before = gateway_counts(self.scrape())
        # /v1/me is protected (api_gateway on): good, good again (the same
        # worker's cache), expired, forged, malformed, none, not Bearer.
        sent = [(f"Bearer {token}", 200), (f"Bearer {token}", 200),
                (f"Bearer {expired}", 401), (f"Bearer {forged}", 401),
                ("Bearer not-a-token", 401), (None, 401), ("Basic dXNlcjpwYXNz", 401)]
        for authorization, status in sent:
            r = c.request("GET", "/v1/me", headers={"Authorization": authorization})
            self.assertEqual(r.status, status, (authorization and authorization[:12], repr(r)))
        text = self.scrape_text()
        after = gateway_counts(parse_exposition(text))
        rise = {k: after[k] - before.get(k, 0) for k in after}
        v, ca, rf = GATEWAY_FAMILIES
        want = {(v, "ok"): 2, (v, "refused"): 4, (v, "error"): 0,
                (ca, "hit"): 1, (ca, "miss"): 4,
                (rf, "expired"): 1, (rf, "bad_signature"): 1, (rf, "malformed"): 1,
                (rf, "missing"): 1, (rf, "not_bearer"): 1}
        for k, n in want.items():
            self.assertEqual(rise.get(k), n, k)
        # Nothing else moved; the reasons are a fixed set; no token, path
        # or subject ever labels a series.
        for k, n in rise.items():
            if k not in want:
                self.assertEqual(n, 0, k)
        self.assertEqual({r for (f, r) in after if f == rf},
                         {"missing", "multiple", "not_bearer", "malformed_header", "malformed",
                          "too_long", "bad_alg", "unknown_kid", "bad_signature", "expired",
                          "not_yet_valid", "bad_issuer", "bad_audience", "missing_claim", "role"})
        for secret in (token, token.split(".")[2], "/v1/me"):
            self.assertNotIn(secret, "\n".join(l for l in text.splitlines()
                                               if l.startswith("stoa_gateway_")))
        self.assertEqual(value(parse_exposition(text), "stoa_pool_processes", pool="gateway"), 2)

    def nginx_workers(self):
        master = read_pid_file(self.stack.path("nginx", "nginx.pid"))
        self.assertTrue(master)
        return master, children_of(master)

    def test_gateway_counters_survive_a_killed_worker(self):
        self.wait_metrics_up()
        token = self.login()
        _, forged = self.expired_and_forged(token)
        # Counts in both workers: two connections, each kept by one worker
        # (which worker takes which is the kernel's choice).
        clients = [self.gateway_client() for _ in range(4)]
        for c in clients:
            for _ in range(3):
                self.assertEqual(c.request("GET", "/v1/me", headers={
                    "Authorization": f"Bearer {token}"}).status, 200)
            self.assertEqual(c.request("GET", "/v1/me", headers={
                "Authorization": f"Bearer {forged}"}).status, 401)
        start = gateway_counts(self.scrape())
        self.assertGreaterEqual(start[("stoa_gateway_verifications_total", "ok")], 12)
        restarts = value(self.scrape(), "stoa_pool_restarts_total", pool="gateway")
        master, workers = self.nginx_workers()
        self.assertEqual(len(workers), 2)
        floor = start
        for worker in workers:
            os.kill(worker, signal.SIGKILL)

            def replaced():
                now = children_of(master)
                return len(now) == 2 and worker not in now
            self.assertTrue(wait_until(replaced, 10)[0], "nginx did not replace its worker")
            # At no scrape does any gateway counter dip below what it was.
            deadline = time.monotonic() + 2
            while time.monotonic() < deadline:
                now = gateway_counts(self.scrape())
                for k, n in floor.items():
                    self.assertGreaterEqual(now.get(k, 0), n, k)
                floor = now
                time.sleep(0.1)
        s = self.scrape()
        # Each replacement folded its predecessor's slot and counted it.
        self.assertEqual(value(s, "stoa_pool_restarts_total", pool="gateway"), restarts + 2)
        self.assertEqual(value(s, "stoa_pool_processes", pool="gateway"), 2)
        after_kills = gateway_counts(s)
        for k, n in start.items():
            self.assertGreaterEqual(after_kills[k], n, k)
        self.assertEqual(after_kills[("stoa_gateway_verifications_total", "ok")],
                         start[("stoa_gateway_verifications_total", "ok")])
        self.assertEqual(after_kills[("stoa_gateway_refusals_total", "bad_signature")],
                         start[("stoa_gateway_refusals_total", "bad_signature")])
        # The new workers count on from there.
        c = self.gateway_client()
        for _ in range(3):
            self.assertEqual(c.request("GET", "/v1/me", headers={
                "Authorization": f"Bearer {token}"}).status, 200)
        self.assertEqual(gateway_counts(self.scrape())[("stoa_gateway_verifications_total", "ok")],
                         start[("stoa_gateway_verifications_total", "ok")] + 3)

    def test_gateway_counters_survive_a_reload(self):
        self.wait_metrics_up()
        c = self.gateway_client()
        for _ in range(5):
            self.assertEqual(c.request("GET", "/v1/me", headers={
                "Authorization": "Bearer not-a-token"}).status, 401)
        c.close()
        s = self.scrape()
        start = gateway_counts(s)
        restarts = value(s, "stoa_pool_restarts_total", pool="gateway")
        master, old = self.nginx_workers()
        subprocess.run(["nginx", "-p", self.stack.path("nginx") + "/", "-c",
                        self.stack.path("nginx", "nginx.conf"), "-s", "reload"],
                       check=True, capture_output=True, timeout=30)

        def reloaded():
            now = children_of(master)
            return len(now) == 2 and not set(old) & set(now)
        self.assertTrue(wait_until(reloaded, 15)[0], "the old workers did not make way")
        s = self.scrape()
        for k, n in start.items():
            self.assertGreaterEqual(gateway_counts(s)[k], n, k)
        # Workers a reload retires stop cleanly: no restart is counted.
        self.assertEqual(value(s, "stoa_pool_restarts_total", pool="gateway"), restarts)
        self.assertEqual(value(s, "stoa_pool_processes", pool="gateway"), 2)

    def test_not_on_the_public_port(self):
        r = self.stack.client.request("GET", "/metrics")
        self.assertEqual(r.status, 404)
        self.assertNotIn(b"stoa_http_requests_total", r.body)

    def test_promtool_accepts_the_exposition(self):
        self.assertTrue(PROMTOOL, "promtool is missing (scripts/deps.sh)")
        self.wait_metrics_up()
        self.stack.client.request("GET", "/v1/auth/healthz")
        self.stack.client.request("GET", "/v1/me", headers={"Authorization": "Bearer x"})
        text = self.scrape_text()
        # The gateway's families are in what promtool checks.
        for family in GATEWAY_FAMILIES:
            self.assertIn(f'{family}{{pool="gateway",', text)
        p = subprocess.run([PROMTOOL, "check", "metrics"], input=text,
                           capture_output=True, text=True, timeout=30)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)

    def test_scrape_only_serves_the_gateway_without_postgres(self):
        """A gateway host's scrape: its metrics_dir holds gateway.metrics
        alone, its database_url leads to a socket that takes connections
        but never answers (one attempt would show), and SIGTERM ends it."""
        self.assertTrue(PROMTOOL, "promtool is missing (scripts/deps.sh)")
        self.wait_metrics_up()
        token = self.login()
        c = self.gateway_client()
        for _ in range(3):
            self.assertEqual(c.request("GET", "/v1/me", headers={
                "Authorization": f"Bearer {token}"}).status, 200)
        verified = value(self.scrape(), "stoa_gateway_verifications_total", result="ok")
        self.assertGreaterEqual(verified, 3)
        work = tempfile.mkdtemp(prefix="stoa-scrape-only-")
        self.addCleanup(shutil.rmtree, work, True)
        metrics_dir = os.path.join(work, "metrics")
        os.mkdir(metrics_dir)
        shutil.copy(self.stack.path("metrics", "gateway.metrics"), metrics_dir)
        pg = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.addCleanup(pg.close)
        pg.bind(os.path.join(work, ".s.PGSQL.5432"))
        pg.listen(16)
        pg.setblocking(False)
        addr = f"127.0.0.1:{free_port()}"
        conf = os.path.join(work, "stoa.conf")
        with open(conf, "w") as f:
            f.write(f"database_url = host={work} port=5432 dbname=stoa connect_timeout=1\n"
                    f"metrics_listen = {addr}\nmetrics_dir = {metrics_dir}\n"
                    f"realtime_socket = {self.stack.path('sock', 'realtime.sock')}\n"
                    "log_dir = -\n")
        log = open(os.path.join(work, "scrape.log"), "w+")
        self.addCleanup(log.close)
        proc = subprocess.Popen([os.path.join(BIN_DIR, "stoa-jobs"), "--scrape-only", "--config", conf],
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)

        def stop():
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        self.addCleanup(stop)

        def scraped():
            try:
                with urllib.request.urlopen(f"http://{addr}/metrics", timeout=10) as r:
                    return r.read().decode()
            except OSError:
                return None
        text, _ = wait_until(scraped, 10)
        log.seek(0)
        self.assertTrue(text, "stoa-jobs --scrape-only never answered: " + log.read())
        samples = parse_exposition(text)
        self.assertGreaterEqual(value(samples, "stoa_gateway_verifications_total", result="ok"), 3)
        for family in GATEWAY_FAMILIES:
            self.assertIn(f'{family}{{pool="gateway",', text)
        self.assertEqual(value(samples, "stoa_nginx_up"), 1)
        self.assertNotIn("stoa_outbox_", text)
        self.assertEqual({dict(ls).get("pool") for (n, ls) in samples if dict(ls).get("pool")},
                         {"gateway"})
        p = subprocess.run([PROMTOOL, "check", "metrics"], input=text,
                           capture_output=True, text=True, timeout=30)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        # Not one connection to the database; no file of its own counted.
        with self.assertRaises(BlockingIOError):
            pg.accept()
        self.assertEqual(os.listdir(metrics_dir), ["gateway.metrics"])
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        self.assertEqual(proc.wait(5), 0)
        self.assertLess(time.monotonic() - started, 3)

    def test_a_real_prometheus_scrapes_the_host(self):
        self.assertTrue(PROMETHEUS, "prometheus is missing (scripts/deps.sh)")
        self.wait_metrics_up()
        work = tempfile.mkdtemp(prefix="stoa-prom-")
        self.addCleanup(shutil.rmtree, work, True)
        port = free_port()
        with open(os.path.join(work, "prometheus.yml"), "w") as f:
            f.write("global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n"
                    "scrape_configs:\n  - job_name: stoa\n    static_configs:\n"
                    f"      - targets: ['{self.metrics_addr}']\n")
        log = open(os.path.join(work, "prometheus.log"), "w")
        self.addCleanup(log.close)
        proc = subprocess.Popen(
            [PROMETHEUS, f"--config.file={work}/prometheus.yml",
             f"--storage.tsdb.path={work}/data", f"--web.listen-address=127.0.0.1:{port}"],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)

        def stop():
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.addCleanup(stop)

        def query(expr):
            url = f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
            try:
                with urllib.request.urlopen(url, timeout=5) as r:
                    return json.load(r)["data"]["result"]
            except OSError:
                return None
        q = 'stoa_http_requests_total{pool="auth",route="/v1/auth/healthz",status="2xx"}'

        def up_and_counted():
            up = query('up{job="stoa"} == 1')
            got = query(q)
            return got if up and got else None
        first = wait_until(up_and_counted, 30, interval=0.5)[0]
        self.assertTrue(first, "Prometheus never saw up == 1 with the counter")
        start = sum(float(s["value"][1]) for s in first)
        for _ in range(10):
            self.assertEqual(self.stack.client.request("GET", "/v1/auth/healthz").status, 200)

        def risen():
            got = query(q)
            return got and sum(float(s["value"][1]) for s in got) >= start + 10
        self.assertTrue(wait_until(risen, 15, interval=0.5)[0], "the counter did not rise in Prometheus")

    def test_access_lines_join_on_the_request_id(self):
        rid = "metrics-join-" + uuid.uuid4().hex[:12]
        r = self.stack.client.request("GET", "/v1/auth/healthz", headers={"X-Request-Id": rid})
        self.assertEqual(r.status, 200)

        def line_in(name):
            try:
                with open(self.stack.path("log", name)) as f:
                    for line in f:
                        if rid in line:
                            return json.loads(line)
            except FileNotFoundError:
                return None
            return None
        pool_line = wait_until(lambda: line_in("stoa-auth.log"), 5)[0]
        nginx_line = wait_until(lambda: line_in("nginx-access.log"), 5)[0]
        self.assertTrue(pool_line and nginx_line)
        self.assertEqual(pool_line["request_id"], rid)
        self.assertEqual(nginx_line["request_id"], rid)
        self.assertEqual(pool_line["route"], "/v1/auth/healthz")
        self.assertIn("latency_us", pool_line)
        self.assertEqual(nginx_line["uri"], "/v1/auth/healthz")


class AlertRulesTest(unittest.TestCase):
    def setUp(self):
        # Not a skip: scripts/deps.sh installs Debian's prometheus package.
        self.assertTrue(PROMTOOL, "promtool is missing (scripts/deps.sh)")

    def test_rules_check(self):
        p = subprocess.run([PROMTOOL, "check", "rules", RULES], capture_output=True,
                           text=True, timeout=30)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        for alert in ("StoaHighErrorRatio", "StoaHighLatencyP99", "StoaOutboxStuck",
                      "StoaWebhookEndpointFailing", "StoaStripeWebhookLag", "StoaPoolRestarts",
                      "StoaGatewayRefusalSurge"):
            self.assertIn(f"alert: {alert}", open(RULES).read())

    def test_rules_unit_tests(self):
        p = subprocess.run([PROMTOOL, "test", "rules", RULES_TEST], capture_output=True,
                           text=True, timeout=30, cwd=os.path.dirname(RULES_TEST))
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)


if __name__ == "__main__":
    unittest.main()
