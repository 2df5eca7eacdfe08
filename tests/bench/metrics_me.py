#!/usr/bin/env python3
"""What counting costs a request end to end (SPEC §9, the metrics bar): the
GET /v1/me bench of run.sh (TLS, the gateway's cached token check, the auth
pool's revocation check, the Redis-cached profile) measured on one stack
with metrics on (metrics_dir set: every pool and every nginx worker counts)
and with metrics off (metrics_dir empty: stoa_metrics_open is never called,
every counting call is a no-op, and nginx gets api_gateway_metrics_dir "").

The /v1/me ratio is /v1/me's answers over the empty FastCGI responder's
(/bench/empty, which counts nothing either way) in the same phase; the
bar: the ratio with metrics on is at most 2 points below the ratio with
metrics off. Phases alternate (on, off, on, off...), the stack being
stopped and started again between them with STOA_METRICS_DIR set or
empty; within a phase, short runs of the two routes alternate too
(BENCH_ROUNDS), so a neighbour's load drifting over the phase weighs on
both. The median phase of each side is reported.

Throughput on a shared machine is noisy; the CPU time nginx's workers and
the auth pool's processes spend per /v1/me answer (their utime + stime
across the run over its answers) is much less so, and is where counting
costs: it is reported for both sides too, with the ratio drop it implies
for a CPU-bound host (ratio off x (1 - cpu off / cpu on)).

Where perf(1) can profile (BENCH_PERF=0 turns it off), an extra /v1/me
run before the measured ones in every phase with metrics on (counted in
no figure: perf's sampling slows what it samples) is sampled in nginx's workers and
the auth pool's processes: the share of their samples inside the counting
code (stoa_metrics_*) is the cost itself, free of the neighbours' noise,
and the ratio drop it implies is reported beside the others.

Each phase also checks that its side really is what it claims: with
metrics on the gateway's scrape counts rise by at least the answers wrk
saw, with metrics off the scrape has no gateway series at all.

Environment: BENCH_SECONDS (4, one run of one route), BENCH_ROUNDS (3
runs of each route per phase), BENCH_RUNS (3 phases per side),
BENCH_WARMUP (2 s), BENCH_CONNECTIONS (64), BENCH_THREADS (2),
BENCH_PROCESSES (2), BENCH_OUT, BENCH_STRICT.
"""

import os
import shutil
import subprocess
import tempfile

import urllib.request

import benchlib as b
from harness import START_TIMEOUT, children_of, read_pid_file

TICK_S = 1.0 / os.sysconf("SC_CLK_TCK")


def scrape(stack):
    addr = stack._env["STOA_METRICS_LISTEN"]
    with urllib.request.urlopen(f"http://{addr}/metrics", timeout=10) as r:
        return r.read().decode()


def gateway_verified(text):
    """stoa_gateway_verifications_total{result="ok"}, or None when the
    scrape has no gateway series."""
    for line in text.splitlines():
        if line.startswith('stoa_gateway_verifications_total{pool="gateway",result="ok"}'):
            return float(line.rsplit(" ", 1)[1])
    return None


def cpu_seconds(pids):
    """utime + stime of pids, in seconds (a process gone counts 0)."""
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                rest = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(rest[11]) + int(rest[12])
    return total * TICK_S


def me_processes(stack):
    """The processes a GET /v1/me runs in that metrics touch: nginx's
    workers and the auth pool's."""
    master = read_pid_file(stack.path("nginx", "nginx.pid"))
    return (children_of(master) if master else []) + stack.pool_children("auth")


def counting_share(data):
    """The percentage of a perf recording's samples in stoa_metrics_*
    functions, or None when perf could not read it."""
    done = subprocess.run(["perf", "report", "-i", data, "--no-children", "--sort", "symbol",
                           "--stdio", "--percent-limit", "0"],
                          capture_output=True, text=True, timeout=120)
    if done.returncode != 0 or "Samples" not in done.stdout:
        return None
    share = 0.0
    for line in done.stdout.splitlines():
        fields = line.split()
        if len(fields) >= 3 and fields[0].endswith("%") and fields[2].startswith("stoa_metrics_"):
            share += float(fields[0][:-1])
    return share


