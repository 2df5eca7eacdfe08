"""End-to-end checks of the foundation: TLS edge, routing, health, the error
and body contract (SPEC §3), request ids, rate limiting, and the stack's
behaviour when Postgres, Redis or a pool process goes away (SPEC §9).

Run from the repository root:
    python3 -m unittest discover -s tests/integration -p 'test_*.py' -v
"""

import json
import os
import re
import signal
import socket
import subprocess
import threading
import time
import unittest
import uuid

from harness import (BIN_DIR, POOLS, SANE_REQUEST_ID, Client, StackTestCase,
                     fastcgi_get, plain_http_request, proc_stat, wait_until)

GOOD_PASSWORD = "Tq7#vLp2!xRz-9mW"
ONE_MIB = 1024 * 1024


def nested_arrays(depth):
    return "[" * depth + "]" * depth


def register_doc(**extra):
    doc = {"email": "ann.lee@example.com", "password": GOOD_PASSWORD, "name": "Ann Lee"}
    doc.update(extra)
    return doc


class HttpContractTest(StackTestCase):
    """Routing, health, headers, the JSON error and body contract and
    request ids, on one stack. The strict auth rate limit is opened up here
    because these tests call POST /v1/auth/register many times in a row;
    ResilienceTest checks the limit itself with the default settings."""

    stack_env = {"STOA_RATE_AUTH": "1000r/s", "STOA_BURST_AUTH": "1000"}

    # --- 1. health, TLS, redirect, security headers ------------------------

    def test_01_every_pool_is_healthy_and_ready(self):
        for pool in POOLS:
            with self.subTest(pool=pool, probe="healthz"):
                doc = self.assert_ok_json(self.request("GET", f"/v1/{pool}/healthz"))
                self.assertEqual(doc.get("status"), "ok")
            with self.subTest(pool=pool, probe="readyz"):
                doc = self.assert_ok_json(self.request("GET", f"/v1/{pool}/readyz"))
                self.assertEqual(doc.get("status"), "ready")

    def test_02_nginx_answers_healthz_itself(self):
        doc = self.assert_ok_json(self.request("GET", "/healthz"))
        self.assertEqual(doc, {"status": "ok"})

    def test_03_tls_is_modern_and_verified(self):
        # The client verifies the stack's certificate for 127.0.0.1 (IP SAN);
        # reaching this line at all proves it.
        self.assertIn(self.stack.client.tls_version(), ("TLSv1.2", "TLSv1.3"))

    def test_04_http_port_redirects_to_https(self):
        port = self.stack.http_port
        resp = plain_http_request(port, "GET", "/v1/auth/healthz?x=1",
                                  headers={"Host": f"127.0.0.1:{port}"})
        self.assertEqual(resp.status, 301, repr(resp))
        self.assertEqual(resp.header("Location"),
                         f"https://127.0.0.1:{self.stack.https_port}/v1/auth/healthz?x=1")

    def assert_security_headers(self, resp):
        hsts = resp.header("Strict-Transport-Security", "")
        m = re.search(r"max-age=(\d+)", hsts)
        self.assertTrue(m, f"HSTS missing on {resp!r}")
        self.assertGreaterEqual(int(m.group(1)), 31536000, hsts)
        self.assertIn("includesubdomains", hsts.lower())
        self.assertEqual(resp.header("X-Content-Type-Options"), "nosniff", repr(resp))
        self.assertEqual(resp.header("Referrer-Policy"), "no-referrer", repr(resp))
        csp = resp.header("Content-Security-Policy", "")
        self.assertIn("default-src 'none'", csp, repr(resp))
        self.assertIn("frame-ancestors 'none'", csp, repr(resp))

    def test_05_security_headers_on_answers_and_errors(self):
        cases = [
            ("pool answer", "/v1/auth/healthz", 200),
            ("nginx answer", "/healthz", 200),
            ("nginx error", "/nope", 404),
            ("pool error", "/.well-known/nope", 404),
        ]
        for label, path, status in cases:
            with self.subTest(label):
                resp = self.request("GET", path)
                self.assertEqual(resp.status, status, repr(resp))
                self.assert_security_headers(resp)

    # --- 2. 404 and 405 ------------------------------------------------------

    def test_06_unknown_paths_are_json_404(self):
        # Outside every route nginx answers; a public pool path is the
        # pool's own 404.
        for path in ("/nope", "/v1/meow", "/.well-known/nope"):
            with self.subTest(path=path):
                self.assert_error(self.request("GET", path), 404, "not_found")
        # Under a pool's protected prefix the gateway refuses anonymous
        # callers before any route is revealed; with a token the pool
        # answers its own 404.
        email = "unknown-paths-" + uuid.uuid4().hex[:8] + "@example.com"
        password = "correct horse battery staple"
        reg = self.request("POST", "/v1/auth/register",
                           {"email": email, "password": password, "name": "U"})
        self.assertEqual(reg.status, 201, repr(reg))
        login = self.request("POST", "/v1/auth/login",
                             {"email": email, "password": password})
        self.assertEqual(login.status, 200, repr(login))
        bearer = {"Authorization": "Bearer " + login.json["access_token"]}
        for path in ("/v1/auth/nope", "/v1/billing/nope", "/v1/analytics/nope"):
            with self.subTest(path=path, token=False):
                self.assert_error(self.request("GET", path), 401, "unauthenticated")
            with self.subTest(path=path, token=True):
                self.assert_error(self.request("GET", path, headers=bearer), 404,
                                  "not_found")
        with self.subTest(path="/v1/admin/nope", role="client"):
            self.assert_error(self.request("GET", "/v1/admin/nope", headers=bearer),
                              403, "forbidden")

    def test_07_wrong_method_is_json_405_with_allow(self):
        resp = self.request("DELETE", "/v1/auth/healthz")
        self.assert_error(resp, 405, "method_not_allowed")
        allow = [m.strip().upper() for m in resp.header("Allow", "").split(",")]
        self.assertIn("GET", allow, repr(resp))
        self.assertNotIn("DELETE", allow, repr(resp))

    # --- 3. body contract on POST /v1/auth/register -----------------------------

    def register(self, body, content_type="application/json"):
        headers = {"Content-Type": content_type} if content_type else {}
        if isinstance(body, (dict, list)):
            body = json.dumps(body)
        return self.request("POST", "/v1/auth/register", body=body, headers=headers, raw=True)

    def test_10_malformed_json_is_invalid_json(self):
        for body in ('{"email":', "{'email': 'a'}", '{"email":"a@b.example",}', "{} {}",
                     "nul", b'{"email":"\xff\xfe"}'):
            with self.subTest(body=body):
                self.assert_error(self.register(body), 400, "invalid_json")

    def test_11_nesting_limit_is_32(self):
        # The document is the outer object plus the arrays of "extra".
        too_deep = json.dumps(register_doc())[:-1] + ', "extra": ' + nested_arrays(32) + "}"
        self.assert_error(self.register(too_deep), 400, "invalid_json")
        deepest_allowed = json.dumps(register_doc())[:-1] + ', "extra": ' + nested_arrays(31) + "}"
        details = self.assert_error(self.register(deepest_allowed), 400, "invalid_request")
        self.assertIn("extra", details.get("fields", {}), details)
        # A hostile depth is refused as well, not a crash.
        self.assert_error(self.register(nested_arrays(100000)), 400, "invalid_json")
        self.assert_ok_json(self.request("GET", "/v1/auth/healthz"))

    def test_12_json_content_type_is_required(self):
        body = json.dumps(register_doc())
        self.assert_error(self.register(body, "text/plain"), 415, "unsupported_media_type")
        self.assert_error(self.register(body, "application/jsonp"), 415, "unsupported_media_type")
        self.assert_error(self.register(body, None), 415, "unsupported_media_type")
        # Parameters are fine: this gets past the media type check.
        details = self.assert_error(self.register({}, "application/json; charset=utf-8"),
                                    400, "invalid_request")
        self.assertIn("email", details.get("fields", {}))

    def test_13_body_size_limit_is_1_mib(self):
        # A long unknown field: whatever gets past the size check is refused
        # by validation, so no account is created.
        head = json.dumps(register_doc())[:-1].encode() + b', "padding": "'
        tail = b'"}'
        too_big = head + b"a" * (ONE_MIB + 1 - len(head) - len(tail)) + tail
        self.assertEqual(len(too_big), ONE_MIB + 1)
        self.assert_error(self.register(too_big), 413, "payload_too_large")
        # Exactly 1 MiB is allowed through to validation.
        just_fits = head + b"a" * (ONE_MIB - len(head) - len(tail)) + tail
        self.assertEqual(len(just_fits), ONE_MIB)
        details = self.assert_error(self.register(just_fits), 400, "invalid_request")
        self.assertIn("padding", details.get("fields", {}))

    def test_13b_body_size_limit_is_json_over_http2(self):
        """nginx's own 413 page is JSON on HTTP/2 too (curl speaks h2; the
        stdlib client only HTTP/1.1), with a declared length and streamed."""
        url = f"https://127.0.0.1:{self.stack.https_port}/v1/auth/register"
        body = b"a" * (ONE_MIB + 1)
        for label, extra in (("with Content-Length", ["--data-binary", "@-"]),
                             ("streamed", ["-T", "-", "-X", "POST"])):
            with self.subTest(label):
                out = subprocess.run(
                    ["curl", "-s", "--http2", "--cacert", self.stack.path("tls", "cert.pem"),
                     "-H", "Content-Type: application/json", "-H", "X-Request-Id: h2-413",
                     "-w", "\n%{http_code} %{http_version}", *extra, url],
                    input=body, capture_output=True, timeout=30, check=True).stdout.decode()
                payload, _, status = out.rpartition("\n")
                self.assertEqual(status, "413 2", out[-300:])
                doc = json.loads(payload)
                self.assertEqual(doc["error"]["code"], "payload_too_large", doc)
                self.assertEqual(doc["request_id"], "h2-413", doc)

    def test_14_validation_errors_name_each_field(self):
        with self.subTest("empty object"):
            fields = self.assert_error(self.register({}), 400, "invalid_request").get("fields")
            self.assertIsInstance(fields, dict)
            self.assertLessEqual({"email", "password", "name"}, set(fields), fields)
            for name in ("email", "password", "name"):
                self.assertIsInstance(fields[name], str)
                self.assertRegex(fields[name], r"^[a-z0-9_]+$")
        with self.subTest("array body"):
            self.assert_error(self.register([register_doc()]), 400, "invalid_request")
        with self.subTest("email of the wrong type"):
            fields = self.assert_error(self.register(register_doc(email=1)),
                                       400, "invalid_request").get("fields")
            self.assertEqual(set(fields), {"email"}, fields)
        with self.subTest("unknown field"):
            fields = self.assert_error(self.register(register_doc(nickname="annie")),
                                       400, "invalid_request").get("fields")
            self.assertIn("nickname", fields)
            self.assertNotIn("email", fields)
        with self.subTest("short password"):
            fields = self.assert_error(self.register(register_doc(password="short")),
                                       400, "invalid_request").get("fields")
            self.assertEqual(fields.get("password"), "too_short", fields)

    # --- 4. X-Request-Id ---------------------------------------------------

    def test_20_request_id_generated_when_absent(self):
        seen = set()
        for path in ("/.well-known/nope", "/.well-known/nope", "/nope"):
            resp = self.request("GET", path)
            self.assert_error(resp, 404, "not_found")
            seen.add(resp.header("X-Request-Id"))
        self.assertEqual(len(seen), 3, f"generated ids must differ: {seen}")
        self.assert_request_id(self.request("GET", "/v1/auth/healthz"))
        self.assert_request_id(self.request("GET", "/healthz"))

    def test_21_sane_request_id_is_echoed(self):
        for rid in ("abc-123.XYZ_9", "r" * 128):
            hdr = {"X-Request-Id": rid}
            with self.subTest(rid=rid, where="pool answer"):
                resp = self.request("GET", "/v1/auth/healthz", headers=hdr)
                self.assertEqual(resp.status, 200, repr(resp))
                self.assertEqual(self.assert_request_id(resp), rid)
            with self.subTest(rid=rid, where="pool error"):
                resp = self.request("GET", "/.well-known/nope", headers=hdr)
                self.assert_error(resp, 404, "not_found")
                self.assertEqual(resp.json["request_id"], rid)
            with self.subTest(rid=rid, where="nginx error"):
                resp = self.request("GET", "/nope", headers=hdr)
                self.assert_error(resp, 404, "not_found")
                self.assertEqual(resp.json["request_id"], rid)

    def test_22_insane_request_id_is_replaced(self):
        for rid in ("abc def", "a" * 200, "<script>", "r" * 129, "a/b", "id\x01"):
            for path in ("/.well-known/nope", "/nope"):
                with self.subTest(rid=rid, path=path):
                    resp = self.request("GET", path, headers={"X-Request-Id": rid})
                    self.assert_error(resp, 404, "not_found")
                    got = resp.header("X-Request-Id")
                    self.assertNotEqual(got, rid)
                    self.assertRegex(got, SANE_REQUEST_ID)

    def test_23_request_id_reaches_the_pool_log(self):
        """SPEC §3: logs carry the request id, for answers and errors alike."""
        log_dir = self.stack.path("log")
        sent = {}
        for path, status in (("/v1/auth/healthz", 200), ("/.well-known/nope", 404)):
            rid = "it-log-" + uuid.uuid4().hex
            resp = self.request("GET", path, headers={"X-Request-Id": rid})
            self.assertEqual(resp.status, status, repr(resp))
            sent[rid] = path

        def find_lines():
            found = {}
            for name in sorted(os.listdir(log_dir)):
                if not (name.startswith("stoa-auth") and name.endswith(".log")):
                    continue
                with open(os.path.join(log_dir, name), encoding="utf-8", errors="replace") as f:
                    for line in f:
                        for rid in sent:
                            if rid in line:
                                found[rid] = line
            return found

        # The pools write their log line after answering.
        wait_until(lambda: len(find_lines()) == len(sent), 3.0, interval=0.1)
        found = find_lines()
        for rid, path in sent.items():
            with self.subTest(path=path):
                self.assertIn(rid, found, f"request id {rid} of GET {path} not in "
                              f"{log_dir}/stoa-auth*.log; its last lines:\n" + self.auth_log_tail())
                entry = json.loads(found[rid])
                self.assertEqual(entry.get("request_id"), rid, entry)


    def auth_log_tail(self, lines=4):
        text = ""
        log_dir = self.stack.path("log")
        for name in sorted(os.listdir(log_dir)):
            if name.startswith("stoa-auth") and name.endswith(".log"):
                with open(os.path.join(log_dir, name), encoding="utf-8", errors="replace") as f:
                    text += "".join(f.readlines()[-lines:])
        return text


