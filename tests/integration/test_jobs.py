"""End-to-end checks of the jobs worker (SPEC §1, §8): the transactional
outbox, mail (.eml files and real SMTP), retries with backoff, dead jobs,
crash safety, several workers side by side, the hourly schedule, signed
outbound webhooks with their admin API, and the SSRF guard at delivery.

All of it runs on one stack. Where a scenario needs the worker configured
otherwise (mail to an SMTP server, another webhook allow-list), the stack's
worker is stopped and one started with STOA_<KEY> overrides stands in for it
until the test ends. Rows are written with psql where no public route makes
them; registration (POST /v1/auth/register) is the public route that
enqueues both a mail and a `user.created` event.

The admin API goes through the nginx gateway, which turns bearer tokens into
identity. Those tests run only when the gateway is wired (probed at class
setup: admin login, then GET /v1/admin/webhooks answers 200); the same
checks also run straight against the admin pool over FastCGI, with the
identity params the gateway would set.

Run from the repository root:
    python3 -m unittest discover -s tests/integration -p 'test_jobs.py' -v
"""

import base64
import datetime
import email.policy
import json
import os
import re
import signal
import time
import unittest
import uuid
from email.parser import BytesParser

from harness import StackTestCase, free_port, pid_alive, wait_until
from jobslib import (Db, PoolProcess, Receiver, SmtpSink, Worker, fastcgi_request, log_lines,
                     new_webhook_secret, restart_stack_worker, stack_worker_pid,
                     stop_stack_worker, webhook_signature_valid)

GOOD_PASSWORD = "Tq7#vLp2!xRz-9mW"
UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
RFC3339_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")
WEBHOOKS = "/v1/admin/webhooks"


def tag():
    return uuid.uuid4().hex[:10]


def fresh_email():
    return f"jobs-{tag()}@example.com"


def webhook_event(event_type, **data):
    return {"id": f"evt_{uuid.uuid4()}", "type": event_type, "created": int(time.time()),
            "data": data}


# --- the admin API, through the gateway or straight to the pool -----------

class GatewayAdmin:
    """Admin routes over HTTPS with bearer tokens (who: admin, client or
    None for no token)."""

    via = "gateway"

    def __init__(self, stack, tokens):
        self.stack = stack
        self.tokens = tokens

    def call(self, method, path, body=None, who="admin", headers=None, raw=False):
        hdrs = dict(headers or {})
        if who is not None:
            hdrs["Authorization"] = "Bearer " + self.tokens[who]
        return self.stack.client.request(method, path, body=body, headers=hdrs, raw=raw)


class PoolAdmin:
    """Admin routes as FastCGI requests straight to a stoa-admin process,
    with the identity params the gateway sets for a verified token (who:
    admin, client or None for no identity)."""

    via = "pool"

    def __init__(self, sock_path, user_ids):
        self.sock_path = sock_path
        self.user_ids = user_ids

    def call(self, method, path, body=None, who="admin", headers=None, raw=False):
        headers = dict(headers or {})
        ctype = headers.get("Content-Type")
        if body is not None and not raw:
            body = json.dumps(body)
            ctype = "application/json"
        params = {}
        if who is not None:
            params.update({"GATEWAY_SUB": self.user_ids[who], "GATEWAY_ROLE": who,
                           "GATEWAY_JTI": str(uuid.uuid4()),
                           "GATEWAY_EXP": str(int(time.time()) + 900)})
        if "Idempotency-Key" in headers:
            params["HTTP_IDEMPOTENCY_KEY"] = headers["Idempotency-Key"]
        return fastcgi_request(self.sock_path, method, path,
                               body=body or b"", content_type=ctype, params=params)


