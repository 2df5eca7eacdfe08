#!/usr/bin/env python3
"""What counting costs a request end to end (SPEC §9, the metrics bar): the
GET /v1/me bench of run.sh (TLS, the gateway's cached token check, the auth
pool's revocation check, the Redis-cached profile) measured on one stack
with metrics on (metrics_dir set: every pool and every nginx worker counts)
and with metrics off (metrics_dir empty: stoa_metrics_open is never called,
every counting call is a no-op, and nginx gets api_gateway_metrics_dir "").

The /v1/me ratio is /v1/me req/s over the empty FastCGI responder's
(/bench/empty, which counts nothing either way) in the same phase; the
bar: the ratio with metrics on is at most 2 points below the ratio with
metrics off. Phases alternate (on, off, on, off...), the stack being
stopped and started again between them with STOA_METRICS_DIR set or
empty; the median run of each side is reported. Each phase also checks
that its side really is what it claims: with metrics on the gateway's
scrape counts rise by at least the requests wrk saw answered, with metrics
off the scrape has no gateway series at all.

Environment: BENCH_SECONDS (8), BENCH_RUNS (3 phases per side),
BENCH_WARMUP (2 s), BENCH_CONNECTIONS (64), BENCH_THREADS (2),
BENCH_PROCESSES (2), BENCH_OUT, BENCH_STRICT.
"""

import urllib.request

import benchlib as b
from harness import START_TIMEOUT


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
    seconds = b.env_int("BENCH_SECONDS", 8)
    runs = b.env_int("BENCH_RUNS", 3)
    warmup = b.env_int("BENCH_WARMUP", 2)
    conns = b.env_int("BENCH_CONNECTIONS", 64)
    b.which("wrk")
    b.which("spawn-fcgi")
    with b.BenchStack() as stack:
        report = b.Report("GET /v1/me with metrics on and off", {
            "seconds": seconds, "phases_per_side": runs, "connections": conns,
            "processes": stack.processes, "transport": "https (TLS, keep-alive)"})
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
            b.note(f"phase {i + 1}/{runs * 2}, metrics {side}: warm-up {warmup}s, "
                   f"then {seconds}s each of /bench/empty and /v1/me at {conns} connections")
            b.run_wrk(stack, "/v1/me", conns, warmup, headers=[me_header])
            b.run_wrk(stack, "/bench/empty", conns, warmup)
            before = gateway_verified(scrape(stack))
            empty = b.run_wrk(stack, "/bench/empty", conns, seconds)
            me = b.run_wrk(stack, "/v1/me", conns, seconds, headers=[me_header])
            after = gateway_verified(scrape(stack))
            for label, r in ((f"/bench/empty, metrics {side}", empty),
                             (f"/v1/me, metrics {side}", me)):
                for p in b.wrk_problems(f"{label}, phase {i + 1}", r):
                    report.problem(p)
            if on and (before is None or after is None or after - before < me["requests"]):
                report.problem(f"phase {i + 1}: metrics on, but the gateway counted "
                               f"{before} -> {after} for {me['requests']} requests")
            if not on and (before is not None or after is not None):
                report.problem(f"phase {i + 1}: metrics off, but the scrape has gateway series")
            ratio = me["requests_per_second"] / empty["requests_per_second"]
            phases[on].append({"phase": i + 1, "ratio": round(ratio, 4),
                               "me_rps": me["requests_per_second"], "me_p99_ms": me["p99_ms"],
                               "empty_rps": empty["requests_per_second"],
                               "empty_p99_ms": empty["p99_ms"]})
            b.note(f"  metrics {side}: /v1/me {me['requests_per_second']:.0f} req/s "
                   f"p99 {me['p99_ms']} ms, empty {empty['requests_per_second']:.0f} req/s, "
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
        for side in (True, False):
            for p in phases[side]:
                report.note(f"phase {p['phase']} metrics {'on' if side else 'off'}: "
                            f"/v1/me {p['me_rps']:.0f} req/s p99 {p['me_p99_ms']} ms, "
                            f"empty {p['empty_rps']:.0f} req/s, ratio {p['ratio']:.3f}")
        report.data = {"on": phases[True], "off": phases[False], "drop_points": drop}
        return report.finish()


if __name__ == "__main__":
    b.main(bench)