def profiled_wrk(stack, path, conns, seconds, headers):
    """A wrk run with perf sampling the /v1/me processes meanwhile: its
    figures and the counting's share of their samples (None: no perf)."""
    if os.environ.get("BENCH_PERF") == "0" or not shutil.which("perf"):
        return b.run_wrk(stack, path, conns, seconds, headers=headers), None
    pids = me_processes(stack)
    handle = b.start_wrk(stack, path, conns, seconds, headers=headers)
    with tempfile.TemporaryDirectory(prefix="stoa-perf-") as work:
        data = os.path.join(work, "perf.data")
        perf = subprocess.run(["perf", "record", "-q", "-F", "1999", "-o", data, "-p",
                               ",".join(map(str, pids)), "--", "sleep", str(max(1, seconds - 1))],
                              capture_output=True, text=True, timeout=seconds + 60)
        result = b.finish_wrk(handle)
        share = counting_share(data) if perf.returncode == 0 else None
    return result, share


def restart(stack, metrics_on):
    """Stops the stack and starts it again with metrics on or off (the
    environment wins over stoa.conf, for the pools and for nginx's
    rendered configuration alike)."""
    stack._env["STOA_METRICS_DIR"] = stack.path("metrics") if metrics_on else ""
    for action in ("stop", "start"):
        rc, out = stack._stack_sh(action, START_TIMEOUT)
        if rc != 0:
            raise b.SetupError(f"stack.sh {action} (metrics {'on' if metrics_on else 'off'}) "
                               f"exited {rc}:\n{out}")
    stack.client.close()
    stack.wait_for("/bench/empty")


