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
PEER_TOKEN_CACHE (1: the peer caches verified tokens too),
PEER_BATCH_SCHEDULING (1: the peers run under SCHED_BATCH, as stoa's pools
do by default: pool_batch_scheduling), BENCH_OUT, BENCH_STRICT.
"""

import json
import os
import shutil
import subprocess

import benchlib as b

PEER_DIR = os.path.join(b.HERE, "peers", "fastapi")
GO_PEER_SRC = os.path.join(b.HERE, "peers", "go", "main.go")
PEER_PATH = "/peer/v1/me"
GO_PEER_PATH = "/peer-go/v1/me"
# Debian installs golang-jwt v4 without the /v4 directory its import path
# names; GOPATH mode finds it through a link in a GOPATH of our own.
GO_LINKS = {"github.com/golang-jwt/jwt/v4": "/usr/share/gocode/src/github.com/golang-jwt/jwt"}

# Each peer's bars (SPEC §9): stoa's req/s at least `speed` times the
# peer's, stoa's p99 at most `tail` times the peer's (strictly lower for
# the Go peer).
BARS = {"fastapi": {"speed": 5, "tail": round(1 / 3, 3), "strict_tail": False},
        "go": {"speed": 2, "tail": 1, "strict_tail": True}}


def peer_path(kind):
    return PEER_PATH if kind == "fastapi" else GO_PEER_PATH


def peer_batch_scheduling():
    """PEER_BATCH_SCHEDULING=1: the peers run under SCHED_BATCH."""
    return b.env_int("PEER_BATCH_SCHEDULING", 0, minimum=0) == 1


def peer_env(stack):
    env = dict(os.environ, PEER_CONFIG=stack.conf_path())
    # The stack's own STOA_* settings are for stoa's programs.
    for key in [k for k in env if k.startswith("STOA_")]:
        del env[key]
    return env


def build_go_peer():
    """Compiles the Go peer into build/bench/ (once per change of its
    source); its path."""
    out_dir = os.path.join(b.REPO, "build", "bench")
    exe = os.path.join(out_dir, "peer-go")
    if os.path.exists(exe) and os.path.getmtime(exe) >= os.path.getmtime(GO_PEER_SRC):
        return exe
    if not shutil.which("go"):
        raise b.SetupError("go is missing (scripts/deps.sh bench)")
    gopath = os.path.join(out_dir, "gopath")
    pkg = os.path.join(gopath, "src", "stoapeer")
    os.makedirs(pkg, exist_ok=True)
    shutil.copy(GO_PEER_SRC, os.path.join(pkg, "main.go"))
    for imp, target in GO_LINKS.items():
        link = os.path.join(gopath, "src", imp)
        os.makedirs(os.path.dirname(link), exist_ok=True)
        if not os.path.islink(link):
            os.symlink(target, link)
    env = dict(os.environ, GO111MODULE="off", GOPATH=f"{gopath}:/usr/share/gocode",
               GOCACHE=os.path.join(out_dir, "gocache"), GOFLAGS="")
    done = subprocess.run(["go", "build", "-o", exe, "."], cwd=pkg, env=env,
                          capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        raise b.SetupError(f"the Go peer does not build:\n{done.stdout}{done.stderr}")
    return exe


def start_peer(stack, kind="fastapi"):
    """Starts a peer on $RUN/sock/peer-<kind>.sock and routes its path
    (peer_path) to it through the stack's nginx; the path."""
    sock = stack.path("sock", f"peer-{kind}.sock")
    env = peer_env(stack)
    # The policy is inherited by the peer's workers and threads.
    sched = ["chrt", "--batch", "0"] if peer_batch_scheduling() else []
    if kind == "fastapi":
        python = os.environ.get("PEER_PYTHON", "/usr/bin/python3")
        workers = b.env_int("PEER_WORKERS", 2)
        stack.spawn("peer", sched + [python, "-m", "uvicorn", "app:app", "--app-dir", PEER_DIR,
                             "--uds", sock, "--workers", str(workers), "--loop", "uvloop",
                             "--http", "httptools", "--no-access-log", "--log-level",
                             "warning", "--backlog", "4096"], env=env)
    elif kind == "go":
        exe = build_go_peer()
        env["PEER_SOCKET"] = sock
        stack.spawn("peer-go", sched + [exe], env=env)
    else:
        raise b.SetupError(f"unknown peer {kind!r}")
    path = peer_path(kind)
    stack.add_nginx(f"peer-{kind}", http=f"""
upstream bench_peer_{kind} {{
    server unix:{sock};
    keepalive 64;
}}
""", server=f"""
location = {path} {{
    proxy_pass http://bench_peer_{kind}/v1/me;
    proxy_http_version 1.1;
    proxy_set_header Connection "";
    proxy_set_header Host $host;
    proxy_set_header X-Request-Id $stoa_request_id;
}}
""")
    return path


