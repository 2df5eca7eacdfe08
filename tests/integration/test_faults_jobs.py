"""End-to-end fault drills for pool supervision and the jobs worker's leases.

- A crash loop: kill -9 a pool's processes over and over until multiwatch
  gives up on them; the pool answers again within 5 s (the dev stack's
  watchdog starts it anew), and `stack.sh stop` leaves nothing behind.
- A dead jobs worker: kill -9 it while it holds claimed and in-flight jobs;
  the restarted worker finishes every one within 20 s of the restart, the
  attempt that was in flight is in admin.webhook_deliveries, and a job that
  runs longer than the lease keeps it (the heartbeat) so no second worker
  takes it.

Run from tests/integration:
    STOA_BIN_DIR=$PWD/../../bin python3 -m unittest test_faults_jobs -v
"""

import json
import os
import signal
import time
import uuid

from harness import StackTestCase, pid_alive, read_pid_file, wait_until
from jobslib import Db, ReceiverMixin, restart_stack_worker, stop_stack_worker


def webhook_event(event_type, **data):
    return {"id": f"evt_{uuid.uuid4()}", "type": event_type, "created": int(time.time()),
            "data": data}


class CrashLoopTest(StackTestCase):
    """A pool whose processes die over and over comes back by itself."""

    POOL = "billing"

    def healthz(self):
        return self.request("GET", f"/v1/{self.POOL}/healthz").status

    def test_01_crash_loop_does_not_kill_the_pool_for_good(self):
        self.assertEqual(self.healthz(), 200)
        first_supervisor = self.stack.pool_pid(self.POOL)
        self.assertTrue(first_supervisor and pid_alive(first_supervisor))
        kills = 0
        # At least 20 kill -9s in quick succession, every live process of
        # the pool each round, each given a moment to be respawned: more
        # deaths than multiwatch's retry limit (10 per child within 10 s).
        deadline = time.monotonic() + 20
        rounds = 0
        while rounds < 20 and time.monotonic() < deadline:
            rounds += 1
            for pid in self.stack.pool_children(self.POOL):
                try:
                    os.kill(pid, signal.SIGKILL)
                    kills += 1
                except ProcessLookupError:
                    pass
            time.sleep(0.1)
        self.assertGreaterEqual(kills, 20)
        # The drill did what it meant to: multiwatch gave up and exited.
        self.assertFalse(pid_alive(first_supervisor),
                         f"multiwatch {first_supervisor} survived {kills} kills: no crash loop")
        t0 = time.monotonic()
        ok, elapsed = wait_until(lambda: self.healthz() == 200, 5.0, interval=0.1)
        self.assertTrue(ok, f"the {self.POOL} pool does not answer 200 within 5 s after "
                            f"{kills} kills (status now {self.healthz()})")
        supervisor = self.stack.pool_pid(self.POOL)
        self.assertNotEqual(supervisor, first_supervisor)
        self.assertTrue(supervisor and pid_alive(supervisor))
        # Every pool keeps answering, and each restart is in the log.
        for pool in ("auth", "billing", "analytics", "admin"):
            self.assertEqual(self.request("GET", f"/v1/{pool}/healthz").status, 200, pool)
        with open(self.stack.path("log", "watchdog.log")) as f:
            self.assertIn(f"the {self.POOL} pool has no supervisor", f.read())
        print(f"\n  pool back {time.monotonic() - t0:.2f}s after the last of {kills} kills",
              flush=True)

    def test_02_stop_ends_the_watchdog(self):
        """stack.sh stop stops the watchdog first (the class teardown then
        checks that nothing of the stack survived): a pool stopped by
        `stop` stays stopped."""
        watchdog = read_pid_file(self.stack.path("pids", "watchdog.pid"))
        self.assertTrue(watchdog and pid_alive(watchdog), "no watchdog runs")
        rc, out = self.stack.stop()
        self.assertEqual(rc, 0, out)
        self.assertFalse(pid_alive(watchdog), "the watchdog outlived stack.sh stop")
        time.sleep(1.5)  # three watchdog ticks: nothing restarts a pool
        self.assertIsNone(read_pid_file(self.stack.path("pids", f"{self.POOL}.pid")))
        rc, out = self.stack._stack_sh("start", 150)
        self.assertEqual(rc, 0, out)
        self.assertEqual(self.healthz(), 200)


