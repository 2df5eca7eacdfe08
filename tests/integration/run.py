#!/usr/bin/env python3
"""Runs the integration files side by side.

Each test_*.py file runs in its own `python3 -m unittest` process; up to
--jobs of them at once. Every stack a file starts has its own run directory
and free ports, so files do not see each other. Most of a file's time is
spent waiting (a stack starting, a job falling due, a lock timing out), so
two cores carry three files at once.

A file whose timings are part of what it asserts (a latency budget, a
count of writes in a window, a process's RSS) says RUN_ALONE = True at
module level: such files run after the others, one at a time.

A file's output is printed whole when it ends, so the log reads file by
file. The longest files start first: their times from the last run are kept
in build/integration-times.json; without it a file's test count stands in.
Exit status is 0 only when every file passed.
"""

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
TIMES = os.path.join(REPO, "build", "integration-times.json")
RAN = re.compile(rb"^Ran (\d+) tests? in ", re.M)


def test_files(pattern):
    names = sorted(f[:-3] for f in os.listdir(HERE)
                   if f.startswith("test_") and f.endswith(".py"))
    if pattern:
        names = [n for n in names if re.search(pattern, n)]
    return names


def runs_alone(name):
    with open(os.path.join(HERE, name + ".py"), "rb") as f:
        return re.search(rb"^RUN_ALONE = True$", f.read(), re.M) is not None


def estimated(name, times):
    if name in times:
        return times[name]
    with open(os.path.join(HERE, name + ".py"), "rb") as f:
        return 5.0 * f.read().count(b"def test_")


class Runner:
    def __init__(self, names, times):
        self.queue = sorted(names, key=lambda n: -estimated(n, times))
        self.lock = threading.Lock()
        self.procs = set()
        self.results = {}
        self.stopping = False

    def next_name(self):
        with self.lock:
            if self.stopping or not self.queue:
                return None
            return self.queue.pop(0)

    def worker(self):
        while True:
            name = self.next_name()
            if name is None:
                return
            self.run_one(name)

    def run_one(self, name):
        t0 = time.monotonic()
        with tempfile.TemporaryFile() as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "unittest", name, "-v"], cwd=HERE,
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True)
            with self.lock:
                self.procs.add(proc)
            rc = proc.wait()
            with self.lock:
                self.procs.discard(proc)
            took = time.monotonic() - t0
            out.seek(0)
            text = out.read()
        m = RAN.search(text)
        count = int(m.group(1)) if m else 0
        with self.lock:
            self.results[name] = (rc, took, count)
            sys.stdout.buffer.write(
                f"\n===== {name}: {'ok' if rc == 0 else 'FAILED'} "
                f"({count} tests, {took:.0f} s)\n".encode())
            sys.stdout.buffer.write(text)
            sys.stdout.flush()

    def stop(self, signum, _frame):
        # The harness of each file tears its stacks down on SIGTERM.
        with self.lock:
            self.stopping = True
            for proc in self.procs:
                try:
                    os.killpg(proc.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        signal.signal(signum, signal.SIG_DFL)

    def run(self, jobs):
        threads = [threading.Thread(target=self.worker) for _ in range(jobs)]
        for t in threads:
            t.start()
        for t in threads:
            while t.is_alive():
                t.join(0.5)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("-j", "--jobs", type=int,
                    default=int(os.environ.get("STOA_TEST_JOBS", "3")))
    ap.add_argument("-k", "--match", help="only files whose name matches this regex")
    args = ap.parse_args()
    try:
        with open(TIMES) as f:
            times = json.load(f)
    except (OSError, ValueError):
        times = {}
    names = test_files(args.match)
    if not names:
        print("no integration file matches", file=sys.stderr)
        return 2
    alone = [n for n in names if runs_alone(n)]
    runner = Runner([n for n in names if n not in alone], times)
    signal.signal(signal.SIGTERM, runner.stop)
    signal.signal(signal.SIGINT, runner.stop)
    t0 = time.monotonic()
    runner.run(max(1, args.jobs))
    with runner.lock:
        runner.queue = sorted(alone, key=lambda n: -estimated(n, times))
    runner.run(1)
    wall = time.monotonic() - t0
    failed = sorted(n for n, (rc, _, _) in runner.results.items() if rc != 0)
    missing = sorted(set(names) - set(runner.results))
    total = sum(c for _, _, c in runner.results.values())
    print(f"\n===== {len(runner.results)} files, {total} tests in {wall:.0f} s "
          f"with {args.jobs} at once")
    for name, (rc, took, count) in sorted(runner.results.items(), key=lambda kv: -kv[1][1]):
        print(f"  {took:6.0f} s  {count:3d} tests  {'ok' if rc == 0 else 'FAILED'}  {name}")
    if not args.match and not failed and not missing:
        times.update({n: round(r[1], 1) for n, r in runner.results.items()})
        os.makedirs(os.path.dirname(TIMES), exist_ok=True)
        with open(TIMES, "w") as f:
            json.dump(times, f, indent=1, sort_keys=True)
    if failed or missing:
        print("FAILED: " + " ".join(failed + [f"{n} (not run)" for n in missing]))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
