#!/usr/bin/env python3
"""Holds many idle keep-alive TLS clients open against one nginx, for the
connections bench (tests/bench/connections.py).

  idle_clients.py PORT CAFILE COUNT

Opens COUNT TLS connections to 127.0.0.1:PORT (at most 200 handshakes at
a time), sends one GET /healthz on each and reads its answer, then leaves
them idle and prints "open N failed F". On a line "check" on standard
input it sends a second GET /healthz on every connection still open and
prints "alive N failed F" (a connection nginx dropped while idle counts as
failed); on end of input it closes everything and exits.

Python 3.11 standard library (uvloop when installed).
"""

import asyncio
import ssl
import sys

HANDSHAKES_AT_ONCE = 200
TIMEOUT_S = 30


async def one_request(reader, writer):
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    await reader.readexactly(length)
    return status


async def open_one(port, context, gate):
    async with gate:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection("127.0.0.1", port, ssl=context), TIMEOUT_S)
        status = await asyncio.wait_for(one_request(reader, writer), TIMEOUT_S)
        if status != 200:
            writer.close()
            raise RuntimeError(f"status {status}")
        return reader, writer


async def check(conn):
    reader, writer = conn
    try:
        return await asyncio.wait_for(one_request(reader, writer), TIMEOUT_S) == 200
    except (OSError, asyncio.IncompleteReadError, asyncio.TimeoutError, ValueError,
            IndexError):
        return False


async def main(port, cafile, count):
    context = ssl.create_default_context(cafile=cafile)
    gate = asyncio.Semaphore(HANDSHAKES_AT_ONCE)
    results = await asyncio.gather(*(open_one(port, context, gate) for _ in range(count)),
                                   return_exceptions=True)
    conns = [r for r in results if not isinstance(r, BaseException)]
    errors = [r for r in results if isinstance(r, BaseException)]
    print(f"open {len(conns)} failed {len(errors)}", flush=True)
    if errors:
        print(f"first error: {errors[0]!r}", file=sys.stderr, flush=True)
    loop = asyncio.get_running_loop()
    while True:
        line = await loop.run_in_executor(None, sys.stdin.readline)
        if not line:
            break
        if line.strip() == "check":
            ok = await asyncio.gather(*(check(c) for c in conns))
            print(f"alive {sum(ok)} failed {len(ok) - sum(ok) + len(errors)}", flush=True)
    for _, writer in conns:
        writer.close()


if __name__ == "__main__":
    if len(sys.argv) != 4:
        sys.exit("usage: idle_clients.py PORT CAFILE COUNT")
    try:
        import uvloop
        uvloop.install()
    except ImportError:
        pass
    asyncio.run(main(int(sys.argv[1]), sys.argv[2], int(sys.argv[3])))