def bench():
    seconds = b.env_int("BENCH_SECONDS", 4)
    rounds = b.env_int("BENCH_ROUNDS", 3)
    runs = b.env_int("BENCH_RUNS", 3)
    warmup = b.env_int("BENCH_WARMUP", 2)
    conns = b.env_int("BENCH_CONNECTIONS", 64)
    b.which("wrk")
    b.which("spawn-fcgi")
    with b.BenchStack() as stack:
        report = b.Report("GET /v1/me with metrics on and off", {
            "seconds": seconds, "rounds": rounds, "phases_per_side": runs,
            "connections": conns, "processes": stack.processes,
            "transport": "https (TLS, keep-alive)"})
        stack.start_empty_responder()
        _, _, token, _ = stack.register_and_login("metrics")
        me_header = f"Authorization: Bearer {token}"
        stack.wait_for("/v1/me", headers={"Authorization": f"Bearer {token}"})
        phases = {True: [], False: []}
        on = True  # the stack starts with stoa.conf's metrics_dir, set
        for i in range(runs * 2):
            if i:
                on = not on
                b.note(f"restarting the stack with metrics {'on' if on else 'off'}")
                restart(stack, on)
            side = "on" if on else "off"
            b.note(f"phase {i + 1}/{runs * 2}, metrics {side}: warm-up {warmup}s, then "
                   f"{rounds} x {seconds}s of /bench/empty and /v1/me in turn, {conns} connections")
            b.run_wrk(stack, "/v1/me", conns, warmup, headers=[me_header])
            b.run_wrk(stack, "/bench/empty", conns, warmup)
            before = gateway_verified(scrape(stack))
            totals = {"empty": 0, "me": 0}
            p99s = {"empty": [], "me": []}
            cpu = 0.0
            share = None
            if on:
                # perf's sampling costs the processes it samples: its run is
                # an extra one, counted in no figure but the share.
                _, share = profiled_wrk(stack, "/v1/me", conns, seconds, [me_header])
            for n in range(rounds):
                for route in ("empty", "me"):
                    procs = me_processes(stack) if route == "me" else []
                    t0 = cpu_seconds(procs)
                    if route == "me":
                        r = b.run_wrk(stack, "/v1/me", conns, seconds, headers=[me_header])
                    else:
                        r = b.run_wrk(stack, "/bench/empty", conns, seconds)
                    cpu += cpu_seconds(procs) - t0
                    totals[route] += r["requests"]
                    p99s[route].append(r["p99_ms"])
                    for p in b.wrk_problems(f"{route}, metrics {side}, phase {i + 1}", r):
                        report.problem(p)
            after = gateway_verified(scrape(stack))
            if on and (before is None or after is None or after - before < totals["me"]):
                report.problem(f"phase {i + 1}: metrics on, but the gateway counted "
                               f"{before} -> {after} for {totals['me']} answers")
            if not on and (before is not None or after is not None):
                report.problem(f"phase {i + 1}: metrics off, but the scrape has gateway series")
            span = rounds * seconds
            ratio = totals["me"] / totals["empty"] if totals["empty"] else 0.0
            phase = {"phase": i + 1, "ratio": round(ratio, 4),
                     "me_rps": round(totals["me"] / span), "empty_rps": round(totals["empty"] / span),
                     "me_p99_ms": sorted(p99s["me"])[(rounds - 1) // 2],
                     "empty_p99_ms": sorted(p99s["empty"])[(rounds - 1) // 2],
                     "cpu_us_per_me": round(cpu * 1e6 / totals["me"], 1) if totals["me"] else None,
                     "counting_share_pct": share}
            phases[on].append(phase)
            b.note(f"  metrics {side}: /v1/me {phase['me_rps']} req/s p99 {phase['me_p99_ms']} ms "
                   f"({phase['cpu_us_per_me']} us CPU each), empty {phase['empty_rps']} req/s, "
                   f"ratio {ratio:.3f}")

        def median(side):
            ordered = sorted(phases[side], key=lambda p: p["ratio"])
            return ordered[(len(ordered) - 1) // 2]

        m_on, m_off = median(True), median(False)
        for label, m in (("on", m_on), ("off", m_off)):
            report.figure(f"metrics {label}: GET /v1/me req/s", m["me_rps"], "/s")
            report.figure(f"metrics {label}: GET /v1/me p99", m["me_p99_ms"], "ms")
            report.figure(f"metrics {label}: empty responder req/s", m["empty_rps"], "/s")
            report.figure(f"metrics {label}: /v1/me ratio (median phase {m['phase']})",
                          m["ratio"])
        drop = round((m_off["ratio"] - m_on["ratio"]) * 100.0, 2)
        report.figure("/v1/me ratio drop with metrics on (points)", drop, "points")
        report.bar("/v1/me ratio drop with metrics on (points)", drop, "<=", 2.0)

        def median_cpu(side):
            got = sorted(p["cpu_us_per_me"] for p in phases[side] if p["cpu_us_per_me"])
            return got[(len(got) - 1) // 2] if got else None

        cpu_on, cpu_off = median_cpu(True), median_cpu(False)
        report.figure("metrics on: nginx + auth CPU per GET /v1/me", cpu_on, "us")
        report.figure("metrics off: nginx + auth CPU per GET /v1/me", cpu_off, "us")
        implied = (round(m_off["ratio"] * (1 - cpu_off / cpu_on) * 100.0, 2)
                   if cpu_on and cpu_off else None)
        report.figure("ratio drop the CPU times imply (points)", implied, "points")
        shares = sorted(p["counting_share_pct"] for p in phases[True]
                        if p["counting_share_pct"] is not None)
        share = shares[(len(shares) - 1) // 2] if shares else None
        report.figure("metrics on: nginx + auth samples in counting (perf)", share, "%")
        report.figure("ratio drop the perf samples imply (points)",
                      round(m_off["ratio"] * share, 2) if share is not None else None, "points")
        spread = {side: (min(p["ratio"] for p in phases[side]), max(p["ratio"] for p in phases[side]))
                  for side in (True, False)}
        report.note("phase ratios spread %.3f..%.3f (on), %.3f..%.3f (off): a spread wider "
                    "than the bar means the machine's noise, not the metrics, moves the ratio"
                    % (spread[True] + spread[False]))
        for side in (True, False):
            for p in phases[side]:
                report.note(f"phase {p['phase']} metrics {'on' if side else 'off'}: "
                            f"/v1/me {p['me_rps']} req/s p99 {p['me_p99_ms']} ms "
                            f"({p['cpu_us_per_me']} us CPU"
                            + (f", {p['counting_share_pct']:.2f}% of samples counting"
                               if p["counting_share_pct"] is not None else "") + "), "
                            f"empty {p['empty_rps']} req/s, ratio {p['ratio']:.3f}")
        report.data = {"on": phases[True], "off": phases[False], "drop_points": drop,
                       "cpu_us_per_me": {"on": cpu_on, "off": cpu_off},
                       "cpu_implied_drop_points": implied, "counting_share_pct": share}
        return report.finish()


if __name__ == "__main__":
    b.main(bench)
