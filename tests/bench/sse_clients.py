#!/usr/bin/env python3
"""Holds many idle SSE subscribers of GET /v1/realtime, for the live
channel bench (tests/bench/realtime.py).

  sse_clients.py PORT CAFILE COUNT TOKEN

Opens COUNT TLS connections (at most 200 handshakes at a time), each a
GET /v1/realtime with the token and Accept: text/event-stream, reads the
200 head and prints "open N failed F". Then each waits for the first
`data:` line; once all have one (or 60 s passed) it prints "heard N
first T0 last T1" (time.monotonic() of the first and last arrival).

Python 3.11 standard library (uvloop when installed).
"""

import asyncio
import ssl
import sys
import time

HANDSHAKES_AT_ONCE = 200
TIMEOUT_S = 60


async def open_one(port, context, token, gate):
    async with gate:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection("127.0.0.1", port, ssl=context), TIMEOUT_S)
        writer.write((f"GET /v1/realtime HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                      f"Authorization: Bearer {token}\r\nAccept: text/event-stream\r\n\r\n")
                     .encode())
        await writer.drain()
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), TIMEOUT_S)
        status = int(head.split(b" ", 2)[1])
        if status != 200:
            writer.close()
            raise RuntimeError(f"status {status}")
        return reader, writer


async def heard(conn):
    reader, _ = conn
    try:
        while True:
            line = await reader.readline()
            if not line:
                return None
            if b"data:" in line:
                return time.monotonic()
    except (OSError, asyncio.IncompleteReadError, ValueError):
        return None


async def main(port, cafile, count, token):
    context = ssl.create_default_context(cafile=cafile)
    gate = asyncio.Semaphore(HANDSHAKES_AT_ONCE)
    results = await asyncio.gather(*(open_one(port, context, token, gate)
                                     for _ in range(count)), return_exceptions=True)
    conns = [r for r in results if not isinstance(r, BaseException)]
    errors = [r for r in results if isinstance(r, BaseException)]
    print(f"open {len(conns)} failed {len(errors)}", flush=True)
    if errors:
        print(f"first error: {errors[0]!r}", file=sys.stderr, flush=True)
    tasks = [asyncio.ensure_future(heard(c)) for c in conns]
    done, _ = await asyncio.wait(tasks, timeout=TIMEOUT_S)
    times = [t.result() for t in done if t.result() is not None]
    first = min(times) if times else 0
    last = max(times) if times else 0
    print(f"heard {len(times)} first {first:.6f} last {last:.6f}", flush=True)
    for _, writer in conns:
        writer.close()


if __name__ == "__main__":
    try:
        import uvloop
        uvloop.install()
    except ImportError:
        pass
    asyncio.run(main(int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), sys.argv[4]))
