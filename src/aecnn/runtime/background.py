"""An edge server on a background thread, for programs and notebooks that are not asyncio
applications: ``with BackgroundServer({net.meta.name: net}) as (host, port): ...``."""

from __future__ import annotations

import asyncio
import threading

from aecnn.core.split import SplitNetwork
from aecnn.runtime.server import EdgeServer, ServerConfig


class BackgroundServer:
    """Runs :class:`~aecnn.runtime.server.EdgeServer` on its own event loop in a daemon
    thread. Entering starts it and gives ``(host, port)`` (``ServerConfig(port=0)``, the
    default here, picks a free port); leaving shuts it down gracefully (answers in flight
    are sent) and joins the thread."""

    def __init__(self, networks: dict[str, SplitNetwork],
                 config: ServerConfig | None = None) -> None:
        self.server = EdgeServer(networks, config or ServerConfig(port=0))
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True,
                                         name="aecnn-edge-server")
        self.address: tuple[str, int] | None = None

    def start(self) -> tuple[str, int]:
        """Start listening; returns ``(host, port)``."""
        self.address = self._loop.run_until_complete(self.server.start())
        self._thread.start()
        return self.address

    def stop(self, timeout: float = 30.0) -> None:
        """Shut the server down and stop its thread (idempotent)."""
        if not self._thread.is_alive():
            return
        asyncio.run_coroutine_threadsafe(self.server.shutdown(), self._loop).result(timeout)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout)
        self._loop.close()

    def __enter__(self) -> tuple[str, int]:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
