"""How the jobs worker is woken (SPEC §1: the outbox is claimed by the
worker, woken by LISTEN/NOTIFY). stoa's own connections wake it after
their commit, out of the transaction (modules/common/db.c, migration
0030), because a NOTIFY inside a transaction holds a cluster-wide lock
through its commit's flush; every other writer is woken through the
outbox trigger, as before.

The worker's poll interval is a minute here, so a job done within a couple
of seconds was done because a wake-up reached the worker. Jobs the worker
queues itself wake its own threads, with no NOTIFY; and a claim's quick
jobs run before its slow ones (modules/jobs/main.c).
"""

import json
import subprocess
import threading
import uuid

from harness import Client, StackTestCase, wait_until
from jobslib import Db, ReceiverMixin

GOOD_PASSWORD = "Tq7#vLp2!xRz-9mW"
# Far below the poll interval, generous for a loaded machine.
WAKE_BUDGET_S = 3.0


def fresh_email():
    return f"wake.{uuid.uuid4().hex[:12]}@example.com"


class JobsWakeTest(ReceiverMixin, StackTestCase):
    stack_env = {"STOA_JOBS_POLL_INTERVAL_MS": "60000",
                 "STOA_RATE_AUTH": "1000r/s", "STOA_BURST_AUTH": "1000",
                 "STOA_RATE_API": "1000r/s", "STOA_BURST_API": "1000"}

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.db = Db(cls.stack)

    def register(self, client=None):
        addr = fresh_email()
        resp = (client or self.stack.client).request(
            "POST", "/v1/auth/register",
            {"email": addr, "password": GOOD_PASSWORD, "name": "Wake"})
        self.assertEqual(resp.status, 201, repr(resp))
        return addr

    def mail_jobs_done(self, addrs):
        return self.db.value(
            "SELECT count(*) FROM jobs.outbox WHERE kind = 'email.send'"
            " AND payload->>'to' = ANY(string_to_array(:'to', ','))"
            " AND done_at IS NOT NULL", to=",".join(addrs))

    def assert_done_soon(self, addrs):
        done, elapsed = wait_until(lambda: self.mail_jobs_done(addrs) == len(addrs),
                                   WAKE_BUDGET_S, interval=0.05)
        self.assertTrue(done, f"{self.mail_jobs_done(addrs)} of {len(addrs)} mail jobs "
                              f"done after {elapsed:.1f}s")

    def test_01_a_pool_commit_wakes_the_worker(self):
        self.assert_done_soon([self.register()])

    def test_02_concurrent_commits_are_all_followed_by_a_wake_up(self):
        # Commits that find a wake-up being sent ask for one more after it:
        # none may be left to the poll.
        addrs, errors = [], []

        def one():
            # A connection of its own: a client is not shared across threads.
            client = Client("127.0.0.1", self.stack.https_port,
                            self.stack.path("tls", "cert.pem"))
            try:
                addrs.append(self.register(client))
            except Exception as e:  # noqa: BLE001 - reported below
                errors.append(e)
            finally:
                client.close()

        # Five at once: each registration hashes a password, and a process
        # sheds hashes beyond six at a time.
        for _ in range(8):
            threads = [threading.Thread(target=one) for _ in range(5)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
        self.assertEqual(errors, [])
        self.assertEqual(len(addrs), 40)
        self.assert_done_soon(addrs)

    def test_03_other_writers_are_woken_by_the_trigger(self):
        job = self.db.row("INSERT INTO jobs.outbox (kind) VALUES ('noop') RETURNING id")["id"]
        row = self.db.wait_job(job, lambda r: r["done"], WAKE_BUDGET_S)
        self.assertTrue(row and row["done"], row)

    def psql_notifications(self, script):
        argv = ["psql", "-X", "-v", "ON_ERROR_STOP=1", "-h", self.stack.path("pg", "sock"),
                "-p", "5432", "-U", "stoa", "-d", "stoa"]
        proc = subprocess.run(argv, input=script, capture_output=True, text=True,
                              timeout=30, cwd="/")
        self.assertEqual(proc.returncode, 0, proc.stderr)
        return proc.stdout.count('Asynchronous notification "stoa_jobs"')

    def test_04_the_trigger_leaves_stoa_connections_to_wake_it_themselves(self):
        # One session listening to itself: with stoa.jobs_wake = client (what
        # stoa's connections set at connect) the insert notifies nobody;
        # without it, once per statement, and only once committed.
        quiet = self.psql_notifications(
            "LISTEN stoa_jobs;\nSET stoa.jobs_wake = client;\n"
            "INSERT INTO jobs.outbox (kind) VALUES ('noop');\nSELECT 1;\n")
        self.assertEqual(quiet, 0)
        loud = self.psql_notifications(
            "LISTEN stoa_jobs;\n"
            "INSERT INTO jobs.outbox (kind) VALUES ('noop');\nSELECT 1;\n"
            "BEGIN;\nINSERT INTO jobs.outbox (kind) VALUES ('noop');\nROLLBACK;\nSELECT 1;\n")
        self.assertEqual(loud, 1)

    def test_05_a_revoked_session_wakes_the_worker_for_its_live_event(self):
        # The session's revocation queues its realtime.publish job from a
        # trigger on auth.sessions: the statement that revokes does not name
        # the outbox, and still wakes the worker.
        addr = self.register()
        resp = self.request("POST", "/v1/auth/login", {"email": addr, "password": GOOD_PASSWORD})
        self.assertEqual(resp.status, 200, repr(resp))
        doc = resp.json
        sid = self.db.value("SELECT id FROM auth.sessions WHERE user_id ="
                            " (SELECT id FROM auth.users WHERE email = :'e')"
                            " AND revoked_at IS NULL ORDER BY created_at DESC LIMIT 1", e=addr)
        self.assertTrue(sid)
        resp = self.request("POST", "/v1/auth/logout",
                            headers={"Authorization": "Bearer " + doc["access_token"]})
        self.assertEqual(resp.status, 204, repr(resp))
        job = self.db.value("SELECT id FROM jobs.outbox WHERE kind = 'realtime.publish'"
                            " AND payload->'channels' ? ('s.' || :'sid')", sid=str(sid))
        self.assertTrue(job, "no live event was queued for the revoked session")
        row = self.db.wait_job(job, lambda r: r["done"] or r["dead"] or r["attempts"] > 0,
                               WAKE_BUDGET_S)
        self.assertTrue(row and (row["done"] or row["attempts"] > 0),
                        f"the live event's job was not run within {WAKE_BUDGET_S}s: {row}")

    def test_06_jobs_queued_by_the_worker_wake_its_own_threads(self):
        # The event's fan-out is committed by the worker itself, which wakes
        # its own threads for the delivery it queued rather than sending
        # itself a NOTIFY: the delivery goes out at once, and the only
        # notification is the one psql's own insert sent.
        rx = self.receiver()
        self.endpoint(rx.url, ["test.wake"])
        event = json.dumps({"id": f"evt_{uuid.uuid4()}", "type": "test.wake", "created": 1,
                            "data": {}}).replace("'", "''")
        heard = self.psql_notifications(
            "LISTEN stoa_jobs;\n"
            f"INSERT INTO jobs.outbox (kind, payload) VALUES ('event', '{event}');\n"
            "SELECT pg_sleep(2.5);\nSELECT 1;\n")
        self.assertTrue(rx.wait_for(1, WAKE_BUDGET_S),
                        f"the delivery queued by the fan-out was not sent within "
                        f"{WAKE_BUDGET_S}s")
        self.assertEqual(heard, 1, "the worker notified itself about the jobs it queued")


class OneWorkerThreadTest(ReceiverMixin, StackTestCase):
    """One worker thread, so that one claim holds every job below."""
    stack_env = {"STOA_JOBS_POLL_INTERVAL_MS": "60000", "STOA_JOBS_CONCURRENCY": "1"}

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.db = Db(cls.stack)

    def test_07_quick_jobs_do_not_wait_behind_a_slow_one_of_their_claim(self):
        # One statement and one thread: one claim holds all four, the slow
        # delivery first in claim order. The no-ops run before it.
        rx = self.receiver(delay=4.0)
        endpoint_id = self.endpoint(rx.url, ["test.behind"])
        event = {"id": f"evt_{uuid.uuid4()}", "type": "test.behind", "created": 1, "data": {}}
        rows = self.db.rows(
            "INSERT INTO jobs.outbox (kind, payload, run_at) SELECT k, p::jsonb, now()"
            " FROM (VALUES (1, 'webhook.deliver', :'deliver'), (2, 'noop', '{}'),"
            " (3, 'noop', '{}'), (4, 'noop', '{}')) v(n, k, p) ORDER BY n RETURNING id, kind",
            deliver=json.dumps({"endpoint_id": endpoint_id, "event": event}))
        noops = [str(r["id"]) for r in rows if r["kind"] == "noop"]
        self.assertEqual(len(noops), 3)

        def noops_done():
            return self.db.value("SELECT count(*) FROM jobs.outbox WHERE id = ANY(:'ids'::bigint[])"
                                 " AND done_at IS NOT NULL", ids="{" + ",".join(noops) + "}")

        done, elapsed = wait_until(lambda: noops_done() == 3, 2.0, interval=0.05)
        self.assertTrue(done, f"{noops_done()} of 3 quick jobs done after {elapsed:.1f}s")
        self.assertTrue(rx.wait_for(1, 2.0), "the slow delivery never started")
        self.assertIsNone(self.db.value("SELECT done_at FROM jobs.outbox WHERE kind ="
                                        " 'webhook.deliver' AND payload->'event'->>'id' = :'e'",
                                        e=event["id"]),
                          "the slow delivery was already done: the test proves nothing")

