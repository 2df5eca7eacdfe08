"""The streaming replica and the fail-over to it (SPEC §1, §10;
docs/operations.md, "Replica and fail-over").

A stack started with replica = on runs a second Postgres in run/pg-replica,
fed by streaming replication. A write through nginx shows on the replica,
`stoactl replica status` shows it streaming with a small lag, and after the
primary's postmaster is killed -9 under a load of registrations,
`stoactl failover` fences it, promotes the replica and repoints the stack:
no acknowledged registration (201) is missing afterwards with
replica_sync = on; with replica_sync = off the count is measured and
printed. The fenced primary stays down across `stack.sh start`.

Run: cd tests/integration && STOA_BIN_DIR=<worktree>/bin python3 -m unittest test_replica -v
"""

import os
import signal
import subprocess
import sys
import threading
import time
import unittest
import uuid

from authlib import SourceClient, SourceClientTestCase
from harness import BIN_DIR, OPEN_LIMITS, PG_BIN, read_pid_file, wait_until

GOOD_PASSWORD = "Tq7#vLp2!xRz-9mW"
WRITER_THREADS = 4
LOAD_BEFORE_KILL_S = 1.0
LOAD_AFTER_FAILOVER_S = 1.0
SLOTS = {"pg": 5432, "pg-replica": 5433}


