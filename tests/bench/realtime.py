#!/usr/bin/env python3
"""The live channel: 10,000 idle SSE subscribers of GET /v1/realtime held
by nginx (nchan), then one event published to all of them through the
outbox (a realtime.publish job, as every producer writes it): nginx's RSS
before and after, and the time from the job's commit to the last
subscriber hearing it. Also the cost of one publish on the kept-alive
unix-socket connection the jobs worker uses (why its jobs are "quick").

The subscribers are one user's (one token): every connection hears that
user's channel, the worst case of fan-out for one event.

Environment: BENCH_SUBSCRIBERS (10000), BENCH_PROCESSES, BENCH_OUT,
BENCH_STRICT.
"""

import http.client
import json
import os
import socket
import subprocess
import sys
import time

import benchlib as b


class UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path):
        super().__init__("localhost", timeout=10)
        self.unix_path = path

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(self.unix_path)


def nginx_rss_kib(stack):
    with open(stack.path("nginx", "nginx.pid")) as f:
        master = int(f.read().strip())
    pids = [master] + [int(p) for p in subprocess.run(
        ["pgrep", "-P", str(master)], capture_output=True, text=True).stdout.split()]
    return sum(b.vm_rss_kib(p) or 0 for p in pids)


def publish_cost(stack, rounds=500):
    """Mean seconds of one publish to a channel nobody hears, on one
    kept-alive connection."""
    conn = UnixHTTPConnection(stack.path("sock", "realtime.sock"))
    headers = {"X-Stoa-Channels": "u.00000000-0000-4000-8000-000000000000",
               "X-EventSource-Event": "bench.ping", "Content-Type": "application/json"}
    body = json.dumps({"id": "evt_bench", "type": "bench.ping", "data": {}})
    t0 = time.perf_counter()
    for _ in range(rounds):
        conn.request("POST", "/publish", body=body, headers=headers)
        resp = conn.getresponse()
        resp.read()
        if resp.status not in (201, 202):
            raise b.SetupError(f"publisher answered {resp.status}")
    took = (time.perf_counter() - t0) / rounds
    conn.close()
    return took


def bench():
    count = b.env_int("BENCH_SUBSCRIBERS", 10000)
    b.raise_nofile(count + 512)
    with b.BenchStack() as stack:
        report = b.Report("the live channel: 10,000 SSE subscribers, one event",
                          {"subscribers": count, "processes": stack.processes})
        user_id, _, token, _ = stack.register_and_login("realtime")
        cost = publish_cost(stack)
        report.figure("one publish on a kept-alive connection", round(cost * 1e6), "us")
        before = nginx_rss_kib(stack)
        b.note(f"opening {count} SSE subscribers")
        t0 = time.monotonic()
        holder = subprocess.Popen(
            [sys.executable, os.path.join(b.HERE, "sse_clients.py"), str(stack.https_port),
             stack.path("tls", "cert.pem"), str(count), token],
            stdout=subprocess.PIPE, text=True)
        try:
            line = holder.stdout.readline().split()
            if len(line) != 4 or line[0] != "open":
                raise b.SetupError(f"sse_clients.py: {line!r}")
            opened, failed = int(line[1]), int(line[3])
            took_open = time.monotonic() - t0
            time.sleep(2)
            held = nginx_rss_kib(stack)
            b.note(f"{opened} open ({failed} failed) in {took_open:.1f}s; publishing")
            event = json.dumps({"id": "evt_bench", "type": "bench.event",
                                "created": int(time.time()), "data": {}})
            payload = json.dumps({"channels": [f"u.{user_id}"], "event": json.loads(event)})
            sent = time.monotonic()
            stack.psql("INSERT INTO jobs.outbox (kind, payload) VALUES "
                       "('realtime.publish', :'v1'::jsonb)", payload)
            line = holder.stdout.readline().split()
            if len(line) != 6 or line[0] != "heard":
                raise b.SetupError(f"sse_clients.py: {line!r}")
            heard, first, last = int(line[1]), float(line[3]), float(line[5])
            after = nginx_rss_kib(stack)
        finally:
            holder.wait(timeout=120)
        report.figure("subscribers opened", opened)
        report.figure("seconds to open them", round(took_open, 1), "s")
        report.figure("nginx RSS before", before // 1024, "MiB")
        report.figure("nginx RSS holding them", held // 1024, "MiB")
        report.figure("nginx RSS after the event", after // 1024, "MiB")
        report.figure("per subscriber", round((held - before) / max(opened, 1), 1), "KiB")
        report.figure("commit to first subscriber", round((first - sent) * 1000), "ms")
        report.figure("commit to last subscriber", round((last - sent) * 1000), "ms")
        report.bar("subscribers held", opened, ">=", count)
        report.bar("subscribers that heard the event", heard, ">=", count)
        report.bar("errors opening subscribers", failed, "<=", 0)
        report.data = {"opened": opened, "failed": failed, "heard": heard,
                       "rss_kib": [before, held, after], "first_ms": (first - sent) * 1000,
                       "last_ms": (last - sent) * 1000, "publish_us": cost * 1e6}
        return report.finish()


if __name__ == "__main__":
    b.main(bench)