def compare_answers(stack, token, path):
    """Problems found comparing stoa's and the peer's answers at path."""
    problems = []
    c = stack.new_client()
    try:
        auth = {"Authorization": f"Bearer {token}"}
        ours = c.request("GET", "/v1/me", headers=auth)
        stack.wait_for(path, headers=auth, timeout=30)
        theirs = c.request("GET", path, headers=auth)
        if ours.status != 200 or theirs.status != 200 or ours.json != theirs.json:
            problems.append(f"different profiles: stoa {ours.status} {ours.body[:300]!r}, "
                            f"{path} {theirs.status} {theirs.body[:300]!r}")
        bad = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
        for p in ("/v1/me", path):
            r = c.request("GET", p, headers={"Authorization": f"Bearer {bad}"})
            code = (r.json or {}).get("error", {}).get("code")
            if r.status != 401 or code != "unauthenticated":
                problems.append(f"{p} answers a bad signature with {r.status} {code}")
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
    kinds = os.environ.get("BENCH_PEERS", "fastapi go").split()
    for kind in kinds:
        if kind not in BARS:
            raise b.SetupError(f"BENCH_PEERS: unknown peer {kind!r} (fastapi, go)")
    b.which("wrk")
    with b.BenchStack() as stack:
        report = b.Report("GET /v1/me: stoa vs its peers (" + ", ".join(kinds) + ")", {
            "connections": "/".join(map(str, counts)), "runs": runs, "seconds": seconds,
            "processes": stack.processes, "peer_workers": b.env_int("PEER_WORKERS", 2),
            "peer_token_cache": os.environ.get("PEER_TOKEN_CACHE") == "1",
            "peer_batch_scheduling": peer_batch_scheduling()})
        sides = {"stoa": "/v1/me"}
        for kind in kinds:
            sides[kind] = start_peer(stack, kind)
        _, _, token, _ = stack.register_and_login("peer")
        for kind in kinds:
            for p in compare_answers(stack, token, sides[kind]):
                report.problem(p)
        header = [f"Authorization: Bearer {token}"]
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
            results[c] = got
            ours = median(got["stoa"])
            report.figure(f"stoa req/s at {c} connections", ours["requests_per_second"], "/s")
            report.figure(f"stoa p99 at {c} connections", ours["p99_ms"], "ms")
            for kind in kinds:
                theirs = median(got[kind])
                report.figure(f"{kind} req/s at {c} connections",
                              theirs["requests_per_second"], "/s")
                report.figure(f"{kind} p99 at {c} connections", theirs["p99_ms"], "ms")
                speed = (round(ours["requests_per_second"] / theirs["requests_per_second"], 3)
                         if theirs["requests_per_second"] else None)
                tail = (round(ours["p99_ms"] / theirs["p99_ms"], 3)
                        if ours["p99_ms"] is not None and theirs["p99_ms"] else None)
                bars = BARS[kind]
                report.figure(f"stoa/{kind} req/s at {c} connections", speed)
                report.figure(f"stoa/{kind} p99 at {c} connections", tail)
                report.bar(f"stoa/{kind} req/s at {c} connections", speed, ">=",
                           bars["speed"])
                report.bar(f"stoa/{kind} p99 at {c} connections", tail,
                           "<" if bars["strict_tail"] else "<=", bars["tail"])
        report.data = {str(c): v for c, v in results.items()}
        return report.finish()


if __name__ == "__main__":
    b.main(bench)