class JobsTest(StackTestCase):
    """One stack for every scenario; each test leaves the stack's own worker
    running and no webhook endpoint live, whatever happens."""

    # The worker looks for due retries and expired leases at this interval
    # (new rows wake it at once through NOTIFY): 1 s keeps the retry tests
    # short without changing what they show.
    stack_env = {"STOA_RATE_AUTH": "1000r/s", "STOA_BURST_AUTH": "1000",
                 "STOA_JOBS_POLL_INTERVAL_MS": "1000"}

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.db = Db(cls.stack)
        cls.gateway_enabled, cls.gateway_reason, cls.admin_token = cls._probe_gateway()

    @classmethod
    def _probe_gateway(cls):
        """(enabled, why not, admin access token)."""
        with open(cls.stack.path("admin-password")) as f:
            password = f.read().strip()
        login = cls.stack.client.request("POST", "/v1/auth/login",
                                         {"email": "admin@localhost", "password": password})
        token = (login.json or {}).get("access_token") if login.status == 200 else None
        if not token:
            return False, f"admin@localhost cannot log in: {login.status} {login.body[:200]!r}", None
        listing = cls.stack.client.request("GET", WEBHOOKS,
                                           headers={"Authorization": "Bearer " + token})
        if listing.status != 200:
            return False, f"GET {WEBHOOKS} with the admin token: {listing.status}", token
        return True, "", token

    def setUp(self):
        # Every test starts with the stack's worker up and nothing to fan
        # out to, so one test's endpoints never receive another's events.
        self.assertTrue(pid_alive(stack_worker_pid(self.stack) or 0), "the stack's worker is down")
        self.db.exec("UPDATE admin.webhook_endpoints SET deleted_at = now() WHERE deleted_at IS NULL")

    # helpers

    def register(self, name="Jobs Tester", addr=None):
        addr = addr or fresh_email()
        doc = self.assert_ok_json(self.request(
            "POST", "/v1/auth/register", {"email": addr, "password": GOOD_PASSWORD, "name": name}), 201)
        return addr, doc["user"]["id"]

    def wait_value(self, sql, timeout=10.0, **variables):
        """The first column of the first row of sql, once there is one."""
        found, _ = wait_until(lambda: self.db.value(sql, **variables), timeout, interval=0.1)
        self.assertTrue(found, f"nothing after {timeout}s: {sql} {variables}")
        return found

    def mail_job(self, addr, template="verify_email"):
        return self.wait_value("SELECT id FROM jobs.outbox WHERE kind = 'email.send'"
                               " AND payload->>'to' = :'to' AND payload->>'template' = :'t'",
                               to=addr, t=template)

    def event_job(self, user_id, event_type="user.created"):
        return self.wait_value("SELECT id FROM jobs.outbox WHERE kind = 'event'"
                               " AND payload->>'type' = :'t' AND payload->'data'->>'id' = :'u'",
                               t=event_type, u=user_id)

    def finished(self, job_id, timeout=15.0):
        return self.db.wait_job(job_id, lambda r: r["done"] or r["dead"], timeout)

    def swap_worker(self, env):
        """Replaces the stack's worker by one with these config overrides
        until the test ends (the stack's comes back in a cleanup)."""
        stop_stack_worker(self.stack)
        self.addCleanup(restart_stack_worker, self.stack)
        worker = Worker(self.stack, env)
        self.addCleanup(worker.stop)
        return worker

    def receiver(self, **kwargs):
        r = Receiver(**kwargs)
        self.addCleanup(r.close)
        return r

    def endpoint(self, url, events, secret=None):
        endpoint_id, secret = self.db.insert_endpoint(url, events, secret)
        self.addCleanup(self.db.retire_endpoint, endpoint_id)
        return endpoint_id, secret

    def eml_files_to(self, addr):
        out = []
        mail_dir = self.stack.path("mail")
        for name in sorted(os.listdir(mail_dir)):
            if not name.endswith(".eml"):
                continue
            with open(os.path.join(mail_dir, name), "rb") as f:
                raw = f.read()
            msg = BytesParser(policy=email.policy.default).parsebytes(raw)
            if any(a.addr_spec == addr for a in msg["To"].addresses):
                out.append((name, raw, msg))
        return out

    def assert_signed_delivery(self, request, secret, event_type, max_age=120):
        """A Standard Webhooks delivery, verified independently; returns
        (webhook-id, body document)."""
        headers = request["headers"]
        for name in ("webhook-id", "webhook-timestamp", "webhook-signature"):
            self.assertIn(name, headers, request)
        self.assertEqual(headers.get("content-type", "").split(";")[0], "application/json")
        msg_id, stamp = headers["webhook-id"], headers["webhook-timestamp"]
        self.assertRegex(stamp, r"^\d+$")
        self.assertLess(abs(int(stamp) - time.time()), max_age, "webhook-timestamp is now-ish")
        self.assertTrue(webhook_signature_valid(secret, msg_id, stamp, request["body"],
                                                headers["webhook-signature"]),
                        f"signature does not verify: {request}")
        # The verifier is not a rubber stamp: any change breaks it.
        self.assertFalse(webhook_signature_valid(secret, msg_id, stamp, request["body"] + b" ",
                                                 headers["webhook-signature"]))
        self.assertFalse(webhook_signature_valid(new_webhook_secret(), msg_id, stamp,
                                                 request["body"], headers["webhook-signature"]))
        doc = json.loads(request["body"])
        self.assertEqual(doc.get("id"), msg_id, doc)
        self.assertEqual(doc.get("type"), event_type, doc)
        self.assertIsInstance(doc.get("created"), int, doc)
        self.assertIsInstance(doc.get("data"), dict, doc)
        return msg_id, doc

    # --- 1. outbox basics: the verification mail ------------------------

    def test_01_registration_mail_is_written_as_eml(self):
        name = 'Zoë <b>&"'
        addr, _ = self.register(name)
        job_id = self.mail_job(addr)
        row = self.finished(job_id, timeout=10)
        self.assertTrue(row["done"], row)
        self.assertEqual(row["attempts"], 1, row)
        self.assertIsNone(row["last_error"], row)
        self.assertIsNone(row["locked_by"], row)
        self.assertIsNone(row["lease_left_s"], row)
        self.assertNotIn("link", row["payload"]["data"], "a token in the outbox")

        files = self.eml_files_to(addr)
        self.assertEqual(len(files), 1, f"one .eml for {addr}: {os.listdir(self.stack.path('mail'))}")
        _, raw, msg = files[0]
        self.assertNotIn(b"\n", raw.replace(b"\r\n", b""), "lines end in CRLF only")
        self.assertEqual([a.addr_spec for a in msg["From"].addresses], ["no-reply@localhost"])
        self.assertEqual([a.addr_spec for a in msg["To"].addresses], [addr])
        self.assertEqual(str(msg["Subject"]), "Confirm your email address")
        sent = msg["Date"].datetime
        self.assertIsNotNone(sent.tzinfo)
        age = abs((datetime.datetime.now(datetime.timezone.utc) - sent).total_seconds())
        self.assertLess(age, 300, msg["Date"])
        self.assertRegex(str(msg["Message-ID"]), r"^<[^<>@\s]+@[^<>@\s]+>$")
        self.assertEqual(msg["MIME-Version"], "1.0")

        self.assertEqual(msg.get_content_type(), "multipart/alternative")
        parts = list(msg.iter_parts())
        self.assertEqual([p.get_content_type() for p in parts], ["text/plain", "text/html"])
        for part in parts:
            self.assertEqual(part.get_content_charset(), "utf-8", part.get_content_type())
        text, html = parts[0].get_content(), parts[1].get_content()
        public_url = f"https://127.0.0.1:{self.stack.https_port}"
        link = re.search(r"https://\S+/verify-email\?token=\S+", text).group(0)
        self.assertRegex(link, "^" + re.escape(public_url) + r"/verify-email\?token=[A-Za-z0-9_-]{20,}$")
        self.assertIn(name, text, "the text part carries the name as it is")
        self.assertIn("Zoë &lt;b&gt;&amp;&quot;", html)
        self.assertNotIn("<b>", html, "the name is escaped in HTML")
        self.assertIn(f'href="{link}"', html)

        # The mailed link is the real one: it verifies the address, which
        # queues the welcome mail, delivered the same way.
        token = link.split("token=", 1)[1]
        resp = self.request("POST", "/v1/auth/verify-email", {"token": token})
        self.assertEqual(resp.status, 200, repr(resp))
        welcome = self.finished(self.mail_job(addr, "welcome"), timeout=10)
        self.assertTrue(welcome["done"], welcome)
        self.assertEqual(len(self.eml_files_to(addr)), 2)

    # --- 2. retry with backoff against a real SMTP server ---------------

    def test_02_smtp_down_then_up_is_retried_and_sent_once(self):
        port = free_port()
        smtp = SmtpSink(port)
        self.addCleanup(smtp.close)
        worker = self.swap_worker({"STOA_SMTP_URL": f"smtp://127.0.0.1:{port}"})

        addr, _ = self.register("Patient Reader")
        job_id = self.mail_job(addr)
        row = self.db.wait_job(job_id, lambda r: r["last_error"] and r["locked_by"] is None, 10)
        self.assertFalse(row["done"] or row["dead"], row)
        self.assertEqual(row["attempts"], 1, row)
        self.assertIn("smtp", row["last_error"].lower(), row)
        # attempt^4 s: the first retry is about a second away.
        self.assertGreater(row["run_in_s"], 0, row)
        self.assertLessEqual(row["run_in_s"], 1.2, row)

        smtp.listen()
        retried = self.db.wait_job(job_id, lambda r: r["attempts"] >= 2, 10)
        self.assertGreaterEqual(retried["attempts"], 2, f"no retry within 10 s: {retried}")
        row = self.finished(job_id, timeout=30)
        self.assertTrue(row["done"], row)
        self.assertIsNone(row["last_error"], row)
        time.sleep(1.0)  # a duplicate would show up now
        messages = smtp.messages()
        self.assertEqual(len(messages), 1, messages)
        self.assertEqual(messages[0]["rcpt_tos"], [addr])
        self.assertEqual(messages[0]["mail_from"], "no-reply@localhost")
        msg = BytesParser(policy=email.policy.default).parsebytes(messages[0]["data"].encode("latin-1"))
        self.assertEqual([a.addr_spec for a in msg["To"].addresses], [addr])
        self.assertEqual(str(msg["Subject"]), "Confirm your email address")
        self.assertEqual(msg.get_content_type(), "multipart/alternative")
        self.assertEqual(self.eml_files_to(addr), [], "nothing went to the mail dir")
        failures = [line for line in log_lines(self.stack)
                    if line.get("pid") == worker.pid and f"job {job_id} (email.send) attempt 1 failed"
                    in line.get("msg", "")]
        self.assertEqual(len(failures), 1, "the failed attempt is logged once")

        # A 5xx answer is permanent: dead at once, nothing sent.
        bounce = self.db.insert_job("email.send", {
            "template": "verify_email", "to": "bounce@example.com",
            "data": {"name": "B", "link": "https://x.example/l", "expires_in_hours": 1}})
        row = self.finished(bounce, timeout=10)
        self.assertTrue(row["dead"], row)
        self.assertEqual(row["attempts"], 1, row)
        self.assertIn("550", row["last_error"], row)
        self.assertEqual(len(smtp.messages()), 1)

        self.assertEqual(worker.stop(), 0, "stoa-jobs exits 0 on SIGTERM")

    # --- 3. dead jobs ------------------------------------------------------

    def test_03_permanent_failures_and_spent_attempts_end_dead(self):
        closed_port = free_port()  # nothing listens there
        endpoint_id, _ = self.endpoint(f"http://127.0.0.1:{closed_port}/hook", ["test.never"])
        jobs = {
            "unknown template": self.db.insert_job(
                "email.send", {"template": "no_such_template", "to": "x@example.com", "data": {}}),
            "unknown kind": self.db.insert_job("no.such.kind", {}),
            "incomplete mail": self.db.insert_job("email.send", {"to": "x@example.com"}),
            "one attempt": self.db.insert_job(
                "webhook.deliver", {"endpoint_id": endpoint_id, "event": webhook_event("test.never")},
                max_attempts=1),
            "three attempts": self.db.insert_job(
                "webhook.deliver", {"endpoint_id": endpoint_id, "event": webhook_event("test.never")},
                max_attempts=3),
        }
        self.addCleanup(self.db.exec, "UPDATE jobs.outbox SET dead_at = now() WHERE id = :'id'",
                        id=jobs["three attempts"])
        rows = {label: self.db.wait_job(job_id, lambda r: r["attempts"] >= 1 and r["locked_by"] is None, 10)
                for label, job_id in jobs.items()}

        for label in ("unknown template", "unknown kind", "incomplete mail", "one attempt"):
            with self.subTest(label):
                row = rows[label]
                self.assertTrue(row["dead"], row)
                self.assertFalse(row["done"], row)
                self.assertEqual(row["attempts"], 1, row)
                self.assertTrue(row["last_error"], row)
        self.assertIn("no_such_template", rows["unknown template"]["last_error"])
        self.assertIn("unknown job kind", rows["unknown kind"]["last_error"])
        self.assertRegex(rows["one attempt"]["last_error"].lower(), "connect|refused")

        with self.subTest("the same failure with attempts left is retried"):
            row = rows["three attempts"]
            self.assertFalse(row["dead"] or row["done"], row)
            self.assertEqual(row["attempts"], 1, row)
            self.assertRegex(row["last_error"].lower(), "connect|refused")
            # Webhooks follow their own schedule: 5 s first (+-10%).
            self.assertGreater(row["run_in_s"], 3.0, row)
            self.assertLess(row["run_in_s"], 5.6, row)

        dead_log = [line for line in log_lines(self.stack)
                    if f"job {jobs['unknown template']} (email.send) is dead" in line.get("msg", "")]
        self.assertEqual(len(dead_log), 1, dead_log)
        self.assertEqual(dead_log[0].get("level"), "err", dead_log)

    # --- 4. crash safety ---------------------------------------------------

    def test_04_worker_killed_mid_delivery_runs_the_job_again(self):
        slow = self.receiver(delay=5.0)
        endpoint_id, secret = self.endpoint(slow.url, ["test.crash"])
        event = webhook_event("test.crash", n=1)
        job_id = self.db.insert_job("webhook.deliver", {"endpoint_id": endpoint_id, "event": event})
        self.assertTrue(slow.wait_for(1, 10), "the delivery never started")
        old_pid = stop_stack_worker(self.stack, signal.SIGKILL)
        self.addCleanup(restart_stack_worker, self.stack)

        row = self.db.job(job_id)
        self.assertFalse(row["done"] or row["dead"], row)
        self.assertEqual(row["attempts"], 1, row)
        self.assertGreater(row["lease_left_s"], 2, f"the dead worker's lease holds: {row}")
        self.assertLessEqual(row["lease_left_s"], 15, f"a short, renewed lease: {row}")
        self.assertTrue(row["locked_by"].split(":")[1] == str(old_pid), row)

        new_pid = restart_stack_worker(self.stack)
        self.assertNotEqual(new_pid, old_pid)
        time.sleep(2.5)  # two poll intervals: a leased job stays with its lease
        self.assertEqual(slow.count(), 1, "a leased job was taken before its lease ran out")
        self.assertFalse(self.db.job(job_id)["done"])

        self.db.exec("UPDATE jobs.outbox SET locked_until = now() WHERE id = :'id'", id=job_id)
        row = self.finished(job_id, timeout=20)
        self.assertTrue(row["done"], row)
        self.assertEqual(row["attempts"], 2, row)
        self.assertEqual(slow.count(), 2, slow.requests)
        first, second = slow.requests
        id1, doc1 = self.assert_signed_delivery(first, secret, "test.crash")
        id2, doc2 = self.assert_signed_delivery(second, secret, "test.crash")
        self.assertEqual(id1, event["id"])
        self.assertEqual(id2, id1, "the receiver sees one webhook-id for both tries")
        self.assertEqual(doc1, doc2)
        self.assertEqual(doc1["data"], {"n": 1})
        log = self.db.deliveries(event["id"])
        # The attempt cut short is on record too (logged before sending).
        self.assertEqual([(d["attempt"], d["status"], d["error"]) for d in log],
                         [(1, None, "interrupted"), (2, 200, None)], log)

    def test_04b_sigterm_lets_the_job_in_hand_finish(self):
        slow = self.receiver(delay=3.0)
        endpoint_id, secret = self.endpoint(slow.url, ["test.drain"])
        worker = self.swap_worker({})
        event = webhook_event("test.drain")
        job_id = self.db.insert_job("webhook.deliver", {"endpoint_id": endpoint_id, "event": event})
        self.assertTrue(slow.wait_for(1, 10), "the delivery never started")
        t0 = time.monotonic()
        self.assertEqual(worker.stop(), 0, "stoa-jobs exits 0 on SIGTERM")
        self.assertGreater(time.monotonic() - t0, 1.0, "it waited for the delivery in hand")
        row = self.db.job(job_id)
        self.assertTrue(row["done"], row)
        self.assertEqual(row["attempts"], 1, row)
        self.assertEqual(slow.count(), 1)

    # --- 5. several workers ------------------------------------------------

    def test_05_two_workers_run_each_job_exactly_once(self):
        extra = Worker(self.stack)
        self.addCleanup(extra.stop)
        stack_pid = stack_worker_pid(self.stack)
        batch = tag()
        ids = [r["id"] for r in self.db.rows(
            "INSERT INTO jobs.outbox (kind, payload) SELECT 'event', jsonb_build_object("
            "'id', 'evt_' || :'batch' || '_' || g, 'type', 'test.bulk', 'created', 0,"
            " 'data', '{}'::jsonb) FROM generate_series(1, 200) g RETURNING id", batch=batch)]
        self.assertEqual(len(ids), 200)
        open_sql = ("SELECT count(*) AS n FROM jobs.outbox WHERE kind = 'event'"
                    " AND payload->>'id' LIKE 'evt_' || :'batch' || '_%' AND done_at IS NULL")
        done, _ = wait_until(lambda: self.db.value(open_sql, batch=batch) == 0, 30, interval=0.2)
        self.assertTrue(done, f"{self.db.value(open_sql, batch=batch)} of 200 still open")
        summary = self.db.row(
            "SELECT count(*) AS n, count(*) FILTER (WHERE attempts = 1) AS once,"
            " count(*) FILTER (WHERE locked_by IS NOT NULL OR locked_until IS NOT NULL) AS locked,"
            " count(*) FILTER (WHERE dead_at IS NOT NULL) AS dead FROM jobs.outbox"
            " WHERE kind = 'event' AND payload->>'id' LIKE 'evt_' || :'batch' || '_%'", batch=batch)
        self.assertEqual(summary, {"n": 200, "once": 200, "locked": 0, "dead": 0})

        # Each job was run by one worker, once; both workers took part.
        pattern = re.compile(r"^job (\d+) \(event\) done on attempt (\d+)$")
        runs = {}
        for line in log_lines(self.stack):
            m = pattern.match(line.get("msg", ""))
            if m and int(m.group(1)) in ids:
                runs.setdefault(int(m.group(1)), []).append(line.get("pid"))
        self.assertEqual(sorted(runs), sorted(ids))
        self.assertEqual([i for i, pids in runs.items() if len(pids) != 1], [])
        by_pid = {pid for pids in runs.values() for pid in pids}
        self.assertEqual(by_pid, {stack_pid, extra.pid}, "both workers claimed jobs")
        self.assertEqual(extra.stop(), 0)

    # --- 6. the schedule -----------------------------------------------------

    def schedule_slots(self):
        return self.db.rows(
            "SELECT dedupe_key, count(*) AS n, bool_and(done_at IS NOT NULL) AS done,"
            " max(attempts) AS attempts FROM jobs.outbox WHERE kind = 'maintenance.cleanup'"
            " AND dedupe_key LIKE 'slot:%' GROUP BY dedupe_key ORDER BY dedupe_key")

    def current_slot(self):
        return "slot:%d" % self.db.value("SELECT floor(extract(epoch FROM now()) / 3600)::bigint")

    def test_06_one_cleanup_row_per_slot_with_two_workers(self):
        extra = Worker(self.stack)
        self.addCleanup(extra.stop)
        time.sleep(2.5)  # both have enqueued on start and on a couple of polls
        slots = self.schedule_slots()
        self.assertIn(self.current_slot(), [s["dedupe_key"] for s in slots], slots)
        self.assertEqual([s for s in slots if s["n"] != 1], [], slots)

        # Restart both: a worker that comes back does not add a second row.
        stop_stack_worker(self.stack)
        restart_stack_worker(self.stack)
        self.assertEqual(extra.stop(), 0)
        again = Worker(self.stack)
        self.addCleanup(again.stop)
        time.sleep(2.5)
        slots = self.schedule_slots()
        current = [s for s in slots if s["dedupe_key"] == self.current_slot()]
        self.assertEqual(len(current), 1, slots)
        self.assertEqual([s for s in slots if s["n"] != 1], [], slots)
        done = self.db.wait_job(self.db.value(
            "SELECT id FROM jobs.outbox WHERE kind = 'maintenance.cleanup' AND dedupe_key = :'k'",
            k=current[0]["dedupe_key"]), lambda r: r["done"], 5)
        self.assertTrue(done["done"], done)
        self.assertEqual(done["attempts"], 1, "the slot ran once")

    def test_06b_cleanup_drops_old_finished_jobs_only(self):
        # Written finished (or due tomorrow) so no worker claims them.
        old, recent, pending = (self.db.value(
            "INSERT INTO jobs.outbox (kind, payload, created_at, run_at, done_at) VALUES"
            " ('event', '{}', now() - interval '30 days', now() + :'due'::interval,"
            " now() - nullif(:'done', '')::interval) RETURNING id", due=due, done=done)
            for due, done in (("0", "8 days"), ("0", "1 day"), ("1 day", "")))
        self.addCleanup(self.db.exec, "DELETE FROM jobs.outbox WHERE id IN (:'a', :'b')",
                        a=recent, b=pending)
        run = self.db.insert_job("maintenance.cleanup", {}, dedupe_key=f"test:{tag()}")
        row = self.finished(run, timeout=10)
        self.assertTrue(row["done"], row)
        self.assertIsNone(self.db.job(old), "a job finished 8 days ago is removed")
        self.assertIsNotNone(self.db.job(recent), "a job finished yesterday is kept")
        self.assertIsNotNone(self.db.job(pending), "an unfinished job is kept, however old")

    # --- 7. outbound webhooks ----------------------------------------------

    def test_07_user_created_webhook_is_signed_and_retried(self):
        hook = self.receiver(statuses=(500, 200))
        endpoint_id, secret = self.endpoint(hook.url, ["user.created"])
        other = self.receiver()
        self.endpoint(other.url, ["invoice.paid"])  # not subscribed: gets nothing
        _, user_id = self.register("Webhook Watcher")
        self.assertTrue(hook.wait_for(2, 20), f"{hook.count()} deliveries, want 2 (500, then 200)")
        first, second = hook.requests[:2]
        msg_id, doc = self.assert_signed_delivery(first, secret, "user.created")
        msg_id2, doc2 = self.assert_signed_delivery(second, secret, "user.created")
        self.assertEqual(doc["data"].get("id"), user_id, doc)
        self.assertTrue(msg_id.startswith("evt_"), msg_id)
        self.assertEqual(msg_id2, msg_id, "a retry keeps the webhook-id")
        self.assertEqual(doc2, doc)
        gap = second["at"] - first["at"]
        self.assertGreater(gap, 4.0, "retried after about 5 s")
        self.assertLess(gap, 9.0, "retried after about 5 s")

        job = self.db.row("SELECT id FROM jobs.outbox WHERE kind = 'webhook.deliver'"
                          " AND payload->>'endpoint_id' = :'e'", e=endpoint_id)
        row = self.finished(job["id"], timeout=5)
        self.assertTrue(row["done"], row)
        self.assertEqual(row["attempts"], 2, row)
        log = self.db.deliveries(msg_id)
        self.assertEqual([(d["attempt"], d["status"], d["error"]) for d in log],
                         [(1, 500, "HTTP 500"), (2, 200, None)], log)
        for d in log:
            self.assertEqual(d["event_type"], "user.created")
            self.assertIsInstance(d["latency_ms"], int)
            self.assertGreaterEqual(d["latency_ms"], 0)
        health = self.db.row("SELECT failing_since, last_success_at FROM admin.webhook_endpoints"
                             " WHERE id = :'e'", e=endpoint_id)
        self.assertIsNone(health["failing_since"], health)
        self.assertIsNotNone(health["last_success_at"], health)
        time.sleep(1.0)
        self.assertEqual(other.count(), 0, "an endpoint not subscribed to the event got it")
        self.assertEqual(hook.count(), 2)

    def check_admin_webhook_api(self, api):
        hook = self.receiver(statuses=(500, 200))
        good = {"url": hook.url, "events": ["user.created"], "description": "n8n flow"}
        bogus = str(uuid.uuid4())
        routes = [("GET", WEBHOOKS, None), ("POST", WEBHOOKS, good),
                  ("DELETE", f"{WEBHOOKS}/{bogus}", None), ("GET", f"{WEBHOOKS}/{bogus}/deliveries", None)]
        count_sql = "SELECT count(*) FROM admin.webhook_endpoints"
        before = self.db.value(count_sql)
        for method, path, body in routes:
            with self.subTest("no identity", route=f"{method} {path}"):
                self.assert_error(api.call(method, path, body, who=None), 401, "unauthenticated")
            with self.subTest("client", route=f"{method} {path}"):
                self.assert_error(api.call(method, path, body, who="client"), 403, "forbidden")

        bad = [
            ("malformed JSON", '{"url": "http://127.0.0.1/"', "invalid_json", None),
            ("missing url", {"events": ["user.created"]}, "invalid_request", ("url", "required")),
            ("missing events", {"url": hook.url}, "invalid_request", ("events", "required")),
            ("empty events", {"url": hook.url, "events": []}, "invalid_request", ("events", None)),
            ("unknown event", {"url": hook.url, "events": ["user.exploded"]}, "invalid_request",
             ("events", "unknown_event")),
            ("ftp url", {"url": "ftp://example.com/in", "events": ["user.created"]}, "invalid_request",
             ("url", "scheme_not_allowed")),
            ("metadata address", {"url": "http://169.254.169.254/latest/", "events": ["user.created"]},
             "invalid_request", ("url", "internal_address")),
            ("private address", {"url": "http://10.0.0.1/", "events": ["user.created"]},
             "invalid_request", ("url", "internal_address")),
            ("credentials in url", {"url": "https://u:p@example.com/", "events": ["user.created"]},
             "invalid_request", ("url", None)),
            ("unknown field", dict(good, secret="whsec_AAAA"), "invalid_request", ("secret", None)),
        ]
        for label, body, code, field in bad:
            with self.subTest("bad input", case=label):
                if isinstance(body, str):
                    resp = api.call("POST", WEBHOOKS, body, raw=True,
                                    headers={"Content-Type": "application/json"})
                else:
                    resp = api.call("POST", WEBHOOKS, body)
                details = self.assert_error(resp, 400, code)
                if field:
                    fields = details.get("fields", {})
                    self.assertIn(field[0], fields, details)
                    if field[1]:
                        self.assertEqual(fields[field[0]], field[1], details)
        self.assertEqual(self.db.value(count_sql), before, "a refused request created an endpoint")

        key = "jobs-test-" + tag()
        resp = api.call("POST", WEBHOOKS, good, headers={"Idempotency-Key": key})
        created = self.assert_ok_json(resp, 201)
        endpoint_id, secret = created.get("id", ""), created.get("secret", "")
        self.addCleanup(self.db.retire_endpoint, endpoint_id)
        self.assertRegex(endpoint_id, UUID_RE)
        self.assertTrue(secret.startswith("whsec_"), created)
        self.assertEqual(len(base64.b64decode(secret[6:], validate=True)), 24, "24 random bytes")
        self.assertEqual((created.get("url"), created.get("events"), created.get("description")),
                         (hook.url, ["user.created"], "n8n flow"))
        with self.subTest("Idempotency-Key replay"):
            replay = self.assert_ok_json(api.call("POST", WEBHOOKS, good,
                                                  headers={"Idempotency-Key": key}), 201)
            self.assertEqual((replay.get("id"), replay.get("secret")), (endpoint_id, secret))
            self.assertEqual(self.db.value(count_sql), before + 1)

        resp = api.call("GET", WEBHOOKS)
        listing = self.assert_ok_json(resp)
        mine = [e for e in listing.get("data", []) if e.get("id") == endpoint_id]
        self.assertEqual(len(mine), 1, listing)
        self.assertNotIn("secret", mine[0])
        self.assertNotIn(secret[6:].encode(), resp.body, "the list shows no secret")
        self.assertEqual((mine[0].get("url"), mine[0].get("events")), (hook.url, ["user.created"]))
        self.assertRegex(mine[0].get("created_at") or "", RFC3339_UTC)
        self.assertIn("next_cursor", listing)

        for path in (WEBHOOKS, f"{WEBHOOKS}/{endpoint_id}/deliveries"):
            with self.subTest("bad ?limit (SPEC §3: 1..100)", path=path):
                answers = {q: api.call("GET", f"{path}?{q}")
                           for q in ("limit=0", "limit=101", "limit=ten", "limit=")}
                self.assertEqual({q: r.status for q, r in answers.items()},
                                 dict.fromkeys(answers, 400), answers)
                for resp in answers.values():
                    details = self.assert_error(resp, 400, "invalid_request")
                    self.assertIn("limit", details.get("fields", {}), details)
        with self.subTest("bad cursor"):
            details = self.assert_error(api.call("GET", f"{WEBHOOKS}/{endpoint_id}/deliveries?cursor=x"),
                                        400, "invalid_request")
            self.assertIn("cursor", details.get("fields", {}), details)
        for method, path in (("DELETE", f"{WEBHOOKS}/{bogus}"), ("DELETE", f"{WEBHOOKS}/not-a-uuid"),
                             ("GET", f"{WEBHOOKS}/{bogus}/deliveries"),
                             ("GET", f"{WEBHOOKS}/not-a-uuid/deliveries")):
            with self.subTest("unknown id", route=f"{method} {path}"):
                self.assert_error(api.call(method, path), 404, "not_found")

        # Delivery: 500 first, then 200 on the retry, both in the log.
        _, user_id = self.register("Api Watcher")
        self.assertTrue(hook.wait_for(2, 20), f"{hook.count()} deliveries, want 2")
        msg_id, doc = self.assert_signed_delivery(hook.requests[0], secret, "user.created")
        self.assertEqual(doc["data"].get("id"), user_id)
        self.assert_signed_delivery(hook.requests[1], secret, "user.created")

        def delivery_log():
            # An attempt's row is written before the request and completed
            # after the answer: the hook can have answered before the log
            # says so.
            d = self.assert_ok_json(api.call("GET", f"{WEBHOOKS}/{endpoint_id}/deliveries"))
            rows = d.get("data", [])
            settled = all(e.get("status") is not None or e.get("error") for e in rows)
            return d if len(rows) >= 2 and settled else None
        log, _ = wait_until(delivery_log, 5, interval=0.2)
        self.assertTrue(log, "two deliveries logged")
        entries = log["data"]
        self.assertEqual([(e.get("attempt"), e.get("status"), e.get("error")) for e in entries],
                         [(2, 200, None), (1, 500, "HTTP 500")], entries)
        for e in entries:
            self.assertEqual((e.get("event_id"), e.get("event_type")), (msg_id, "user.created"))
            self.assertIsInstance(e.get("latency_ms"), int)
            self.assertRegex(e.get("at") or "", RFC3339_UTC)
        self.assertIsNone(log.get("next_cursor"), log)
        page = self.assert_ok_json(api.call("GET", f"{WEBHOOKS}/{endpoint_id}/deliveries?limit=1"))
        self.assertEqual([e["attempt"] for e in page["data"]], [2])
        self.assertIsInstance(page.get("next_cursor"), str, page)
        rest = self.assert_ok_json(api.call(
            "GET", f"{WEBHOOKS}/{endpoint_id}/deliveries?limit=1&cursor={page['next_cursor']}"))
        self.assertEqual([e["attempt"] for e in rest["data"]], [1])
        self.assertIsNone(rest.get("next_cursor"), rest)

        # Delete: gone from the list, its log and any new fan-out.
        resp = api.call("DELETE", f"{WEBHOOKS}/{endpoint_id}")
        self.assertEqual(resp.status, 204, repr(resp))
        self.assertEqual(resp.body, b"")
        listing = self.assert_ok_json(api.call("GET", WEBHOOKS))
        self.assertNotIn(endpoint_id, [e.get("id") for e in listing.get("data", [])])
        self.assert_error(api.call("DELETE", f"{WEBHOOKS}/{endpoint_id}"), 404, "not_found")
        self.assert_error(api.call("GET", f"{WEBHOOKS}/{endpoint_id}/deliveries"), 404, "not_found")
        _, later_user = self.register("After Delete")
        self.finished(self.event_job(later_user), timeout=10)
        self.assertEqual(self.db.value("SELECT count(*) FROM jobs.outbox WHERE kind = 'webhook.deliver'"
                                       " AND payload->>'endpoint_id' = :'e'", e=endpoint_id), 1)
        self.assertEqual(hook.count(), 2)

    def test_07b_admin_webhook_api_through_the_gateway(self):
        if not self.gateway_enabled:
            self.skipTest(f"the gateway is not wired yet ({self.gateway_reason})")
        client_addr, _ = self.register("Plain Client")
        login = self.assert_ok_json(self.request("POST", "/v1/auth/login",
                                                 {"email": client_addr, "password": GOOD_PASSWORD}))
        self.check_admin_webhook_api(GatewayAdmin(
            self.stack, {"admin": self.admin_token, "client": login["access_token"]}))

    def test_07d_secret_rotation_signs_with_both_secrets(self):
        """A rotated endpoint signs with the new and, for the overlap, the
        previous secret; after the overlap only the new one verifies."""
        if not self.gateway_enabled:
            self.skipTest(f"the gateway is not wired yet ({self.gateway_reason})")
        admin = GatewayAdmin(self.stack, {"admin": self.admin_token})
        rx = self.receiver(host="127.0.0.1")
        created = admin.call("POST", "/v1/admin/webhooks",
                             {"url": rx.url, "events": ["*"]})
        self.assertEqual(created.status, 201, repr(created))
        endpoint_id, old_secret = created.json["id"], created.json["secret"]
        self.addCleanup(self.db.retire_endpoint, endpoint_id)
        rotated = admin.call("POST", f"/v1/admin/webhooks/{endpoint_id}/rotate-secret",
                             {"previous_valid_for_s": 3600})
        self.assertEqual(rotated.status, 200, repr(rotated))
        new_secret = rotated.json["secret"]
        self.assertTrue(new_secret.startswith("whsec_"))
        self.assertNotEqual(new_secret, old_secret)
        self.assertIsNotNone(rotated.json.get("previous_valid_until"))

        # The endpoint takes every event ("*"): only this test's count.
        def rotation_deliveries():
            return [r for r in rx.requests
                    if json.loads(r["body"]).get("type") == "test.rotation"]

        def wait_rotation(n):
            deadline = time.monotonic() + 10
            while len(rotation_deliveries()) < n and time.monotonic() < deadline:
                time.sleep(0.05)
            return len(rotation_deliveries()) >= n

        self.db.insert_job("event", webhook_event("test.rotation"))
        self.assertTrue(wait_rotation(1), "no delivery after the rotation")
        first = rotation_deliveries()[0]
        self.assertEqual(len(first["headers"]["webhook-signature"].split(" ")), 2, first)
        self.assert_signed_delivery(first, new_secret, "test.rotation")
        self.assert_signed_delivery(first, old_secret, "test.rotation")

        # The overlap ends: the previous secret no longer signs.
        self.db.exec("UPDATE admin.webhook_endpoints SET previous_secret_until = now()"
                     " - interval '1 second' WHERE id = :'e'", e=endpoint_id)
        self.db.insert_job("event", webhook_event("test.rotation"))
        self.assertTrue(wait_rotation(2), "no second delivery")
        second = rotation_deliveries()[1]
        self.assert_signed_delivery(second, new_secret, "test.rotation")
        h = second["headers"]
        self.assertFalse(webhook_signature_valid(old_secret, h["webhook-id"],
                                                 h["webhook-timestamp"], second["body"],
                                                 h["webhook-signature"]))

        # Bad input: unknown endpoint, non-uuid, out-of-range overlap,
        # unknown field, a client token, no token.
        missing = "00000000-0000-4000-8000-000000000000"
        self.assert_error(admin.call("POST", f"/v1/admin/webhooks/{missing}/rotate-secret"),
                          404, "not_found")
        self.assert_error(admin.call("POST", "/v1/admin/webhooks/nope/rotate-secret"),
                          404, "not_found")
        bad = admin.call("POST", f"/v1/admin/webhooks/{endpoint_id}/rotate-secret",
                         {"previous_valid_for_s": 999999999})
        self.assert_error(bad, 400, "invalid_request")
        self.assertIn("previous_valid_for_s", bad.json["error"]["details"]["fields"])
        bad = admin.call("POST", f"/v1/admin/webhooks/{endpoint_id}/rotate-secret", {"x": 1})
        self.assert_error(bad, 400, "invalid_request")
        self.assert_error(admin.call("POST", f"/v1/admin/webhooks/{endpoint_id}/rotate-secret",
                                     who=None), 401, "unauthenticated")

    def test_07c_admin_webhook_api_at_the_pool(self):
        admin_id = self.db.value("SELECT id FROM auth.users WHERE email = 'admin@localhost'")
        _, client_id = self.register("Plain Client")
        pool = PoolProcess(self.stack, "admin")
        self.addCleanup(pool.stop)
        self.check_admin_webhook_api(PoolAdmin(pool.sock_path, {"admin": admin_id, "client": client_id}))
        self.assertEqual(pool.stop(), 0, "stoa-admin exits 0 on SIGTERM")

    # --- 8. SSRF at delivery -------------------------------------------------

    def test_08_internal_targets_are_refused_at_delivery(self):
        v4 = self.receiver(host="127.0.0.1")
        v6 = self.receiver(host="::1")
        self.swap_worker({"STOA_WEBHOOK_ALLOW_HOSTS": "example.invalid"})
        event_type = "test.ssrf"
        targets = {
            "private address": "http://10.1.2.3/hook",
            "IPv6 loopback": v6.url,
            "IPv4 loopback": v4.url,
            "a name for loopback": f"http://localhost:{v4.port}/hook",
            "mapped IPv4 loopback": f"http://[::ffff:127.0.0.1]:{v4.port}/hook",
        }
        endpoints = {label: self.endpoint(url, [event_type])[0] for label, url in targets.items()}
        event = webhook_event(event_type)
        fanout = self.db.insert_job("event", event)
        self.assertTrue(self.finished(fanout, timeout=10)["done"])
        for label, endpoint_id in endpoints.items():
            with self.subTest(label, url=targets[label]):
                job_id = self.wait_value("SELECT id FROM jobs.outbox WHERE kind = 'webhook.deliver'"
                                         " AND payload->>'endpoint_id' = :'e'", e=endpoint_id)
                t0 = time.monotonic()
                row = self.finished(job_id, timeout=10)
                self.assertTrue(row["dead"], f"refused for good, not retried: {row}")
                self.assertEqual(row["attempts"], 1, row)
                self.assertIn("internal address", row["last_error"] or "", row)
                self.assertLess(time.monotonic() - t0, 4.0, "refused before any connection attempt")
                log = [d for d in self.db.deliveries(event["id"]) if d["endpoint_id"] == endpoint_id]
                self.assertEqual(len(log), 1, log)
                self.assertIsNone(log[0]["status"], log)
                self.assertIn("internal address", log[0]["error"] or "", log)
        time.sleep(0.5)
        self.assertEqual(v4.count(), 0, v4.requests)
        self.assertEqual(v6.count(), 0, v6.requests)

    def test_08b_allow_listed_loopback_is_delivered(self):
        # The control for test_08: with the dev allow-list (127.0.0.1,
        # localhost) the same kind of target is reached.
        v4 = self.receiver(host="127.0.0.1")
        endpoint_id, secret = self.endpoint(f"http://localhost:{v4.port}/hook", ["test.allowed"])
        self.db.insert_job("event", webhook_event("test.allowed"))
        self.assertTrue(v4.wait_for(1, 10), "an allow-listed host was not delivered to")
        self.assert_signed_delivery(v4.requests[0], secret, "test.allowed")

    def test_08c_allowed_ipv6_literal_is_delivered(self):
        # An IPv6 literal that passes the guard (here allow-listed; a public
        # one in production) is delivered like any other target.
        v6 = self.receiver(host="::1")
        self.swap_worker({"STOA_WEBHOOK_ALLOW_HOSTS": "::1"})
        endpoint_id, secret = self.endpoint(v6.url, ["test.ipv6"])
        event = webhook_event("test.ipv6")
        self.db.insert_job("event", event)
        job_id = self.wait_value("SELECT id FROM jobs.outbox WHERE kind = 'webhook.deliver'"
                                 " AND payload->>'endpoint_id' = :'e'", e=endpoint_id)
        row = self.db.wait_job(job_id, lambda r: r["attempts"] >= 1 and r["locked_by"] is None, 10)
        self.assertTrue(row["done"], f"{v6.url} not delivered: {row}")
        self.assertEqual(v6.count(), 1)
        self.assert_signed_delivery(v6.requests[0], secret, "test.ipv6")


if __name__ == "__main__":
    unittest.main()
