#!/usr/bin/env python3
"""Pool memory over 1M requests (SPEC §9: each pool process at most 16 MiB
RSS, flat).

After a warm-up, VmRSS of every process of every pool is read from /proc;
then wrk sends BENCH_REQUESTS requests (in runs of BENCH_SECONDS): GET
/v1/me with a token, and every BENCH_LOGIN_EVERY-th request a successful
POST /v1/auth/login; then VmRSS is read again. Each reading waits until
the pools are idle (a process in the middle of a login holds Argon2id's
~19 MiB until the hash ends; right after wrk stops, one usually is). Both
readings are printed per process, the second with where it lies (smaps:
heap, thread stacks, other anonymous memory, mapped files). "Flat" means no process grew by more than
BENCH_RSS_GROWTH_KIB (1024) between the readings; a process replaced in
between (another pid) is reported, since its reading would hide a leak.

A login the auth pool sheds (503 "too many password checks at once",
its admission gate working while the reads hold the cores) waits as its
Retry-After asks and is counted apart; any other answer but 200 fails
the run.

Environment: BENCH_REQUESTS (1000000), BENCH_SECONDS (20),
BENCH_CONNECTIONS (64), BENCH_LOGIN_EVERY (1000), BENCH_RSS_GROWTH_KIB,
BENCH_PROCESSES, BENCH_OUT, BENCH_STRICT.
"""

import os
import tempfile

import benchlib as b

LIMIT_KIB = 16 * 1024


# The auth pool's answer to a login it sheds (app.c's admission gate).
SHED_MESSAGE = "too many password checks at once"


def mix_script(token, email, password, every):
    body = '{"email":"%s","password":"%s"}' % (email, password)
    return b.harness.wrk_counting_lua("MIX") + f"""-- Written by tests/bench/memory.py: GET /v1/me, with a login every
-- {every} requests. Answers are counted by kind (the lines above); a shed
-- login waits as its Retry-After asks, as a client should.
local me, login, n
function init(args)
  ok = 0; shed = 0; other = 0; backoff = 0
  me = wrk.format("GET", "/v1/me", {{["Authorization"] = {b.lua_string("Bearer " + token)}}})
  login = wrk.format("POST", "/v1/auth/login", {{["Content-Type"] = "application/json"}},
                     {b.lua_string(body)})
  n = 0
end
function request()
  n = n + 1
  if n % {every} == 0 then return login end
  return me
end
""" + b.shed_counting_lua(SHED_MESSAGE)


def rss_only(readings):
    """{pool: [(pid, VmRSS KiB)]} from pool_processes_at_rest()."""
    return {pool: [(pid, m["rss"] if m else None) for pid, m in rows]
            for pool, rows in readings.items()}


def bench():
    total = b.env_int("BENCH_REQUESTS", 1000000)
    seconds = b.env_int("BENCH_SECONDS", 20)
    conns = b.env_int("BENCH_CONNECTIONS", 64)
    every = b.env_int("BENCH_LOGIN_EVERY", 1000)
    growth_limit = b.env_int("BENCH_RSS_GROWTH_KIB", 1024, minimum=0)
    b.which("wrk")
    with b.BenchStack() as stack:
        report = b.Report("pool memory over 1M requests", {
            "requests": total, "connections": conns, "login_every": every,
            "processes": stack.processes, "growth_limit_kib": growth_limit})
        _, email, token, _ = stack.register_and_login("memory")
        with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
            f.write(mix_script(token, email, b.PASSWORD, every))
            script = f.name
        try:
            b.note("warm-up: 5s of the mix")
            b.run_wrk(stack, "/v1/me", conns, 5, script=script, timeout_s=10)
            before = rss_only(stack.pool_processes_at_rest())
            sent, runs, sheds = 0, [], 0
            while sent < total:
                r = b.run_wrk(stack, "/v1/me", conns, seconds, script=script, timeout_s=10)
                counts = b.answer_counts(r, "MIX")
                label = f"run {len(runs) + 1}"
                if counts is None:
                    report.problem(f"{label}: no answer counts from wrk")
                else:
                    sheds += counts[1]
                    if counts[2]:
                        report.problem(f"{label}: {counts[2]} answers neither 200 "
                                       "nor a shed login")
                    r["non_2xx"] = 0  # counted by kind above
                runs.append({k: v for k, v in r.items() if k != "output"})
                sent += r["requests"] or 0
                for p in b.wrk_problems(label, r):
                    report.problem(p)
                b.note(f"{sent} of {total} requests ({r['requests_per_second']:.0f} req/s, "
                       f"p99 {r['p99_ms']} ms)")
                if not r["requests"]:
                    report.problem("a run made no requests")
                    break
            after_kinds = stack.pool_processes_at_rest()
            after = rss_only(after_kinds)
        finally:
            os.unlink(script)
        report.figure("requests sent", sent)
        report.figure("logins shed (503, Retry-After honoured)", sheds)
        worst_after, worst_growth = 0, 0
        rows = []
        for pool in before:
            pids_before = {pid for pid, _ in before[pool]}
            pids_after = {pid for pid, _ in after[pool]}
            if pids_before != pids_after:
                report.problem(f"{pool}: processes replaced during the run "
                               f"({sorted(pids_before)} -> {sorted(pids_after)})")
            b_rss = dict(before[pool])
            kinds = dict(after_kinds[pool])
            for pid, rss in after[pool]:
                was = b_rss.get(pid)
                k = kinds.get(pid) or {}
                rows.append({"pool": pool, "pid": pid, "before_kib": was, "after_kib": rss,
                             "after_kinds_kib": k})
                print(f"  {pool:<10} pid {pid:<8} VmRSS before {was or 0:>7} KiB  "
                      f"after {rss or 0:>7} KiB  (heap {k.get('heap', 0)}, stacks "
                      f"{k.get('stacks', 0)}, anon {k.get('anon', 0)}, files "
                      f"{k.get('files', 0)})")
                if rss is not None:
                    worst_after = max(worst_after, rss)
                if rss is not None and was is not None:
                    worst_growth = max(worst_growth, rss - was)
        report.figure("largest pool process after (KiB)", worst_after, "KiB")
        report.figure("largest growth of one process (KiB)", worst_growth, "KiB")
        report.bar("largest pool process RSS (KiB)", worst_after, "<=", LIMIT_KIB)
        report.bar("largest growth over the run (KiB)", worst_growth, "<=", growth_limit)
        report.data = {"processes": rows, "runs": runs}
        return report.finish()


if __name__ == "__main__":
    b.main(bench)