class ResilienceTest(StackTestCase):
    """What happens when a store or a process goes away, clean shutdown, and
    the strict rate limit (last: it uses up this client's allowance)."""

    stack_env = {"STOA_RATE_AUTH": "2r/s", "STOA_BURST_AUTH": "10"}

    def supervision(self):
        """{pool: (supervisor pid, [child pids])}"""
        return {pool: (self.stack.pool_pid(pool), self.stack.pool_children(pool))
                for pool in POOLS}

    def assert_pools_whole(self, before):
        after = self.supervision()
        self.assertEqual(after, before, "pool processes changed (crashed or respawned)")

    def assert_readyz_unavailable(self, times=5):
        for i in range(times):
            for pool in (POOLS if i == 0 else ("auth",)):
                resp = self.request("GET", f"/v1/{pool}/readyz")
                self.assert_error(resp, 503, "unavailable")
                self.assertLess(resp.elapsed, 1.0, f"/v1/{pool}/readyz took {resp.elapsed:.2f}s")
        for pool in POOLS:
            resp = self.request("GET", f"/v1/{pool}/healthz")
            self.assertEqual(resp.status, 200, f"healthz must not depend on the stores: {resp!r}")

    def wait_ready(self, timeout):
        def ready():
            return all(self.request("GET", f"/v1/{pool}/readyz").status == 200 for pool in POOLS)
        ok, elapsed = wait_until(ready, timeout, interval=0.1)
        return ok, elapsed

    # --- 9. clean exit on SIGTERM --------------------------------------------

    def test_01_programs_exit_zero_on_sigterm(self):
        """Each pool binary serves a FastCGI request on the socket it is given
        as fd 0, then exits 0 on SIGTERM while blocked in accept; the jobs
        worker exits 0 on SIGTERM too."""
        conf = self.stack.conf_path()
        for pool in POOLS:
            with self.subTest(pool=pool):
                sock_path = self.stack.path("sock", f"direct-{pool}.sock")
                listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                listener.bind(sock_path)
                listener.listen(16)
                with open(self.stack.path("log", f"direct-{pool}.stderr"), "wb") as err:
                    proc = subprocess.Popen([os.path.join(BIN_DIR, f"stoa-{pool}"),
                                             "--config", conf],
                                            stdin=listener.fileno(), stdout=err, stderr=err,
                                            env=self.stack._env, cwd=self.stack.run)
                listener.close()
                try:
                    status, head, body = fastcgi_get(sock_path, f"/v1/{pool}/healthz", timeout=10)
                    self.assertEqual(status, 200, f"{head}\n{body!r}")
                    self.assertEqual(json.loads(body).get("status"), "ok")
                    time.sleep(0.1)  # back in accept()
                    proc.send_signal(signal.SIGTERM)
                    rc = proc.wait(timeout=10)
                    self.assertEqual(rc, 0, f"stoa-{pool} exit status on SIGTERM")
                finally:
                    if proc.poll() is None:
                        proc.kill()
                        proc.wait()
                    os.unlink(sock_path)
        with self.subTest(program="stoa-jobs"):
            with open(self.stack.path("log", "direct-jobs.stderr"), "wb") as err:
                proc = subprocess.Popen([os.path.join(BIN_DIR, "stoa-jobs"), "--config", conf],
                                        stdin=subprocess.DEVNULL, stdout=err, stderr=err,
                                        env=self.stack._env, cwd=self.stack.run)
            try:
                time.sleep(1.0)
                self.assertIsNone(proc.poll(), "stoa-jobs must keep running until told to stop")
                proc.send_signal(signal.SIGTERM)
                self.assertEqual(proc.wait(timeout=10), 0, "stoa-jobs exit status on SIGTERM")
            finally:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()

    # --- 6. Postgres outage --------------------------------------------------

    def test_02_postgres_outage_gives_503_then_recovers(self):
        ok, _ = self.wait_ready(5.0)
        self.assertTrue(ok, "stack not ready before the outage")
        before = self.supervision()
        for pool, (supervisor, children) in before.items():
            self.assertTrue(supervisor and children, f"{pool}: no supervisor or children")
        stopped = self.stack.postgres_stop()
        self.assertEqual(stopped.returncode, 0, stopped.stderr)
        try:
            self.assertFalse(self.stack.postgres_running())
            self.assert_readyz_unavailable()
        finally:
            if not self.stack.postgres_running():
                started = self.stack.postgres_start()
                self.assertEqual(started.returncode, 0, started.stderr)
        ok, elapsed = self.wait_ready(3.0)
        self.assertTrue(ok, f"readyz not 200 within 3 s of Postgres' return ({elapsed:.2f}s)")
        self.assert_pools_whole(before)

    # --- 7. Redis outage -----------------------------------------------------

    def test_03_redis_outage_gives_503_then_recovers(self):
        ok, _ = self.wait_ready(5.0)
        self.assertTrue(ok, "stack not ready before the outage")
        before = self.supervision()
        self.stack.redis_stop()
        gone, _ = wait_until(lambda: not self.stack.redis_running(), 5.0, interval=0.05)
        try:
            self.assertTrue(gone, "redis did not stop")
            self.assert_readyz_unavailable()
        finally:
            if not self.stack.redis_running():
                started = self.stack.redis_start()
                self.assertEqual(started.returncode, 0, started.stderr)
                wait_until(self.stack.redis_running, 5.0, interval=0.05)
        ok, elapsed = self.wait_ready(3.0)
        self.assertTrue(ok, f"readyz not 200 within 3 s of Redis' return ({elapsed:.2f}s)")
        self.assert_pools_whole(before)

    # --- 8. kill -9 of a pool process ----------------------------------------

    def test_04_killed_pool_process_is_replaced_within_1s(self):
        before = self.stack.pool_children("auth")
        self.assertEqual(len(before), self.pool_processes, f"auth children: {before}")

        # Light background load on its own connection.
        stop = threading.Event()
        load = []

        def background():
            client = Client("127.0.0.1", self.stack.https_port, self.stack.path("tls", "cert.pem"))
            try:
                while not stop.is_set():
                    try:
                        resp = client.request("GET", "/v1/auth/healthz")
                        load.append((resp.status, resp.json is not None))
                    except OSError as e:
                        load.append((repr(e), False))
                    time.sleep(0.02)
            finally:
                client.close()

        worker = threading.Thread(target=background, daemon=True)
        worker.start()
        try:
            time.sleep(0.3)
            victim = before[0]
            os.kill(victim, signal.SIGKILL)

            def replaced():
                now = self.stack.pool_children("auth")
                fresh = set(now) - set(before)
                return now if len(now) == len(before) and victim not in now and fresh else None

            now, elapsed = wait_until(replaced, 1.0, interval=0.01)
            self.assertTrue(now, f"auth pool not whole {elapsed:.2f}s after kill -9 of {victim}: "
                                 f"children {self.stack.pool_children('auth')}, victim state "
                                 f"{proc_stat(victim)}, load average {os.getloadavg()}")
            self.assertLessEqual(elapsed, 1.0)
            time.sleep(0.3)
        finally:
            stop.set()
            worker.join(10)
        self.assertTrue(load, "no background requests ran")
        self.assertTrue(all(is_json for _, is_json in load), f"non-JSON answers under load: {load}")

        statuses = [self.request("GET", "/v1/auth/healthz").status for _ in range(50)]
        self.assertEqual(statuses, [200] * 50)
        self.assertEqual(len(self.stack.pool_children("auth")), len(before))

    # --- 5. rate limit (last: it spends this client's allowance) ----------------

    def test_99_auth_burst_is_rate_limited(self):
        answers = []
        for i in range(30):
            body = {"email": f"burst{i}@example.com", "password": GOOD_PASSWORD}
            answers.append(self.request("POST", "/v1/auth/login", body=body))
        limited = [r for r in answers if r.status == 429]
        for resp in answers:
            self.assertIsNotNone(resp.json, f"non-JSON answer: {resp!r}")
        rate_limited = [r for r in limited
                        if isinstance(r.json.get("error"), dict)
                        and r.json["error"].get("code") == "rate_limited"]
        self.assertTrue(rate_limited, f"no 429 rate_limited among {[r.status for r in answers]}")
        for resp in rate_limited:
            self.assert_error(resp, 429, "rate_limited")
            retry_after = resp.header("Retry-After")
            self.assertIsNotNone(retry_after, repr(resp))
            self.assertRegex(retry_after, r"^\d+$")
        for resp in limited:
            self.assertIsNotNone(resp.header("Retry-After"), f"429 without Retry-After: {resp!r}")


if __name__ == "__main__":
    unittest.main()
