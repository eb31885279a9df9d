"""A TCP proxy on loopback that delays what it forwards and counts round trips: a network of a
given round-trip time between a client and PostgreSQL, on one machine.

    with LatencyProxy("127.0.0.1", 5432, rtt_ms=20) as proxy:
        url = proxy.url("postgresql://user@127.0.0.1:5432/db")  # the same URL through the proxy
        ...run commands against url...
        proxy.round_trips                                       # since the last proxy.reset()

Each chunk is delivered half the round-trip time after it arrived, in order, in each direction.
A round trip is counted each time the client speaks after the server did (or first): a query and
its results are one, however many packets they take, and so is each step of the connection's
start-up (SSL request, start-up message, authentication). The proxy runs an asyncio loop in a
thread of the benchmark's own process; the commands measured run in processes of their own.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from types import TracebackType
from urllib.parse import urlsplit, urlunsplit


class LatencyProxy:
    """Forwards 127.0.0.1:``port`` (a free one) to ``host``:``target_port`` with ``rtt_ms``."""

    def __init__(self, host: str, target_port: int, rtt_ms: float) -> None:
        self.host, self.target_port = host, target_port
        self.delay = rtt_ms / 2000  # one way, in seconds
        self.port = 0
        self._round_trips = 0
        self._counting = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def __enter__(self) -> LatencyProxy:
        self._thread.start()
        self._ready.wait(10)
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    @property
    def round_trips(self) -> int:
        with self._counting:
            return self._round_trips

    def reset(self) -> None:
        """Start counting round trips from zero."""
        with self._counting:
            self._round_trips = 0

    def url(self, url: str) -> str:
        """``url`` (a database URL of the proxied server) with the proxy's address."""
        parts = urlsplit(url)
        credentials = parts.netloc.rpartition("@")[0]
        netloc = f"{credentials}@127.0.0.1:{self.port}" if credentials else f"127.0.0.1:{self.port}"
        return urlunsplit(parts._replace(netloc=netloc))

    # The loop, in its thread ------------------------------------------------------------------

    def _serve(self) -> None:
        asyncio.set_event_loop(self._loop)
        server = self._loop.run_until_complete(asyncio.start_server(self._connection, "127.0.0.1", 0))
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        self._loop.run_forever()
        server.close()
        pending = asyncio.all_tasks(self._loop)
        for task in pending:
            task.cancel()
        self._loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        self._loop.close()

    async def _connection(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        try:
            server_reader, server_writer = await asyncio.open_connection(self.host, self.target_port)
        except OSError:
            client_writer.close()
            return
        last = ["server"]  # who spoke last: the client's next words start a round trip
        with contextlib.suppress(asyncio.CancelledError):  # the proxy is closing
            await asyncio.gather(
                self._pipe(client_reader, server_writer, "client", last),
                self._pipe(server_reader, client_writer, "server", last),
            )

    async def _pipe(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, side: str, last: list[str]
    ) -> None:
        """Forward ``reader`` to ``writer``, each chunk ``self.delay`` after it arrived."""
        queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()
        deliver = asyncio.ensure_future(self._deliver(queue, writer))
        try:
            while data := await reader.read(1 << 16):
                if side == "client" and last[0] == "server":
                    with self._counting:
                        self._round_trips += 1
                last[0] = side
                queue.put_nowait((time.monotonic() + self.delay, data))
        except OSError:
            pass
        queue.put_nowait((0.0, b""))
        await deliver

    @staticmethod
    async def _deliver(queue: asyncio.Queue[tuple[float, bytes]], writer: asyncio.StreamWriter) -> None:
        while True:
            due, data = await queue.get()
            if not data:
                break
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            try:
                writer.write(data)
                await writer.drain()
            except OSError:
                break
        writer.close()
