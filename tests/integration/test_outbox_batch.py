"""End-to-end checks of the jobs worker's batches: the `noop` kind, the
successes of a claim written together, a failure inside a batch, and a
worker killed after its jobs ran but before their outcome was written.

- noop jobs all end done, once each, and their outcomes are written a
  batch at a time (far fewer distinct done_at than jobs: one UPDATE sets
  a whole batch's done_at to its transaction's now()).
- A failing job in a batch of noops: the others are done, the failing
  one is dead (a permanent failure) or waits for its retry (a webhook to a
  dead endpoint, with the kind's first backoff), never done; jobs handed
  back by a thread that met a slow job keep a true attempt count.
- A worker SIGKILLed while it holds jobs that ran but whose batch was not
  yet written: the jobs run again after the lease, on another worker, and
  end done once, on attempt 2.

Run from tests/integration:
    STOA_BIN_DIR=$PWD/../../bin python3 -m unittest test_outbox_batch -v
"""

import re
import signal
import subprocess
import time
import uuid

from harness import StackTestCase, free_port, wait_until
from jobslib import Db, Worker, log_lines, restart_stack_worker, stop_stack_worker

DONE_LINE = re.compile(r"^job (\d+) \((\S+)\) done on attempt (\d+)$")


def tag():
    return uuid.uuid4().hex[:10]


def id_array(ids):
    return "{" + ",".join(str(i) for i in ids) + "}"


