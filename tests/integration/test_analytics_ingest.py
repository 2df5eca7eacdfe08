"""Event ingestion under concurrency (SPEC §7, §9): a batch never waits
for another writer of the same hour, and the ids a batch claims are matched
back to its items whatever case the client wrote them in.
"""

import datetime
import hashlib
import os
import subprocess
import time
import unittest
import uuid

from authlib import SourceClientTestCase
from harness import OPEN_LIMITS, wait_until
from jobslib import Db

EVENTS = "/v1/analytics/events"


class IngestTest(SourceClientTestCase):
    stack_env = dict(OPEN_LIMITS)

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        try:
            cls.db = Db(cls.stack)
            cls.key = "stoa_ik_" + os.urandom(24).hex()[:32]
            cls.db.exec("INSERT INTO admin.ingest_keys (name, prefix, key_hash) VALUES"
                        " ('ingest test', :'prefix', decode(:'digest', 'hex'))",
                        prefix=cls.key[:16],
                        digest=hashlib.sha256(cls.key.encode()).hexdigest())
        except BaseException:
            cls._failed = True
            raise

    def send(self, c, events):
        return c.request("POST", EVENTS, {"events": events},
                         headers={"X-Ingest-Key": self.key})

    def stored(self, ids):
        return self.db.count("SELECT 1 FROM analytics.events WHERE id = ANY(:'ids'::uuid[])",
                             ids="{" + ",".join(ids) + "}")

    def hold(self, sql):
        """A psql session that runs sql in an open transaction and keeps it
        open until the test ends (or release() is called)."""
        argv = ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", self.stack.path("pg", "sock"),
                "-p", "5432", "-U", "stoa", "-d", "stoa"]
        proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, text=True, cwd="/")

        def release():
            if proc.poll() is None:
                proc.stdin.write("ROLLBACK;\n")
                proc.stdin.close()
                proc.wait(10)
            if proc.stderr:
                proc.stderr.close()

        self.addCleanup(release)
        proc.stdin.write("BEGIN;\n" + sql.rstrip().rstrip(";") + ";\n")
        proc.stdin.flush()
        self.assertTrue(wait_until(lambda: self.db.count(
            "SELECT 1 FROM pg_stat_activity WHERE state = 'idle in transaction'"
            " AND application_name = 'psql'") >= 1, 10), "the holding session did not start")
        return release

    def test_a_batch_does_not_wait_for_another_writer_of_its_hour(self):
        # Another writer of this hour (a batch not yet committed, or the
        # rollup taking the hour) holds its mark. A batch of the same hour
        # goes on beside it instead of queueing behind its commit.
        release = self.hold("INSERT INTO analytics.rollup_pending (hour)"
                            " VALUES (date_trunc('hour', now()))")
        c = self.client()
        ids = [str(uuid.uuid4()) for _ in range(3)]
        t0 = time.monotonic()
        resp = self.send(c, [{"id": i, "event": "beside"} for i in ids])
        elapsed = time.monotonic() - t0
        self.assertEqual(resp.status, 202, resp.body)
        self.assertEqual(resp.json["accepted"], 3)
        self.assertLess(elapsed, 4.0)
        self.assertEqual(self.stored(ids), 3)
        # Its own mark is there for the rollup, committed with the events.
        self.assertGreaterEqual(self.db.count(
            "SELECT 1 FROM analytics.rollup_pending WHERE hour = date_trunc('hour', now())"), 1)
        release()

    def test_ids_in_upper_case_are_matched(self):
        c = self.client()
        ids = [str(uuid.uuid4()) for _ in range(4)]
        items = [{"id": i.upper(), "event": "upper"} for i in ids]
        # The same id twice in one batch, in both cases: stored once.
        items.append({"id": ids[0], "event": "upper"})
        resp = self.send(c, items)
        self.assertEqual(resp.status, 202, resp.body)
        self.assertEqual(resp.json, {"accepted": 5, "rejected": []})
        self.assertEqual(self.stored(ids), 4)
        # Again in lower case, a day earlier: already stored.
        day_ago = (datetime.datetime.now(datetime.timezone.utc)
                   - datetime.timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
        resp = self.send(c, [{"id": i, "event": "upper", "timestamp": day_ago} for i in ids])
        self.assertEqual(resp.status, 202, resp.body)
        self.assertEqual(self.stored(ids), 4)

    def test_generated_and_given_ids_mixed_with_rejections(self):
        c = self.client()
        given = [str(uuid.uuid4()) for _ in range(3)]
        first = self.send(c, [{"id": given[0], "event": "mix"}])
        self.assertEqual(first.status, 202, first.body)
        items = [{"event": "mix", "distinct_id": "anon-1"},
                 {"id": given[0], "event": "mix"},      # stored before: dropped
                 {"event": "bad name"},                  # rejected by index
                 {"id": given[1], "event": "mix"},
                 {"event": "mix", "distinct_id": "anon-2"},
                 {"id": given[2], "event": "mix"}]
        resp = self.send(c, items)
        self.assertEqual(resp.status, 202, resp.body)
        self.assertEqual(resp.json["accepted"], 5)
        self.assertEqual(resp.json["rejected"], [{"index": 2, "error": "invalid_event"}])
        self.assertEqual(self.stored(given), 3)
        self.assertEqual(self.db.count("SELECT 1 FROM analytics.events WHERE event = 'mix'"
                                       " AND distinct_id IN ('anon-1', 'anon-2')"), 2)
        self.assertEqual(self.db.count("SELECT 1 FROM analytics.events WHERE event = 'mix'"), 5)


    def test_connections_lost_between_batches(self):
        # Every pooled Postgres connection of the pools dies (a restart, a
        # fail-over, an idle timeout upstream): the next batches open new
        # ones and are stored, once each, without a 503.
        ended = self.db.count(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = 'stoa'"
            " AND backend_type = 'client backend' AND pid <> pg_backend_pid()"
            " AND application_name <> 'psql'")
        self.assertGreaterEqual(ended, 1)
        c = self.client()
        ids = [str(uuid.uuid4()) for _ in range(12)]
        for at in range(0, 12, 2):
            resp = self.send(c, [{"id": i, "event": "reconnect"} for i in ids[at:at + 2]])
            self.assertEqual(resp.status, 202, resp.body)
            self.assertEqual(resp.json, {"accepted": 2, "rejected": []})
        self.assertEqual(self.stored(ids), 12)
        # The same batch again after another loss: nothing stored twice.
        self.db.count("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename ="
                      " 'stoa' AND backend_type = 'client backend' AND pid <> pg_backend_pid()"
                      " AND application_name <> 'psql'")
        resp = self.send(c, [{"id": i, "event": "reconnect"} for i in ids])
        self.assertEqual(resp.status, 202, resp.body)
        self.assertEqual(self.db.count("SELECT 1 FROM analytics.events WHERE event = 'reconnect'"),
                         12)


if __name__ == "__main__":
    unittest.main()
