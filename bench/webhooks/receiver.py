"""A fast local webhook receiver for bench/webhooks: HTTP/1.1 keep-alive on
asyncio, answers 204 at once, and records for every request the delay from
the event's `created_at` (the state change, PostgreSQL's clock = this
machine's) to its arrival.

    python3 receiver.py PORT_FILE EXPECTED OUT_JSON [TIMEOUT_S]

Writes its port to PORT_FILE, exits when EXPECTED requests arrived (or after
TIMEOUT_S without one), and writes {count, first, last, delays_ms[]} to
OUT_JSON.
"""
import asyncio
import json
import re
import sys
import time
from datetime import datetime

CREATED = re.compile(rb'"created_at" : "([^"]+)"')
port_file, expected, out_path = sys.argv[1], int(sys.argv[2]), sys.argv[3]
idle_timeout = float(sys.argv[4]) if len(sys.argv) > 4 else 60
delays, ids = [], set()
first = last = None
done = asyncio.Event()


def _ts(raw: bytes) -> float:
    return datetime.fromisoformat(raw.decode().replace("Z", "+00:00")).timestamp()


async def handle(reader, writer):
    global first, last
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            wid = b""
            for line in head.split(b"\r\n"):
                k, _, v = line.partition(b":")
                k = k.strip().lower()
                if k == b"content-length":
                    length = int(v)
                elif k == b"webhook-id":
                    wid = v.strip()
            body = await reader.readexactly(length)
            now = time.time()
            writer.write(b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n")
            m = CREATED.search(body)
            if wid not in ids:
                ids.add(wid)
                if m:
                    delays.append((now - _ts(m.group(1))) * 1000)
                first = first or now
                last = now
                if len(ids) >= expected:
                    done.set()
    except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
        pass
    finally:
        writer.close()


async def main():
    server = await asyncio.start_server(handle, "127.0.0.1", 0, backlog=1024)
    with open(port_file, "w") as f:
        f.write(str(server.sockets[0].getsockname()[1]))
    seen = -1
    while not done.is_set():
        try:
            await asyncio.wait_for(done.wait(), idle_timeout)
        except asyncio.TimeoutError:
            if len(ids) == seen:
                break  # nothing for a whole timeout: give up
            seen = len(ids)
    server.close()
    with open(out_path, "w") as f:
        json.dump({"count": len(ids), "first": first, "last": last, "delays_ms": delays}, f)


asyncio.run(main())