class JobLeaseTest(ReceiverMixin, StackTestCase):
    """Jobs held by a worker that was killed run again soon after a restart."""

    stack_env = {"STOA_JOBS_POLL_INTERVAL_MS": "1000"}

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.db = Db(cls.stack)

    def test_01_killed_worker_jobs_done_soon_after_restart(self):
        slow = self.receiver(delay=3.0)
        endpoint_id = self.endpoint(slow.url, ["test.lease"])
        events = [webhook_event("test.lease", n=i) for i in range(12)]
        # One statement, so the first worker thread to wake claims a whole
        # batch and holds jobs it has not started yet.
        jobs = [r["id"] for r in self.db.rows(
            "INSERT INTO jobs.outbox (kind, payload) SELECT 'webhook.deliver',"
            " jsonb_build_object('endpoint_id', :'ep'::text, 'event', e)"
            " FROM jsonb_array_elements(:'events'::jsonb) e RETURNING id",
            ep=endpoint_id, events=json.dumps(events))]
        self.assertEqual(len(jobs), len(events))
        # Every worker thread has one delivery in flight and holds more
        # claimed behind it.
        self.assertTrue(slow.wait_for(2, 10), "the deliveries never started")
        time.sleep(0.5)
        in_flight = {json.loads(r["body"])["id"] for r in slow.requests}
        held = self.db.rows("SELECT id FROM jobs.outbox WHERE id = ANY(:'ids'::bigint[])"
                            " AND locked_by IS NOT NULL AND done_at IS NULL",
                            ids="{" + ",".join(map(str, jobs)) + "}")
        self.assertGreater(len(held), len(in_flight), "no claimed-but-unstarted job")
        old_pid = stop_stack_worker(self.stack, signal.SIGKILL)
        self.addCleanup(restart_stack_worker, self.stack)
        slow.delay = 0.0

        # The attempts in flight were recorded before they were sent.
        for event_id in in_flight:
            log = self.db.deliveries(event_id)
            self.assertEqual([d["attempt"] for d in log], [1],
                             f"in-flight attempt of {event_id} missing from the log: {log}")
            self.assertIsNone(log[0]["status"], log)

        t0 = time.monotonic()
        new_pid = restart_stack_worker(self.stack)
        self.assertNotEqual(new_pid, old_pid)

        def all_done():
            rows = self.db.rows("SELECT done_at IS NOT NULL AS done FROM jobs.outbox"
                                " WHERE id = ANY(:'ids'::bigint[])",
                                ids="{" + ",".join(map(str, jobs)) + "}")
            return len(rows) == len(jobs) and all(r["done"] for r in rows)

        done, _ = wait_until(all_done, 20.0, interval=0.2)
        took = time.monotonic() - t0
        self.assertTrue(done, "jobs of the killed worker still open 20 s after the restart: "
                        + repr(self.db.rows("SELECT id, attempts, locked_by, locked_until"
                                            " FROM jobs.outbox WHERE done_at IS NULL"
                                            " AND kind = 'webhook.deliver'")))
        print(f"\n  every job done {took:.1f}s after the restart", flush=True)
        # Every event reached the receiver; an interrupted one twice, with
        # the same webhook-id (Standard Webhooks receivers deduplicate).
        seen = [json.loads(r["body"])["id"] for r in slow.requests]
        self.assertEqual(set(seen), {e["id"] for e in events})
        for event_id in in_flight:
            log = self.db.deliveries(event_id)
            self.assertEqual([d["attempt"] for d in log], [1, 2], log)
            self.assertIsNone(log[0]["status"], log)
            self.assertEqual(log[0]["error"], "interrupted", log)
            self.assertEqual(log[1]["status"], 200, log)

    def test_02_heartbeat_renews_the_lease_of_a_long_job(self):
        """A delivery that runs for a while keeps a short lease that moves
        forward, and runs once."""
        slow = self.receiver(delay=11.0)
        endpoint_id = self.endpoint(slow.url, ["test.long"])
        event = webhook_event("test.long")
        job_id = self.db.insert_job("webhook.deliver", {"endpoint_id": endpoint_id,
                                                         "event": event})
        self.assertTrue(slow.wait_for(1, 10), "the delivery never started")
        until_sql = ("SELECT extract(epoch FROM locked_until)::float8 AS until,"
                     " extract(epoch FROM locked_until - now())::float8 AS left_s"
                     " FROM jobs.outbox WHERE id = :'id'")
        first = self.db.row(until_sql, id=job_id)
        self.assertLessEqual(first["left_s"], 15.5, f"the lease is short: {first}")
        # A heartbeat every 5 s: at least one falls in 8 s, and it moves the
        # lease on by at least the 3 s since the claim's.
        time.sleep(8.0)
        later = self.db.row(until_sql, id=job_id)
        self.assertIsNotNone(later["until"], f"the job in hand lost its lease: {later}")
        self.assertGreater(later["until"] - first["until"], 2.5,
                           f"the lease was not renewed while the job ran: {first} {later}")
        self.assertLessEqual(later["left_s"], 15.5, later)
        row, _ = wait_until(lambda: self.db.row(
            "SELECT attempts FROM jobs.outbox WHERE id = :'id' AND done_at IS NOT NULL",
            id=job_id), 20.0, interval=0.2)
        self.assertTrue(row, "the long delivery did not finish")
        self.assertEqual(row["attempts"], 1, row)
        self.assertEqual(slow.count(), 1)
        log = self.db.deliveries(event["id"])
        self.assertEqual([(d["attempt"], d["status"]) for d in log], [(1, 200)], log)
