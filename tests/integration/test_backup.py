"""End-to-end tests of backups and point-in-time recovery (SPEC §10): the
stack archives WAL through pgBackRest into run/backup; `stoactl backup`,
`backup list`, `backup check` and `restore --time T`. A restore to a time
between two registrations finds exactly the first, and the stack serves
requests through nginx afterwards. Bad times are refused with the stack
left as it was.

Run from tests/integration:
    STOA_BIN_DIR=<repo>/bin python3 -m unittest test_backup -v
"""

import datetime
import os
import re
import secrets
import subprocess
import tempfile
import time
import unittest

from authlib import SourceClientTestCase
from billinglib import stoactl_env
from harness import BIN_DIR, REPO, START_TIMEOUT, STOP_TIMEOUT, Db, wait_until
from test_mfa import code_for_step, current_step, settle

GOOD_PASSWORD = "Tq7#vLp2!xRz-9mW"
LABEL_RE = r"\d{8}-\d{6}F"


def utc_now_text():
    return datetime.datetime.now(datetime.timezone.utc).isoformat()


class BackupTest(SourceClientTestCase):
    """One stack; the tests run in name order and build on each other: no
    backup yet, a full backup, its check, then restores."""

    stack_env = {"STOA_RATE_AUTH": "1000r/s", "STOA_BURST_AUTH": "1000"}

    def stoactl(self, *args, timeout=300):
        return subprocess.run([os.path.join(BIN_DIR, "stoactl"), "--config",
                               self.stack.conf_path(), *args],
                              capture_output=True, text=True, timeout=timeout,
                              env=stoactl_env(), stdin=subprocess.DEVNULL)

    def register(self, client, email):
        resp = client.request("POST", "/v1/auth/register",
                              {"email": email, "password": GOOD_PASSWORD, "name": "Backup"})
        return self.assert_ok_json(resp, 201)["user"]

    def login_status(self, client, email):
        return client.request("POST", "/v1/auth/login",
                              {"email": email, "password": GOOD_PASSWORD}).status

    def user_count(self, email):
        return Db(self.stack).count("SELECT 1 FROM auth.users WHERE lower(email) = lower(:'e')",
                                    e=email)

    def assert_serving(self):
        """Register and log in through nginx: the pools reach Postgres."""
        c = self.client()
        email = self.unique_email("serving")
        self.register(c, email)
        self.assertEqual(self.login_status(c, email), 200)
        return email

    # --- before any backup ------------------------------------------------

    def test_10_archiving_is_on_and_the_stanza_is_made_lazily(self):
        db = Db(self.stack)
        self.assertEqual(db.value("SELECT current_setting('archive_mode') AS v"), "on")
        self.assertLessEqual(int(db.value("SELECT setting AS v FROM pg_settings WHERE name = 'archive_timeout'")), 60)
        self.assertIn("archive-push", db.value("SELECT current_setting('archive_command') AS v"))
        conf = self.stack.path("backup", "pgbackrest.conf")
        self.assertTrue(os.path.exists(conf), conf)
        # No pgBackRest run at start: the first backup creates the stanza.
        self.assertFalse(os.path.exists(self.stack.path("backup", "repo", "archive", "stoa")))
        proc = self.stoactl("backup", "list")
        self.assertEqual(proc.returncode, 0, proc.stderr)
        self.assertIn("no backups", proc.stdout)
        # Archiving without a stanza does not fail (nothing piles up in
        # pg_wal, no retry loop): a closed segment is taken at once.
        proc = subprocess.run(["psql", "-X", "-q", "-At", "-h", self.stack.path("pg", "sock"),
                               "-p", "5432", "-U", "postgres", "-d", "postgres",
                               "-c", "SELECT pg_switch_wal()"],
                              capture_output=True, text=True, timeout=30, cwd="/")
        self.assertEqual(proc.returncode, 0, proc.stderr)
        archived, _ = wait_until(
            lambda: db.value("SELECT archived_count AS n FROM pg_stat_archiver") >= 1, 10,
            interval=0.2)
        self.assertTrue(archived, "the archiver took no segment")
        self.assertEqual(db.value("SELECT failed_count AS n FROM pg_stat_archiver"), 0)

    def test_11_restore_refuses_bad_times_and_leaves_the_stack_up(self):
        cases = ["garbage", "", "2026-02-30T10:00:00Z", "2025-02-29T10:00:00Z",
                 "2026-13-01T10:00:00Z", "2026-12-01T24:00:00Z", "2026-12-01T10:60:00Z",
                 "2026-12-01T10:00:00", "2026-12-01T10:00:00+25:00", "2026-12-01T10:00:00Zjunk",
                 "2026-12-01T10:00:00.1234567Z", "1969-12-31T23:59:59Z"]
        for when in cases:
            with self.subTest(when=when):
                proc = self.stoactl("restore", "--time", when)
                self.assertEqual(proc.returncode, 2, proc.stdout + proc.stderr)
                self.assertIn("is not a valid time", proc.stderr)
        future = (datetime.datetime.now(datetime.timezone.utc)
                  + datetime.timedelta(days=1)).isoformat()
        proc = self.stoactl("restore", "--time", future)
        self.assertEqual(proc.returncode, 1, proc.stderr)
        self.assertIn("in the future", proc.stderr)
        proc = self.stoactl("restore", "--time", utc_now_text())
        self.assertEqual(proc.returncode, 1, proc.stderr)
        self.assertIn("no backup", proc.stderr)
        self.assertTrue(self.stack.postgres_running())
        self.assert_serving()

    # --- a backup -----------------------------------------------------------

    def test_20_backup_and_list(self):
        type(self).before_backup = utc_now_text()
        proc = self.stoactl("backup", "--type", "full")
        self.assertEqual(proc.returncode, 0, proc.stdout + proc.stderr)
        self.assertRegex(proc.stdout, rf"backup {LABEL_RE} \(full\) done")
        label = re.search(LABEL_RE, proc.stdout).group(0)
        proc = self.stoactl("backup", "list")
        self.assertEqual(proc.returncode, 0, proc.stderr)
        self.assertRegex(proc.stdout, rf"(?m)^{label}\s+full\s+\d{{4}}-\d\d-\d\dT")
        proc = self.stoactl("backup", "--type", "bogus")
        self.assertEqual(proc.returncode, 2)

    def test_30_backup_check_counts_match(self):
        db = Db(self.stack)
        users = db.value("SELECT count(*) AS n FROM auth.users")
        subscriptions = db.value("SELECT count(*) AS n FROM billing.subscriptions")
        proc = self.stoactl("backup", "check")
        self.assertEqual(proc.returncode, 0, proc.stdout + proc.stderr)
        counts = dict(re.findall(r"(?m)^([a-z_]+\.[a-z_]+)\s+(\d+)$", proc.stdout))
        self.assertEqual(set(counts), {"auth.users", "billing.subscriptions", "jobs.outbox"},
                         proc.stdout)
        # Nothing registered since the backup; the worker may have queued
        # scheduled jobs since.
        self.assertGreaterEqual(users, 2)
        self.assertEqual(int(counts["auth.users"]), users)
        self.assertEqual(int(counts["billing.subscriptions"]), subscriptions)
        self.assertGreater(int(counts["jobs.outbox"]), 0)
        self.assertLessEqual(int(counts["jobs.outbox"]),
                             db.value("SELECT count(*) AS n FROM jobs.outbox"))
        self.assertIn("is good", proc.stdout)
        # The scratch copy and its server are gone.
        scratch = re.search(r"restored into (\S+) and started", proc.stdout).group(1)
        self.assertIn("stoa-backup-check.", scratch)
        self.assertFalse(os.path.exists(scratch), scratch)
        out = subprocess.run(["pgrep", "-f", scratch], capture_output=True, text=True)
        self.assertEqual(out.stdout.strip(), "", f"scratch server left: {out.stdout}")

    def test_40_restore_before_the_first_backup_is_refused(self):
        proc = self.stoactl("restore", "--time", self.before_backup)
        self.assertEqual(proc.returncode, 1, proc.stdout + proc.stderr)
        self.assertIn("before the end of the oldest backup", proc.stderr)
        self.assertTrue(self.stack.postgres_running())
        self.assert_serving()

    # --- point in time ----------------------------------------------------

    def test_50_restore_to_a_time_between_two_writes_finds_the_first(self):
        c = self.client()
        first, second = self.unique_email("first"), self.unique_email("second")
        self.register(c, first)
        time.sleep(1.1)
        noted = utc_now_text()
        time.sleep(1.1)
        self.register(c, second)
        self.assertEqual(self.user_count(second), 1)
        started = time.monotonic()
        proc = self.stoactl("restore", "--time", noted)
        elapsed = time.monotonic() - started
        self.assertEqual(proc.returncode, 0, proc.stdout + proc.stderr)
        self.assertIn("Postgres is up", proc.stdout)
        self.assertTrue(self.stack.postgres_running())
        self.assertEqual(self.user_count(first), 1)
        self.assertEqual(self.user_count(second), 0)
        # The pools reconnect by themselves: the first request works.
        self.assertEqual(self.login_status(self.client(), first), 200)
        self.assertEqual(self.login_status(self.client(), second), 401)
        self.assert_serving()
        self.assertLess(elapsed, 120)

    def test_60_restore_latest_keeps_everything(self):
        c = self.client()
        email = self.unique_email("latest")
        self.register(c, email)
        proc = self.stoactl("restore", "--latest")
        self.assertEqual(proc.returncode, 0, proc.stdout + proc.stderr)
        self.assertEqual(self.user_count(email), 1)
        self.assertEqual(self.login_status(self.client(), email), 200)

    def test_65_restore_with_postgres_down_brings_it_back(self):
        email = self.assert_serving()
        # Archived by the next restore's check... which cannot run with the
        # server down: a backup archives it instead.
        proc = self.stoactl("backup", "--type", "incr")
        self.assertEqual(proc.returncode, 0, proc.stdout + proc.stderr)
        self.stack.postgres_stop()
        self.assertFalse(self.stack.postgres_running())
        proc = self.stoactl("restore", "--latest")
        self.assertEqual(proc.returncode, 0, proc.stdout + proc.stderr)
        self.assertIn("Postgres is not running", proc.stdout)
        self.assertTrue(self.stack.postgres_running())
        self.assertEqual(self.login_status(self.client(), email), 200)

    # --- rotating the TOTP sealing key -------------------------------------

    def enable_mfa(self, client):
        email = self.unique_email("mfa")
        self.register(client, email)
        resp = client.request("POST", "/v1/auth/login", {"email": email, "password": GOOD_PASSWORD})
        token = self.assert_ok_json(resp)["access_token"]
        resp = client.request("POST", "/v1/auth/mfa/totp/enroll", {"password": GOOD_PASSWORD},
                              token=token)
        secret = self.assert_ok_json(resp)["secret"]
        settle()
        resp = client.request("POST", "/v1/auth/mfa/totp/confirm",
                              {"code": code_for_step(secret, current_step()),
                               "password": GOOD_PASSWORD}, token=token)
        self.assert_ok_json(resp)
        return email, secret

    def mfa_login_status(self, client, email, secret):
        resp = client.request("POST", "/v1/auth/login", {"email": email, "password": GOOD_PASSWORD})
        details = self.assert_error(resp, 401, "mfa_required")
        # A code of the window other than the one the enrolment spent.
        settle()
        resp = client.request("POST", "/v1/auth/mfa/verify",
                              {"mfa_token": details["mfa_token"],
                               "code": code_for_step(secret, current_step() + 1)})
        return resp.status

    def restart_stack(self):
        for action, timeout in (("stop", STOP_TIMEOUT), ("start", START_TIMEOUT)):
            rc, out = self.stack._stack_sh(action, timeout)
            self.assertEqual(rc, 0, out)

    def test_70_mfa_reseal_rotates_the_totp_sealing_key(self):
        c = self.client()
        email, secret = self.enable_mfa(c)
        live_key = self.stack.path("keys", "mfa.key")
        new_key = self.stack.path("keys", "mfa.key.new")
        wrong_key = self.stack.path("keys", "mfa.key.wrong")
        for path in (new_key, wrong_key):
            with open(path, "w") as f:
                f.write(secrets.token_hex(32) + "\n")
        proc = self.stoactl("mfa", "reseal", "--old-key", live_key, "--new-key", live_key)
        self.assertEqual(proc.returncode, 2, proc.stderr)
        # The wrong old key opens nothing: nothing is changed, exit 1.
        proc = self.stoactl("mfa", "reseal", "--old-key", wrong_key, "--new-key", new_key)
        self.assertEqual(proc.returncode, 1, proc.stdout + proc.stderr)
        self.assertIn("resealed 0 ", proc.stdout)
        proc = self.stoactl("mfa", "reseal", "--old-key", live_key, "--new-key", new_key)
        self.assertEqual(proc.returncode, 0, proc.stdout + proc.stderr)
        self.assertRegex(proc.stdout, r"resealed [1-9]\d* TOTP secret\(s\); 0 already")
        # The pools still hold the old key: until they restart with the new
        # one, the code cannot be checked (recovery codes still work).
        self.assertEqual(self.mfa_login_status(self.client(), email, secret), 503)
        os.replace(new_key, live_key)
        conf = self.stack.path("backup", "pgbackrest.conf")
        before = os.stat(conf).st_mtime_ns
        self.restart_stack()
        # The restart rewrote nothing of the backup setup.
        self.assertEqual(os.stat(conf).st_mtime_ns, before)
        self.assertEqual(self.mfa_login_status(self.client(), email, secret), 200)
        # A second run (after the switch, for enrolments made meanwhile)
        # changes nothing that is already under the new key.
        proc = self.stoactl("mfa", "reseal", "--old-key", wrong_key, "--new-key", live_key)
        self.assertEqual(proc.returncode, 0, proc.stdout + proc.stderr)
        self.assertRegex(proc.stdout, r"resealed 0 TOTP secret\(s\); [1-9]\d* already")

    def test_75_backups_go_on_after_a_restart(self):
        proc = self.stoactl("backup", "--type", "incr")
        self.assertEqual(proc.returncode, 0, proc.stdout + proc.stderr)
        self.assertRegex(proc.stdout, r"backup \d{8}-\d{6}F_\d{8}-\d{6}I \(incr\) done")
        proc = self.stoactl("backup", "list")
        self.assertRegex(proc.stdout, rf"(?m)^{LABEL_RE}\s+full\s")
        self.assertGreaterEqual(len(re.findall(r"(?m)^\S+I\s+incr\s", proc.stdout)), 2)
        self.assertRegex(proc.stdout, r"(?m)^\S+I\s+incr\s")
        db = Db(self.stack)
        self.assertEqual(db.value("SELECT failed_count AS n FROM pg_stat_archiver"), 0)

    # --- scheduled backups: systemd timers on the database host ------------

    def test_80_backup_timers_are_valid_units(self):
        import jinja2  # ansible's own template engine
        src = os.path.join(REPO, "ansible", "roles", "postgres", "templates")
        env = jinja2.Environment(loader=jinja2.FileSystemLoader(src),
                                 undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
        names = ["stoa-backup@.service", "stoa-backup-full.timer", "stoa-backup-incr.timer",
                 "stoa-backup-check.service", "stoa-backup-check.timer"]
        with tempfile.TemporaryDirectory() as out:
            units = {}
            for name in names:
                units[name] = env.get_template(name + ".j2").render(
                    stoa_prefix=os.path.dirname(BIN_DIR), stoa_conf_dir="/etc/stoa")
                with open(os.path.join(out, name), "w") as f:
                    f.write(units[name])
            paths = [os.path.join(out, n) for n in names if "@" not in n]
            paths.append(os.path.join(out, "stoa-backup@full.service"))
            proc = subprocess.run(["systemd-analyze", "verify", *paths],
                                  capture_output=True, text=True, timeout=60)
            self.assertEqual(proc.returncode, 0, proc.stdout + proc.stderr)
        self.assertIn("Unit=stoa-backup@full.service", units["stoa-backup-full.timer"])
        self.assertIn("Unit=stoa-backup@incr.service", units["stoa-backup-incr.timer"])
        self.assertIn("OnCalendar=*-*-* *:30:00", units["stoa-backup-incr.timer"])
        self.assertRegex(units["stoa-backup@.service"],
                         r"(?m)^ExecStart=/usr/bin/pgbackrest --stanza=stoa --type=%i backup$")
        self.assertRegex(units["stoa-backup@.service"], r"(?m)^User=postgres$")
        self.assertRegex(units["stoa-backup-check.service"], r"(?m)^ExecStart=.*/stoactl .* backup check$")


if __name__ == "__main__":
    unittest.main()
