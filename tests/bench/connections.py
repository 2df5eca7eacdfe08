#!/usr/bin/env python3
"""10,000 concurrent keep-alive TLS clients held open while GET /v1/me is
still served (SPEC §9: held, no errors).

tests/bench/idle_clients.py opens BENCH_IDLE_CLIENTS TLS connections to
nginx, makes one request on each and leaves them idle; meanwhile wrk
measures GET /v1/me with a token (BENCH_CONNECTIONS connections,
BENCH_SECONDS). Afterwards every idle client makes a second request on
its connection: all must still be open and answered. The ceiling beside
the figure is the same wrk run with no idle clients, in the same run.

Environment: BENCH_IDLE_CLIENTS (10000), BENCH_CONNECTIONS (64),
BENCH_SECONDS (10), BENCH_PROCESSES, BENCH_OUT, BENCH_STRICT.
"""

import os
import subprocess
import sys
import time

import benchlib as b


def bench():
    idle = b.env_int("BENCH_IDLE_CLIENTS", 10000)
    conns = b.env_int("BENCH_CONNECTIONS", 64)
    seconds = b.env_int("BENCH_SECONDS", 10)
    if seconds > 50:
        raise b.SetupError("BENCH_SECONDS must stay under nginx's 65 s keep-alive timeout")
    b.which("wrk")
    # The idle clients, wrk and their margins.
    b.raise_nofile(idle + conns + 512)
    with b.BenchStack() as stack:
        report = b.Report("10,000 idle keep-alive TLS clients", {
            "idle_clients": idle, "connections": conns, "seconds": seconds,
            "processes": stack.processes})
        _, _, token, _ = stack.register_and_login("connections")
        header = [f"Authorization: Bearer {token}"]
        b.note(f"ceiling: GET /v1/me without idle clients, {seconds}s")
        b.run_wrk(stack, "/v1/me", conns, 2, headers=header)
        alone = b.run_wrk(stack, "/v1/me", conns, seconds, headers=header)
        b.note(f"opening {idle} idle TLS clients")
        t0 = time.monotonic()
        holder = subprocess.Popen(
            [sys.executable, os.path.join(b.HERE, "idle_clients.py"), str(stack.https_port),
             stack.path("tls", "cert.pem"), str(idle)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        try:
            line = holder.stdout.readline().split()
            if len(line) != 4 or line[0] != "open":
                raise b.SetupError(f"idle_clients.py: {line!r}")
            opened, open_failed = int(line[1]), int(line[3])
            took = time.monotonic() - t0
            b.note(f"{opened} open ({open_failed} failed) in {took:.1f}s; "
                   f"GET /v1/me for {seconds}s meanwhile")
            held = b.run_wrk(stack, "/v1/me", conns, seconds, headers=header)
            holder.stdin.write("check\n")
            holder.stdin.flush()
            line = holder.stdout.readline().split()
            if len(line) != 4 or line[0] != "alive":
                raise b.SetupError(f"idle_clients.py: {line!r}")
            alive, lost = int(line[1]), int(line[3])
        finally:
            if holder.stdin and not holder.stdin.closed:
                holder.stdin.close()
            try:
                holder.wait(timeout=60)
            except subprocess.TimeoutExpired:
                holder.kill()
                holder.wait()
        report.figure("idle TLS clients opened", opened)
        report.figure("seconds to open them", round(took, 1), "s")
        report.figure("still open and answering after the run", alive)
        report.figure("GET /v1/me req/s with the idle clients", held["requests_per_second"], "/s")
        report.figure("GET /v1/me p99 with the idle clients", held["p99_ms"], "ms")
        report.figure("ceiling: GET /v1/me req/s without them", alone["requests_per_second"], "/s")
        report.figure("ceiling: GET /v1/me p99 without them", alone["p99_ms"], "ms")
        ratio = (round(held["requests_per_second"] / alone["requests_per_second"], 3)
                 if alone["requests_per_second"] else None)
        report.figure("req/s with / without", ratio)
        report.bar("idle clients held to the end", alive, ">=", idle)
        report.bar("errors opening or checking idle clients", open_failed + lost, "<=", 0)
        errors = held["non_2xx"] + held["socket_errors"]
        report.bar("GET /v1/me errors while they are held", errors, "<=", 0)
        report.data = {"with_idle": {k: v for k, v in held.items() if k != "output"},
                       "alone": {k: v for k, v in alone.items() if k != "output"},
                       "opened": opened, "open_failed": open_failed, "alive": alive,
                       "lost": lost}
        return report.finish()


if __name__ == "__main__":
    b.main(bench)
