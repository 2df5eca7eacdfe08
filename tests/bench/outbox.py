#!/usr/bin/env python3
"""Outbox jobs claimed and completed per second (SPEC §9: at least 10,000
no-op jobs/s).

The jobs are of the worker's "noop" kind: the handler does nothing, so
each job costs what the outbox itself costs, its share of a claim
(UPDATE ... FOR UPDATE SKIP LOCKED, up to 128 jobs a statement) and its
share of the completion (one UPDATE and one commit for a claim's jobs).

BENCH_JOBS rows are enqueued in one transaction (the worker is woken by
its NOTIFY at commit); the figure is jobs / (last done_at - commit time).
The ceiling beside it is what Postgres gives a job-at-a-time completion
(batched completion goes past it): pgbench running one-row autocommit
UPDATEs on jobs.outbox over as many connections as the worker has threads
(jobs_concurrency), in the same run.

Environment: BENCH_JOBS (100000), BENCH_JOBS_CONCURRENCY (the stack's
jobs_concurrency), BENCH_SECONDS (8, the ceiling's run), BENCH_MAX_SECONDS
(300), BENCH_OUT, BENCH_STRICT.
"""

import os
import re
import subprocess
import tempfile
import time

import benchlib as b

KIND = "noop"

ENQUEUE = """
BEGIN;
INSERT INTO jobs.outbox (kind) SELECT :'v1' FROM generate_series(1, :v2) g;
COMMIT;
SELECT extract(epoch FROM clock_timestamp());
"""

PENDING = """
SELECT count(*) FROM jobs.outbox
WHERE kind = :'v1' AND done_at IS NULL AND dead_at IS NULL
"""

OUTCOME = """
SELECT count(*) FILTER (WHERE done_at IS NOT NULL),
       count(*) FILTER (WHERE dead_at IS NOT NULL),
       coalesce(extract(epoch FROM max(done_at)), 0),
       coalesce(max(attempts), 0),
       coalesce(min(id), 0), coalesce(max(id), 0)
FROM jobs.outbox WHERE kind = :'v1' AND id > :v2
"""


def run_batch(stack, count, max_seconds):
    """Enqueues count no-op jobs, waits for all of them; returns the
    outcome dict."""
    before = stack.psql("SELECT coalesce(max(id), 0) FROM jobs.outbox")
    committed = float(stack.psql(ENQUEUE, KIND, count).splitlines()[-1])
    deadline = time.monotonic() + max_seconds
    pending = count
    while time.monotonic() < deadline:
        pending = int(stack.psql(PENDING, KIND))
        if pending == 0:
            break
        time.sleep(0.2)
    done, dead, last_done, attempts, lo, hi = stack.psql(OUTCOME, KIND, before).split("|")
    span = float(last_done) - committed
    return {"jobs": count, "done": int(done), "dead": int(dead), "pending": pending,
            "max_attempts_seen": int(attempts), "span_s": round(span, 3),
            "jobs_per_second": round(int(done) / span, 1) if span > 0 else None,
            "first_id": int(lo), "last_id": int(hi)}


def pgbench_updates(stack, connections, seconds, lo, hi):
    """One-row autocommit UPDATEs/s on jobs.outbox (rows lo..hi)."""
    with tempfile.NamedTemporaryFile("w", suffix=".sql", delete=False) as f:
        f.write(f"\\set id random({lo}, {hi})\n"
                "UPDATE jobs.outbox SET locked_by = NULL WHERE id = :id;\n")
        script = f.name
    try:
        argv = [f"{b.harness.PG_BIN}/pgbench", "-n", "-M", "prepared", "-f", script,
                "-c", str(connections), "-j", str(connections), "-T", str(seconds),
                "-h", stack.path("pg", "sock"), "-p", "5432", "-U", "stoa", "stoa"]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=seconds * 4 + 60)
    finally:
        os.unlink(script)
    m = re.search(r"tps = ([0-9.]+) \(without initial connection time\)", done.stdout)
    if done.returncode != 0 or not m:
        raise b.SetupError(f"pgbench failed: {done.stdout}{done.stderr}")
    return float(m.group(1))


def bench():
    count = b.env_int("BENCH_JOBS", 100000)
    seconds = b.env_int("BENCH_SECONDS", 8)
    max_seconds = b.env_int("BENCH_MAX_SECONDS", 300)
    env = {}
    if os.environ.get("BENCH_JOBS_CONCURRENCY"):
        env["STOA_JOBS_CONCURRENCY"] = str(b.env_int("BENCH_JOBS_CONCURRENCY", 4))
    with b.BenchStack(env=env) as stack:
        concurrency = int(stack.conf_value("jobs_concurrency", "4"))
        report = b.Report("outbox no-op jobs", {
            "jobs": count, "jobs_concurrency": concurrency, "job_kind": KIND})
        b.note("warm-up: 1000 jobs")
        run_batch(stack, 1000, max_seconds)
        b.note(f"{count} jobs enqueued in one transaction")
        got = run_batch(stack, count, max_seconds)
        b.note(f"ceiling: pgbench one-row UPDATEs on jobs.outbox, {concurrency} "
               f"connections, {seconds}s")
        ceiling = pgbench_updates(stack, concurrency, seconds, got["first_id"], got["last_id"])
        rate = got["jobs_per_second"]
        report.figure("jobs claimed and completed/s", rate, "/s")
        report.figure("ceiling: one-row autocommit UPDATEs/s (pgbench)", ceiling, "/s")
        report.figure("jobs / ceiling", round(rate / ceiling, 3) if rate and ceiling else None)
        report.figure("time from commit to the last job done", got["span_s"], "s")
        report.bar("no-op jobs/s", rate, ">=", 10000)
        if got["done"] != count:
            report.problem(f"{got['done']} of {count} jobs done "
                           f"({got['dead']} dead, {got['pending']} pending)")
        if got["max_attempts_seen"] > 1:
            report.note(f"some job needed {got['max_attempts_seen']} attempts")
        report.data = {"run": got, "ceiling_updates_per_second": ceiling}
        return report.finish()


if __name__ == "__main__":
    b.main(bench)
