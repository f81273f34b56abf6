"""Latency from ``POST /api/work-items/`` to the offer frame on the agent's WebSocket.

One asyncio loop holds every agent's console socket and posts work items at a steady rate over
a few keep-alive HTTP connections. Each offer frame is stamped on arrival and matched to its
POST by item id (the frame may arrive before the POST's response is read).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import websockets


@dataclass
class LatencyRun:
    rate_per_second: float
    direct: bool  # enqueued by a service call in this process, not through the API
    due_at: dict[int, float] = field(default_factory=dict)  # item id -> when it was due to go
    sent_at: dict[int, float] = field(default_factory=dict)  # item id -> just before the POST
    answered_at: dict[int, float] = field(default_factory=dict)  # item id -> 201 read
    errors: list[str] = field(default_factory=list)
    posted: int = 0
    seconds: float = 0.0  # from the first POST due to the last answer


@dataclass
class Consoles:
    offered_at: dict[int, float] = field(default_factory=dict)  # item id -> offer frame read
    connected: int = 0
    state_frames: int = 0
    errors: list[str] = field(default_factory=list)


class _Http:
    """A minimal HTTP/1.1 keep-alive client: one request at a time per connection."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def request(
        self, method: str, path: str, body: bytes, headers: dict[str, str]
    ) -> tuple[int, bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        assert self.reader is not None
        head = [f"{method} {path} HTTP/1.1", f"Host: {self.host}:{self.port}"]
        head += [f"{k}: {v}" for k, v in headers.items()]
        head += [f"Content-Length: {len(body)}", "", ""]
        self.writer.write("\r\n".join(head).encode() + body)
        await self.writer.drain()
        status = int((await self.reader.readline()).split()[1])
        length, chunked, close = 0, False, False
        while (line := await self.reader.readline()) not in (b"\r\n", b"\n", b""):
            name, _, value = line.decode("latin-1").partition(":")
            name, value = name.strip().lower(), value.strip()
            if name == "content-length":
                length = int(value)
            elif name == "transfer-encoding" and "chunked" in value.lower():
                chunked = True
            elif name == "connection" and value.lower() == "close":
                close = True
        if chunked:
            parts = []
            while size := int((await self.reader.readline()).strip(), 16):
                parts.append(await self.reader.readexactly(size))
                await self.reader.readline()
            await self.reader.readline()
            data = b"".join(parts)
        else:
            data = await self.reader.readexactly(length)
        if close:
            self.writer.close()
            self.writer = None
        return status, data


async def _console(
    ws_url: str, origin: str, session_key: str, consoles: Consoles, ready: asyncio.Event
) -> None:
    headers = {"Cookie": f"sessionid={session_key}", "Origin": origin}
    try:
        async with websockets.connect(
            ws_url, additional_headers=headers, max_size=None, ping_interval=None
        ) as ws:
            consoles.connected += 1
            async for raw in ws:
                now = time.perf_counter()
                frame = json.loads(raw)
                kind = frame.get("type")
                if kind == "offer":
                    consoles.offered_at.setdefault(frame["payload"]["item_id"], now)
                elif kind == "state":
                    consoles.state_frames += 1
                    ready.set()
    except (OSError, websockets.WebSocketException) as exc:
        consoles.errors.append(f"console: {exc!r}")
        ready.set()


async def measure(
    *,
    base_url: str,
    sessions: list[str],
    token: str,
    queue_ids: list[int],
    channel_ids: list[int],
    rates_per_second: list[tuple[float, bool]],
    seconds: float,
    enqueue_direct: Callable[[int, int, str], Awaitable[int]],
    between_runs: Callable[[], Awaitable[None]],
    progress: Callable[[str], None],
) -> tuple[Consoles, list[LatencyRun]]:
    """Connect a console per session, then for each rate post ``rate * seconds`` items on a
    steady schedule. Latency counts from the moment an item was due, so a client or server
    that falls behind shows in the figures instead of hiding in a queue.

    ``rates_per_second`` holds (rate, direct) pairs: direct runs enqueue with ``enqueue_direct``
    (queue id, channel id, subject -> item id) instead of the HTTP POST. ``between_runs`` empties
    the agents and the line before each run.
    """
    consoles = Consoles()
    parts = urlsplit(base_url)
    ws_url = f"ws://{parts.hostname}:{parts.port}/ws/agent/"
    tasks = []
    limit = asyncio.Semaphore(25)  # connecting is the server's busiest moment: keep it bounded

    async def connect(key: str) -> None:
        async with limit:
            ready = asyncio.Event()
            tasks.append(asyncio.create_task(_console(ws_url, base_url, key, consoles, ready)))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(ready.wait(), 30)

    t0 = time.perf_counter()
    for start in range(0, len(sessions), 100):
        await asyncio.gather(*(connect(k) for k in sessions[start : start + 100]))
        progress(f"  consoles connected: {consoles.state_frames}/{len(sessions)}")
    elapsed = time.perf_counter() - t0
    progress(f"  {consoles.state_frames} consoles got their state frame in {elapsed:.1f}s")
    await asyncio.sleep(2.0)  # let the connect-time work (console touches) settle

    rng = random.Random(3)
    pool: asyncio.Queue[_Http] = asyncio.Queue()
    for _ in range(16):  # keeps up with what one web process answers here, within max_connections
        pool.put_nowait(_Http(parts.hostname or "127.0.0.1", parts.port or 80))
    headers = {"Authorization": f"Token {token}", "Content-Type": "application/json"}
    runs = []
    for rate, direct in rates_per_second:
        await between_runs()
        run = LatencyRun(rate_per_second=rate, direct=direct)
        runs.append(run)

        async def post_one(n: int, due: float, run: LatencyRun = run) -> None:
            queue_id, channel_id = rng.choice(queue_ids), rng.choice(channel_ids)
            subject = f"Latency item {n}"
            if run.direct:
                sent = time.perf_counter()
                item_id = await enqueue_direct(queue_id, channel_id, subject)
            else:
                body = json.dumps(
                    {
                        "queue": queue_id,
                        "channel": channel_id,
                        "subject": subject,
                        "priority": 5,
                        "payload": {"customer": f"Customer {n}"},
                    }
                ).encode()
                conn = await pool.get()
                try:
                    sent = time.perf_counter()
                    status, data = await conn.request("POST", "/api/work-items/", body, headers)
                finally:
                    pool.put_nowait(conn)
                if status != 201:
                    run.errors.append(f"POST -> {status}: {data[:200]!r}")
                    return
                item_id = json.loads(data)["id"]
            run.due_at[item_id] = due
            run.sent_at[item_id] = sent
            run.answered_at[item_id] = time.perf_counter()

        total = int(rate * seconds)
        how = "enqueue_work() from this process" if direct else "POST /api/work-items/"
        progress(f"  {rate:.0f} items/s for {seconds:.0f}s, {how}")
        start = time.perf_counter()
        posts = []
        for n in range(total):
            due = start + n / rate
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            posts.append(asyncio.create_task(post_one(n, due)))
            run.posted += 1
            if n and n % int(rate * 5) == 0:
                progress(
                    f"    due {n}/{total}, created {len(run.sent_at)}, "
                    f"offers seen {len(consoles.offered_at)}"
                )
        await asyncio.gather(*posts)
        run.seconds = time.perf_counter() - start
        # Stragglers: wait until every item has its offer, or give up after a while.
        deadline = time.perf_counter() + 20
        while time.perf_counter() < deadline and not set(run.sent_at) <= set(consoles.offered_at):
            await asyncio.sleep(0.05)
        await asyncio.sleep(1.0)  # a quiet line between runs
    # Close the consoles a few at a time: a thousand at once floods the server's channel layer
    # pool with group_discard calls (and its log with errors) for no benefit.
    for start in range(0, len(tasks), 50):
        for task in tasks[start : start + 50]:
            task.cancel()
        await asyncio.gather(*tasks[start : start + 50], return_exceptions=True)
        await asyncio.sleep(0.05)
    return consoles, runs
