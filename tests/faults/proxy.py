"""A local TCP proxy that can partition the network silently: no byte forwarded, no socket closed.

Workers connect through it. ``partition()`` turns every open flow into a black hole: what
either side sends is read and thrown away, nothing is answered and nothing is closed, as
after a failover, a host gone or a NAT entry dropped. A flow opened during the partition
is a black hole too. ``heal()`` lets new flows through again; the flows that were cut stay
silent (their bytes are gone), so a client only recovers by noticing (a timeout) and
opening a new connection, as it must after a real partition.

``latency_s`` delays every chunk each way (a slow network): replies are in flight for a
while, long enough for a test to stop a worker while the store has already acted.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading


class SilentProxy:
    def __init__(
        self, target_port: int, target_host: str = "127.0.0.1", latency_s: float = 0.0
    ) -> None:
        self.target = (target_host, target_port)
        self.latency_s = latency_s
        self.port = 0
        self._partitioned = False
        self._cut: set[int] = set()  # ids of flows that are black holes for good
        self._next_flow = 0
        self._writers: list[asyncio.StreamWriter] = []
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.Server | None = None
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    def start(self) -> SilentProxy:
        self._thread.start()
        future = asyncio.run_coroutine_threadsafe(self._listen(), self._loop)
        self.port = future.result(10)
        return self

    async def _listen(self) -> int:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        sock: socket.socket = self._server.sockets[0]
        return int(sock.getsockname()[1])

    async def _accept(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        flow = self._next_flow
        self._next_flow += 1
        self._writers.append(client_w)
        if self._partitioned:
            self._cut.add(flow)
        try:
            server_r, server_w = await asyncio.open_connection(*self.target)
        except OSError:
            client_w.close()
            return
        self._writers.append(server_w)
        await asyncio.gather(
            self._pipe(flow, client_r, server_w), self._pipe(flow, server_r, client_w)
        )

    async def _pipe(
        self, flow: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        try:
            while data := await reader.read(65536):
                if flow in self._cut:
                    continue  # swallowed: the other side never hears of it
                if self.latency_s:
                    await asyncio.sleep(self.latency_s)
                    if flow in self._cut:
                        continue
                writer.write(data)
                await writer.drain()
        except (OSError, asyncio.CancelledError):
            pass
        if flow not in self._cut:  # a cut flow never closes: the peer must notice by itself
            with contextlib.suppress(OSError):
                writer.close()

    def partition(self) -> None:
        def cut() -> None:
            self._partitioned = True
            self._cut.update(range(self._next_flow))

        self._loop.call_soon_threadsafe(cut)

    def heal(self) -> None:
        def mend() -> None:
            self._partitioned = False

        self._loop.call_soon_threadsafe(mend)

    def close(self) -> None:
        async def shut() -> None:
            if self._server is not None:
                self._server.close()
            for writer in self._writers:
                with contextlib.suppress(Exception):
                    writer.close()

        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(shut(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