class TableLock:
    """A psql session holding an ACCESS EXCLUSIVE lock on a table until
    release(): whatever reads the table waits behind it."""

    def __init__(self, stack, table):
        self.proc = subprocess.Popen(
            ["psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1",
             "-h", stack.path("pg", "sock"), "-p", "5432", "-U", "stoa", "-d", "stoa"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            cwd="/")
        self.proc.stdin.write(f"BEGIN;\nLOCK TABLE {table} IN ACCESS EXCLUSIVE MODE;\n"
                              "SELECT 'locked';\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline().strip()
        if line != "locked":
            self.release()
            raise AssertionError(f"could not lock {table}: {line!r}")

    def release(self):
        if self.proc.poll() is None:
            try:
                self.proc.stdin.write("ROLLBACK;\n")
                self.proc.stdin.close()
            except BrokenPipeError:
                pass
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc.stdout.close()


class OutboxBatchTest(StackTestCase):
    """One stack; a test that needs one worker thread stops the stack's
    worker and runs its own until it ends."""

    # Due retries and expired leases are looked for at this interval (new
    # rows wake the worker at once through NOTIFY).
    stack_env = {"STOA_JOBS_POLL_INTERVAL_MS": "1000"}

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.db = Db(cls.stack)

    def jobs(self, ids):
        return {r["id"]: r for r in self.db.rows(
            "SELECT id, kind, attempts, last_error, locked_by,"
            " extract(epoch FROM run_at - now())::float8 AS run_in_s,"
            " done_at IS NOT NULL AS done, dead_at IS NOT NULL AS dead"
            " FROM jobs.outbox WHERE id = ANY(:'ids'::bigint[])", ids=id_array(ids))}

    def done_lines(self, ids):
        """{job id: [(attempt, pid), ...]} from the "done on attempt" lines."""
        wanted = set(ids)
        out = {}
        for line in log_lines(self.stack):
            m = DONE_LINE.match(line.get("msg", ""))
            if m and int(m.group(1)) in wanted:
                out.setdefault(int(m.group(1)), []).append((int(m.group(3)), line.get("pid")))
        return out

    def wait_settled(self, ids, timeout):
        """Waits until no job of ids is held by a worker any more."""
        ok, _ = wait_until(lambda: all(r["locked_by"] is None and r["attempts"] >= 1
                                       for r in self.jobs(ids).values()), timeout, interval=0.1)
        return ok

    def swap_worker(self, env):
        """The stack's worker stopped, one of ours with these overrides in
        its place until the test ends."""
        stop_stack_worker(self.stack)
        self.addCleanup(restart_stack_worker, self.stack)
        worker = Worker(self.stack, env)
        self.addCleanup(worker.kill)
        return worker

    def test_01_noop_jobs_all_complete_a_batch_at_a_time(self):
        n = 2000
        ids = [r["id"] for r in self.db.rows(
            "INSERT INTO jobs.outbox (kind) SELECT 'noop' FROM generate_series(1, :'n'::int)"
            " RETURNING id", n=str(n))]
        self.assertEqual(len(ids), n)
        open_sql = ("SELECT count(*) AS n FROM jobs.outbox WHERE id = ANY(:'ids'::bigint[])"
                    " AND done_at IS NULL")
        done, took = wait_until(lambda: self.db.value(open_sql, ids=id_array(ids)) == 0, 30,
                                interval=0.1)
        self.assertTrue(done, f"{self.db.value(open_sql, ids=id_array(ids))} of {n} noop jobs"
                              " still open after 30 s")
        summary = self.db.row(
            "SELECT count(*) AS n, count(*) FILTER (WHERE attempts = 1) AS once,"
            " count(*) FILTER (WHERE dead_at IS NOT NULL) AS dead,"
            " count(*) FILTER (WHERE locked_by IS NOT NULL OR locked_until IS NOT NULL"
            " OR last_error IS NOT NULL) AS unclean,"
            " count(DISTINCT done_at) AS done_statements"
            " FROM jobs.outbox WHERE id = ANY(:'ids'::bigint[])", ids=id_array(ids))
        statements = summary.pop("done_statements")
        self.assertEqual(summary, {"n": n, "once": n, "dead": 0, "unclean": 0})
        # One UPDATE per batch: a job-at-a-time completion would give about
        # one done_at per job.
        self.assertLessEqual(statements, n // 4,
                             f"{statements} completion statements for {n} noop jobs")
        runs = self.done_lines(ids)
        self.assertEqual(sorted(runs), sorted(ids))
        self.assertEqual({i: r for i, r in runs.items() if len(r) != 1 or r[0][0] != 1}, {})
        print(f"\n  {n} noop jobs done in {took:.2f}s, {statements} completion statements",
              flush=True)

    def test_02_a_failing_job_does_not_fail_its_batch(self):
        dead_port = free_port()  # nothing listens there: connection refused
        endpoint_id, _ = self.db.insert_endpoint(f"http://127.0.0.1:{dead_port}/hook",
                                                 ["test.unused"])
        self.addCleanup(self.db.retire_endpoint, endpoint_id)
        stop_stack_worker(self.stack)
        self.addCleanup(restart_stack_worker, self.stack)
        # 60 jobs due one after the other (an hour ago: before anything
        # else), noops but for a broken event (no id: dead at once) at 30
        # and a webhook delivery to the dead endpoint (retried with its
        # backoff) at 45. One worker thread claims 4, 8, 16, then 32: jobs
        # 29 to 60 in one batch, with both failures in it, and hands back
        # what it holds beyond 4 jobs from the (slow) delivery on.
        batch = tag()
        rows = self.db.rows(
            "INSERT INTO jobs.outbox (kind, payload, max_attempts, run_at)"
            " SELECT CASE g WHEN 30 THEN 'event' WHEN 45 THEN 'webhook.deliver' ELSE 'noop' END,"
            " CASE g WHEN 30 THEN jsonb_build_object('type', 'test.broken')"
            " WHEN 45 THEN jsonb_build_object('endpoint_id', :'ep'::text, 'event',"
            " jsonb_build_object('id', 'evt_' || :'batch', 'type', 'test.unused',"
            " 'created', 0, 'data', '{}'::jsonb))"
            " ELSE jsonb_build_object('n', g) END, 8,"
            " now() - interval '1 hour' + g * interval '1 ms'"
            " FROM generate_series(1, 60) g ORDER BY g RETURNING id, kind",
            ep=endpoint_id, batch=batch)
        ids = sorted(r["id"] for r in rows)
        broken, delivery = ids[29], ids[44]
        self.addCleanup(self.db.exec, "UPDATE jobs.outbox SET dead_at = now()"
                        " WHERE id = :'id' AND done_at IS NULL", id=delivery)
        noops = [i for i in ids if i not in (broken, delivery)]
        self.swap_worker({"STOA_JOBS_CONCURRENCY": "1"})
        self.assertTrue(self.wait_settled(ids, 20), self.jobs(ids))
        jobs = self.jobs(ids)

        for i in noops:
            self.assertTrue(jobs[i]["done"] and not jobs[i]["dead"], jobs[i])
            self.assertEqual(jobs[i]["attempts"], 1, jobs[i])
            self.assertIsNone(jobs[i]["last_error"], jobs[i])
        self.assertTrue(jobs[broken]["dead"], jobs[broken])
        self.assertFalse(jobs[broken]["done"], jobs[broken])
        self.assertEqual(jobs[broken]["attempts"], 1, jobs[broken])
        self.assertIn("event needs id and type", jobs[broken]["last_error"] or "", jobs[broken])
        row = jobs[delivery]
        self.assertFalse(row["done"] or row["dead"], row)
        self.assertEqual(row["attempts"], 1, row)
        self.assertTrue(row["last_error"], row)
        # The kind's first delay: 5 s (+-10%) from the failure.
        self.assertGreater(row["run_in_s"], 1.0, row)
        self.assertLessEqual(row["run_in_s"], 5.6, row)
        # The batch's successes share one completion: the noops of 29..44
        # (before the delivery) have one done_at, written before it started.
        stamps = self.db.rows(
            "SELECT DISTINCT done_at FROM jobs.outbox WHERE id = ANY(:'ids'::bigint[])",
            ids=id_array([i for i in ids[28:44] if i != broken]))
        self.assertEqual(len(stamps), 1, stamps)
        runs = self.done_lines(ids)
        self.assertEqual(sorted(runs), noops)
        self.assertEqual({i: r for i, r in runs.items() if [a for a, _ in r] != [1]}, {})

    def test_03_killed_before_its_batch_was_written_runs_again_once(self):
        worker = self.swap_worker({"STOA_JOBS_CONCURRENCY": "1",
                                   # The lock wait below must not time out.
                                   "STOA_DB_STATEMENT_TIMEOUT_MS": "120000"})
        # An event's fan-out reads admin.webhook_endpoints: with that table
        # locked, the worker's thread runs three noops, then waits in the
        # event, their successes not yet written. Due an hour ago, one
        # after the other, so they are the first claimed (4 at a time).
        lock = TableLock(self.stack, "admin.webhook_endpoints")
        self.addCleanup(lock.release)
        batch = tag()
        ids = [r["id"] for r in self.db.rows(
            "INSERT INTO jobs.outbox (kind, payload, run_at)"
            " SELECT CASE WHEN g < 4 THEN 'noop' ELSE 'event' END,"
            " CASE WHEN g < 4 THEN '{}'::jsonb ELSE jsonb_build_object('id', 'evt_' || :'b',"
            " 'type', 'test.kill', 'created', 0, 'data', '{}'::jsonb) END,"
            " now() - interval '1 hour' + g * interval '1 ms'"
            " FROM generate_series(1, 4) g ORDER BY g RETURNING id",
            b=batch)]
        ids.sort()
        waiting_sql = ("SELECT count(*) AS n FROM pg_stat_activity WHERE usename = 'stoa'"
                       " AND wait_event_type = 'Lock' AND query LIKE 'INSERT INTO jobs.outbox%'")
        waiting, _ = wait_until(lambda: self.db.value(waiting_sql) >= 1, 15, interval=0.1)
        self.assertTrue(waiting, f"the fan-out never waited on the lock: {self.jobs(ids)}")
        held = self.jobs(ids)
        for i in ids:
            self.assertEqual(held[i]["attempts"], 1, held[i])
            self.assertFalse(held[i]["done"] or held[i]["dead"],
                             f"written before the batch ended: {held[i]}")
            self.assertEqual((held[i]["locked_by"] or "").split(":")[1:2], [str(worker.pid)],
                             held[i])

        worker.kill()  # SIGKILL
        lock.release()
        t0 = time.monotonic()
        restart_stack_worker(self.stack)
        # The dead worker's leases hold for a while: nothing runs before.
        time.sleep(2.0)
        self.assertEqual([i for i, r in self.jobs(ids).items() if r["done"]], [],
                         "a job held by the dead worker was taken before its lease ran out")

        self.assertTrue(wait_until(lambda: all(r["done"] for r in self.jobs(ids).values()),
                                   25, interval=0.2)[0], self.jobs(ids))
        took = time.monotonic() - t0
        jobs = self.jobs(ids)
        for i in ids:
            self.assertTrue(jobs[i]["done"] and not jobs[i]["dead"], jobs[i])
            self.assertEqual(jobs[i]["attempts"], 2, jobs[i])
            self.assertIsNone(jobs[i]["locked_by"], jobs[i])
        # Done once each: on attempt 2, by the new worker; the killed one
        # never recorded a success.
        runs = self.done_lines(ids)
        self.assertEqual(sorted(runs), ids)
        for i, r in runs.items():
            self.assertEqual([a for a, _ in r], [2], (i, r))
            self.assertNotEqual(r[0][1], worker.pid, (i, r))
        print(f"\n  re-run and done {took:.1f}s after the kill", flush=True)
