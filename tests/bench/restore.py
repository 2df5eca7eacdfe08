#!/usr/bin/env python3
"""Restore time of a database of about 1 GB (SPEC §10: RTO < 1 h), the
figure docs/operations.md states.

A throwaway stack gets BENCH_RESTORE_ROWS rows of about 1 KB each (hex
text, which compresses about as well as real rows do: not much) in a table
of their own, then:

1. `stoactl backup --type full` (pgBackRest, lz4, 2 processes);
2. a row, a noted time, another row; `stoactl restore --time <noted>`: an
   in-place point-in-time restore (pgBackRest --delta checks every file of
   the data directory and copies only those that differ, then Postgres
   replays the WAL to the time), checked to find the first row only;
3. `stoactl backup check`: the latest backup restored into an empty
   directory and started on a scratch server: the cost of a restore onto a
   new host, the case the RTO is about.

Environment: BENCH_RESTORE_ROWS (1000000), BENCH_OUT, BENCH_STRICT.
"""

import datetime
import os
import subprocess
import time

import benchlib as b

FILL = """
CREATE TABLE restore_bench (id bigint PRIMARY KEY, payload text NOT NULL);
INSERT INTO restore_bench
SELECT g, (SELECT string_agg(md5(g::text || ':' || i::text), '')
           FROM generate_series(1, 28) i)
FROM generate_series(1, :v1) g;
CREATE TABLE restore_marks (tag text PRIMARY KEY);
"""


def stoactl(stack, *args):
    env = {k: v for k, v in os.environ.items() if not k.startswith("STOA_")}
    t0 = time.monotonic()
    done = subprocess.run([os.path.join(b.harness.BIN_DIR, "stoactl"), "--config",
                           stack.conf_path(), *args], capture_output=True, text=True,
                          timeout=7200, env=env, stdin=subprocess.DEVNULL)
    elapsed = time.monotonic() - t0
    if done.returncode != 0:
        raise b.SetupError(f"stoactl {' '.join(args)} exited {done.returncode}: "
                           f"{done.stdout}{done.stderr}")
    return done.stdout, round(elapsed, 1)


def utc_now_text():
    return datetime.datetime.now(datetime.timezone.utc).isoformat()


def bench():
    rows = b.env_int("BENCH_RESTORE_ROWS", 1000000)
    with b.BenchStack() as stack:
        report = b.Report("restore of a backup (pgBackRest)", {"rows": rows})
        b.note(f"filling {rows} rows of about 1 KB")
        t0 = time.monotonic()
        stack.psql(FILL, rows)
        fill_s = round(time.monotonic() - t0, 1)
        size = int(stack.psql("SELECT pg_database_size('stoa')"))
        b.note(f"database: {size / 1e9:.2f} GB; full backup")
        _, backup_s = stoactl(stack, "backup", "--type", "full")
        listing, _ = stoactl(stack, "backup", "list")
        stack.psql("INSERT INTO restore_marks VALUES ('before')")
        time.sleep(1.1)
        noted = utc_now_text()
        time.sleep(1.1)
        stack.psql("INSERT INTO restore_marks VALUES ('after')")
        b.note(f"point-in-time restore to {noted}")
        _, pitr_s = stoactl(stack, "restore", "--time", noted)
        marks = stack.psql("SELECT string_agg(tag, ',' ORDER BY tag) FROM restore_marks")
        if marks != "before":
            report.problem(f"after the restore the marks are {marks!r}, not 'before'")
        b.note("restore into an empty directory (backup check)")
        _, cold_s = stoactl(stack, "backup", "check")
        report.figure("database size", round(size / 1e9, 2), "GB")
        report.figure("filling it", fill_s, "s")
        report.figure("full backup (stoactl backup --type full)", backup_s, "s")
        report.figure("point-in-time restore in place (stoactl restore --time)", pitr_s, "s")
        report.figure("restore into an empty directory + start (backup check)", cold_s, "s")
        per_gb = cold_s / (size / 1e9)
        report.figure("cold restore per GB", round(per_gb, 1), "s/GB")
        report.figure("GB restorable within the 1 h RTO at that rate", round(3600 / per_gb, 1), "GB")
        report.bar("restore of this database (s)", max(pitr_s, cold_s), "<=", 3600)
        report.data = {"backup_list": listing}
        return report.finish()


if __name__ == "__main__":
    b.main(bench)