class ReplicaCase(SourceClientTestCase):
    """One stack with a replica; subclasses choose replica_sync."""

    replica_sync = "on"
    # Whether test_2 also restarts the stack to see the fence hold (once
    # is enough: the fence does not depend on the mode).
    check_fence_on_start = True
    # Whether test_3 fails back (the same steps whatever the mode).
    check_fail_back = True
    acked = set()
    stack_env = {}

    @classmethod
    def setUpClass(cls):
        cls.stack_env = {**OPEN_LIMITS, "STOA_REPLICA": "on",
                         "STOA_REPLICA_SYNC": cls.replica_sync}
        super().setUpClass()

    # helpers

    def psql(self, slot, sql):
        proc = subprocess.run(
            [os.path.join(PG_BIN, "psql"), "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1",
             "-h", self.stack.path(slot, "sock"), "-p", str(SLOTS[slot]),
             "-U", "stoa", "-d", "stoa", "-c", sql],
            capture_output=True, text=True, timeout=30, cwd="/")
        self.assertEqual(proc.returncode, 0, proc.stderr)
        return proc.stdout

    def stoactl(self, *args, timeout=120):
        # The stack's own environment: the jobs worker that the repoint
        # command starts again keeps this stack's metrics port.
        return subprocess.run([os.path.join(BIN_DIR, "stoactl"), "--config",
                               self.stack.conf_path(), *args],
                              capture_output=True, text=True, timeout=timeout,
                              env=self.stack._env, stdin=subprocess.DEVNULL)

    def replica_status(self):
        done = self.stoactl("replica", "status")
        self.assertEqual(done.returncode, 0, done.stdout + done.stderr)
        status = {}
        for line in done.stdout.splitlines():
            key, _, value = line.partition(" ")
            status[key] = value.strip()
        return status

    def register(self, c, email):
        return c.request("POST", "/v1/auth/register",
                         {"email": email, "password": GOOD_PASSWORD, "name": "Replica"})

    def conf_value(self, key):
        value = None
        with open(self.stack.conf_path()) as f:
            for line in f:
                name, sep, rest = line.partition("=")
                if sep and name.strip() == key:
                    value = rest.strip()
        return value

    # tests

    def test_1_write_seen_on_replica_and_status(self):
        done = self.stack._stack_sh("status", 30)
        self.assertEqual(done[0], 0, done[1])
        self.assertRegex(done[1], r"pg-replica +up \(replica, " + ("sync" if self.replica_sync == "on"
                                                                  else "async"))
        c = self.client()
        email = self.unique_email("replicated")
        self.assert_ok_json(self.register(c, email), 201)
        seen, took = wait_until(
            lambda: self.psql("pg-replica", f"SELECT count(*) FROM auth.users WHERE email = '{email}'")
            .strip() == "1", 5.0, interval=0.05)
        self.assertTrue(seen, "the registration never reached the replica")
        # The replica refuses writes: it is a standby.
        self.assertEqual(self.psql("pg-replica", "SELECT pg_is_in_recovery()").strip(), "t")

        status = self.replica_status()
        self.assertEqual(status["in_recovery"], "yes")
        self.assertEqual(status["state"], "streaming")
        self.assertTrue(status["mode"].startswith("sync" if self.replica_sync == "on" else "async"),
                        status)
        self.assertLess(int(status["lag_bytes"]), 1 << 20, status)
        self.assertLess(float(status["lag_seconds"]), 1.0, status)
        sys.stderr.write(f"\n[replica_sync={self.replica_sync}] seen on the replica after "
                         f"{took * 1000:.0f} ms; status {status}\n")

    def test_2_failover_under_load(self):
        stop = threading.Event()
        results = []  # (answered at, email, status, sent at): monotonic times
        lock = threading.Lock()

        def writer(n):
            c = SourceClient(self.stack)
            c.timeout = 10.0
            try:
                i = 0
                while not stop.is_set():
                    i += 1
                    email = f"fo.{n}.{i}.{uuid.uuid4().hex[:8]}@example.com"
                    sent = time.monotonic()
                    try:
                        status = self.register(c, email).status
                    except OSError:
                        status = 0
                        c.close()
                    with lock:
                        results.append((time.monotonic(), email, status, sent))
            finally:
                c.close()

        threads = [threading.Thread(target=writer, args=(n,), daemon=True)
                   for n in range(WRITER_THREADS)]
        for t in threads:
            t.start()
        try:
            time.sleep(LOAD_BEFORE_KILL_S)
            pid = read_pid_file(self.stack.path("pg", "data", "postmaster.pid"))
            self.assertIsNotNone(pid)
            killed_at = time.monotonic()
            os.kill(pid, signal.SIGKILL)
            done = self.stoactl("failover")
            failover_s = time.monotonic() - killed_at
            self.assertEqual(done.returncode, 0, done.stdout + done.stderr)
            served, _ = wait_until(
                lambda: any(sent > killed_at and s == 201 for _, _, s, sent in list(results)),
                15.0, interval=0.05)
            self.assertTrue(served, "no registration succeeded after the fail-over")
            time.sleep(LOAD_AFTER_FAILOVER_S)
        finally:
            stop.set()
            for t in threads:
                t.join(30)

        acked = {email for _, email, s, _ in results if s == 201}
        type(self).acked = acked
        # Serving again: the first write sent after the kill that succeeded.
        first_after = min(t for t, _, s, sent in results if sent > killed_at and s == 201)
        statuses = {}
        for _, _, s, _ in results:
            statuses[s] = statuses.get(s, 0) + 1
        # Outage answers are 502/503 (or a dropped connection), never 500.
        self.assertNotIn(500, statuses, statuses)

        stored = set(self.psql("pg-replica",
                               "SELECT email FROM auth.users WHERE email LIKE 'fo.%'").split())
        missing = acked - stored
        acked_before = {e for t, e, s, _ in results if s == 201 and t < killed_at}
        sys.stderr.write(
            f"\n[replica_sync={self.replica_sync}] fail-over: {len(acked)} registrations "
            f"acknowledged ({len(acked_before)} before the kill), {len(missing)} missing after "
            f"the fail-over; stoactl failover took {failover_s:.2f} s after the kill, first 201 "
            f"{first_after - killed_at:.2f} s after it; answers {statuses}\n"
            f"{done.stdout}")
        self.assertGreater(len(acked_before), 0, "no load before the kill")
        if self.replica_sync == "on":
            self.assertEqual(missing, set(), "acknowledged writes lost with replica_sync = on")

        # The stack is repointed: database_url names the promoted server.
        self.assertIn(self.stack.path("pg-replica", "sock"), self.conf_value("database_url"))
        self.assertEqual(self.conf_value("replica_url"), "")
        self.assertEqual(self.psql("pg-replica", "SELECT pg_is_in_recovery()").strip(), "f")

        # Fenced: a start of the whole stack leaves the old primary down.
        if self.check_fence_on_start:
            rc, out = self.stack._stack_sh("start", 120)
            self.assertEqual(rc, 0, out)
            self.assertIn("fenced", out)
        self.assertFalse(self.stack.postgres_running(), "the fenced primary came back")
        rc, out = self.stack._stack_sh("status", 30)
        self.assertEqual(rc, 0, out)
        self.assertRegex(out, r"postgres +fenced")
        self.assertRegex(out, r"pg-replica +up \(primary")

        # Reads and writes through nginx on the promoted server.
        c = self.client()
        email = sorted(acked)[0]
        resp = c.request("POST", "/v1/auth/login", {"email": email, "password": GOOD_PASSWORD})
        token = self.assert_ok_json(resp)["access_token"]
        me = self.assert_ok_json(c.request("GET", "/v1/me", token=token))
        self.assertEqual(me["email"], email)
        self.assert_ok_json(self.register(c, self.unique_email("after")), 201)
        # No replica any more: status says so instead of guessing.
        done = self.stoactl("replica", "status")
        self.assertEqual(done.returncode, 1, done.stdout)
        self.assertIn("no replica", done.stderr)

    def test_3_fail_back(self):
        if not self.check_fail_back:
            self.skipTest("fail-back is the same in both modes; checked once")
        self.assertTrue(self.acked, "test_2 must run first")
        # The old primary is re-made as a replica of the new one...
        rc, out = self.stack._stack_sh("rejoin", 120)
        self.assertEqual(rc, 0, out)
        rc, out = self.stack._stack_sh("status", 30)
        self.assertEqual(rc, 0, out)
        self.assertRegex(out, r"\npg +up \(replica, sync")
        self.assertEqual(self.psql("pg", "SELECT pg_is_in_recovery()").strip(), "t")
        status = self.replica_status()
        self.assertEqual(status["state"], "streaming", status)
        self.assertIn(self.stack.path("pg", "sock"), self.conf_value("replica_url"))
        # ...and a planned fail-over (the primary alive) moves the roles back.
        done = self.stoactl("failover")
        self.assertEqual(done.returncode, 0, done.stdout + done.stderr)
        self.assertIn(self.stack.path("pg", "sock"), self.conf_value("database_url"))
        self.assertEqual(self.psql("pg", "SELECT pg_is_in_recovery()").strip(), "f")
        self.assertTrue(os.path.exists(self.stack.path("pg-replica", "fenced")))
        rc, out = self.stack._stack_sh("rejoin", 120)
        self.assertEqual(rc, 0, out)
        self.assertRegex(self.stack._stack_sh("status", 30)[1],
                         r"pg-replica +up \(replica, sync")

        stored = set(self.psql("pg", "SELECT email FROM auth.users WHERE email LIKE 'fo.%'")
                     .split())
        self.assertEqual(self.acked - stored, set(), "writes lost by the fail-back")
        c = self.client()
        email = self.unique_email("failedback")
        ok, _ = wait_until(lambda: self.register(c, email).status == 201, 10.0, interval=0.2)
        self.assertTrue(ok, "no registration after the fail-back")
        seen, _ = wait_until(
            lambda: self.psql("pg-replica", f"SELECT count(*) FROM auth.users WHERE email = '{email}'")
            .strip() == "1", 5.0, interval=0.05)
        self.assertTrue(seen, "the new replica does not receive writes")


class ReplicaSyncTest(ReplicaCase):
    replica_sync = "on"


class ReplicaAsyncTest(ReplicaCase):
    replica_sync = "off"
    check_fence_on_start = False
    check_fail_back = False


del ReplicaCase

if __name__ == "__main__":
    unittest.main()
