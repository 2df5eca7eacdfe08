#!/usr/bin/env python3
"""stoa against a FastAPI peer doing the same work (SPEC §9: at least 5x
its requests/s at 64 and at 1000 connections, p99 at most a third of its
p99).

The peer (tests/bench/peers/fastapi/app.py) serves GET /v1/me the way a
careful FastAPI developer would: ES256 verification against the stack's
JWKS, the same Redis revocation check, the profile from the same Redis
cache and Postgres on a miss. It runs under uvicorn with 2 workers (uvloop,
httptools) on a unix socket behind the same nginx and TLS, at
/peer/v1/me (proxy_pass with upstream keep-alive). Before measuring, both
answers are compared: the same profile, and the same refusal of a bad
token.

Each connection count of BENCH_CONNECTIONS ("64 1000") gets BENCH_RUNS (3)
interleaved runs of BENCH_SECONDS (8) per side; the medians are compared.

Environment: BENCH_CONNECTIONS, BENCH_RUNS, BENCH_SECONDS, BENCH_PROCESSES,
PEER_PYTHON (/usr/bin/python3: Debian's packages), PEER_WORKERS (2),
PEER_TOKEN_CACHE (1: the peer caches verified tokens too), BENCH_OUT,
BENCH_STRICT.
"""

import json
import os

import benchlib as b

PEER_DIR = os.path.join(b.HERE, "peers", "fastapi")
PEER_PATH = "/peer/v1/me"


def start_peer(stack):
    """Starts uvicorn with the peer on $RUN/sock/peer.sock and routes
    /peer/v1/me to it."""
    python = os.environ.get("PEER_PYTHON", "/usr/bin/python3")
    workers = b.env_int("PEER_WORKERS", 2)
    sock = stack.path("sock", "peer.sock")
    env = dict(os.environ, PEER_CONFIG=stack.conf_path())
    # The stack's own STOA_* settings are for stoa's programs.
    for key in [k for k in env if k.startswith("STOA_")]:
        del env[key]
    stack.spawn("peer", [python, "-m", "uvicorn", "app:app", "--app-dir", PEER_DIR,
                         "--uds", sock, "--workers", str(workers), "--loop", "uvloop",
                         "--http", "httptools", "--no-access-log", "--log-level", "warning",
                         "--backlog", "4096"], env=env)
    stack.add_nginx("peer", http=f"""
upstream bench_peer {{
    server unix:{sock};
    keepalive 64;
}}
""", server=f"""
location = {PEER_PATH} {{
    proxy_pass http://bench_peer/v1/me;
    proxy_http_version 1.1;
    proxy_set_header Connection "";
    proxy_set_header Host $host;
    proxy_set_header X-Request-Id $stoa_request_id;
}}
""")
    return sock


def compare_answers(stack, token):
    """Problems found comparing stoa's and the peer's answers."""
    problems = []
    c = stack.new_client()
    try:
        auth = {"Authorization": f"Bearer {token}"}
        ours = c.request("GET", "/v1/me", headers=auth)
        stack.wait_for(PEER_PATH, headers=auth, timeout=30)
        theirs = c.request("GET", PEER_PATH, headers=auth)
        if ours.status != 200 or theirs.status != 200 or ours.json != theirs.json:
            problems.append(f"different profiles: stoa {ours.status} {ours.body[:300]!r}, "
                            f"peer {theirs.status} {theirs.body[:300]!r}")
        bad = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
        for path in ("/v1/me", PEER_PATH):
            r = c.request("GET", path, headers={"Authorization": f"Bearer {bad}"})
            code = (r.json or {}).get("error", {}).get("code")
            if r.status != 401 or code != "unauthenticated":
                problems.append(f"{path} answers a bad signature with {r.status} {code}")
    finally:
        c.close()
    return problems


def median(results):
    ordered = sorted(results, key=lambda r: r["requests_per_second"])
    return ordered[(len(ordered) - 1) // 2]


def bench():
    counts = b.env_counts("BENCH_CONNECTIONS", "64 1000")
    runs = b.env_int("BENCH_RUNS", 3)
    seconds = b.env_int("BENCH_SECONDS", 8)
    b.which("wrk")
    with b.BenchStack() as stack:
        report = b.Report("GET /v1/me: stoa vs a FastAPI peer", {
            "connections": "/".join(map(str, counts)), "runs": runs, "seconds": seconds,
            "processes": stack.processes, "peer_workers": b.env_int("PEER_WORKERS", 2),
            "peer_token_cache": os.environ.get("PEER_TOKEN_CACHE") == "1"})
        start_peer(stack)
        _, _, token, _ = stack.register_and_login("peer")
        for p in compare_answers(stack, token):
            report.problem(p)
        header = [f"Authorization: Bearer {token}"]
        sides = {"stoa": "/v1/me", "peer": PEER_PATH}
        b.note("warm-up: 2s per side")
        for path in sides.values():
            b.run_wrk(stack, path, counts[0], 2, headers=header)
        results = {}
        for c in counts:
            b.note(f"{runs} x {seconds}s per side at {c} connections, interleaved")
            got = {side: [] for side in sides}
            for _ in range(runs):
                for side, path in sides.items():
                    r = b.run_wrk(stack, path, c, seconds, headers=header, timeout_s=10)
                    got[side].append({k: v for k, v in r.items() if k != "output"})
                    for p in b.wrk_problems(f"{side} at {c} connections", r):
                        report.problem(p)
            ours, theirs = median(got["stoa"]), median(got["peer"])
            results[c] = got
            report.figure(f"stoa req/s at {c} connections", ours["requests_per_second"], "/s")
            report.figure(f"peer req/s at {c} connections", theirs["requests_per_second"], "/s")
            report.figure(f"stoa p99 at {c} connections", ours["p99_ms"], "ms")
            report.figure(f"peer p99 at {c} connections", theirs["p99_ms"], "ms")
            speed = (round(ours["requests_per_second"] / theirs["requests_per_second"], 3)
                     if theirs["requests_per_second"] else None)
            tail = (round(ours["p99_ms"] / theirs["p99_ms"], 3)
                    if ours["p99_ms"] is not None and theirs["p99_ms"] else None)
            report.figure(f"stoa/peer req/s at {c} connections", speed)
            report.figure(f"stoa/peer p99 at {c} connections", tail)
            report.bar(f"stoa/peer req/s at {c} connections", speed, ">=", 5)
            report.bar(f"stoa/peer p99 at {c} connections", tail, "<=", round(1 / 3, 3))
        report.data = {str(c): v for c, v in results.items()}
        return report.finish()


if __name__ == "__main__":
    b.main(bench)
