"""Running the local router: in a daemon thread (the app and tests) or in the foreground (CLI).

Always on loopback by default; the router itself never calls out.
"""

from __future__ import annotations

import atexit
import logging
import os
import socket
import threading
import time
import weakref

import uvicorn

from .app import LOCAL_API_KEY, EmulatorSettings, create_app

API_PATH = "/v2/router"
START_TIMEOUT_S = 10.0
_CUT_LOG_LINE = "ASGI callable returned without completing response."


class _HideInjectedCuts(logging.Filter):
    """The ``cut`` fault ends a response mid-body on purpose; uvicorn logs that as an error."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.getMessage() != _CUT_LOG_LINE


logging.getLogger("uvicorn.error").addFilter(_HideInjectedCuts())
# uvicorn's own logging config would attach handlers that outlive pytest's captured streams and
# print "Logging error" at interpreter exit; the router only needs warnings, through the root logger.
logging.getLogger("uvicorn.error").setLevel(logging.WARNING)


def _config(app, host: str, port: int) -> uvicorn.Config:
    return uvicorn.Config(app, host=host, port=port, log_level="warning", log_config=None,
                          access_log=False, lifespan="off", http="h11",
                          timeout_graceful_shutdown=1)


class LocalRouter:
    """A router serving in a daemon thread. ``base_url`` ends in /v2/router, like Orq's."""

    def __init__(self, settings: EmulatorSettings, host: str, port: int):
        self.settings = settings
        self.host = host
        # proto IPPROTO_TCP, not the default 0: asyncio sets TCP_NODELAY only on sockets that say
        # they are TCP, and without it every keep-alive request after the first waits ~40 ms
        # (Nagle's algorithm against the client's delayed ACK).
        self._socket = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM,
                                     socket.IPPROTO_TCP)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._socket.bind((host, port))
        self.port = self._socket.getsockname()[1]
        self.app = create_app(settings)
        self._server = uvicorn.Server(_config(self.app, host, self.port))
        self._thread = threading.Thread(target=self._serve, name=f"local-router:{self.port}", daemon=True)
        self._thread.start()
        self._wait_until_serving()
        _in_process[self.base_url] = self

    def _serve(self) -> None:
        self._server.run(sockets=[self._socket])

    def _wait_until_serving(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"the local router did not start on {self.host}:{self.port}")
            time.sleep(0.005)

    @property
    def base_url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}{API_PATH}"

    @property
    def api_key(self) -> str:
        return self.settings.api_key or LOCAL_API_KEY

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def stop(self, timeout: float = 5.0, *, wait: bool = True) -> None:
        """Ask uvicorn to shut down (it notices within ~0.1 s) and, with ``wait``, join its thread."""
        self._server.should_exit = True
        if wait and self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout)
            self._socket.close()

    def __enter__(self) -> "LocalRouter":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"LocalRouter({self.base_url}, time_scale={self.settings.time_scale})"


_in_process: "weakref.WeakValueDictionary[str, LocalRouter]" = weakref.WeakValueDictionary()


def local_router_at(base_url: str) -> LocalRouter | None:
    """The router this process serves at ``base_url`` (None for Orq or another process's router)."""
    router = _in_process.get(base_url.rstrip("/"))
    return router if router is not None and router.running else None


def start_local_router(settings: EmulatorSettings | None = None, host: str = "127.0.0.1", port: int = 0) -> LocalRouter:
    """Start a router in a daemon thread and return once it serves (port 0 = a free port)."""
    return LocalRouter(settings or EmulatorSettings(), host, port)


_singleton: LocalRouter | None = None
_singleton_lock = threading.Lock()


TIME_SCALE_ENV = "ORQ_LOCAL_ROUTER_TIME_SCALE"


def _time_scale_from_env(default: float = 1.0) -> float:
    """ORQ_LOCAL_ROUTER_TIME_SCALE: 1 (default) realistic waits, 0 answers at once."""
    try:
        return max(0.0, float(os.environ.get(TIME_SCALE_ENV, default)))
    except ValueError:
        return default


def get_local_router() -> LocalRouter:
    """The process-wide router, started on first use and stopped at exit.

    Its time_scale follows ORQ_LOCAL_ROUTER_TIME_SCALE at every call (settings are live), so a
    test that sets the variable gets an instant router even if an earlier one started it."""
    global _singleton
    with _singleton_lock:
        if _singleton is None or not _singleton.running:
            _singleton = start_local_router(EmulatorSettings(time_scale=_time_scale_from_env()))
            atexit.register(_singleton.stop)
        elif TIME_SCALE_ENV in os.environ:
            _singleton.settings.time_scale = _time_scale_from_env(_singleton.settings.time_scale)
        return _singleton


def run_forever(port: int = 8787, host: str = "127.0.0.1", time_scale: float = 1.0, api_key: str | None = None) -> None:
    """Serve in the foreground until Ctrl-C (``python -m orq_core emulator``)."""
    settings = EmulatorSettings(time_scale=time_scale, api_key=api_key)
    print(f"Local router (synthetic answers) on http://{host}:{port}{API_PATH}  "
          f"key: {'the one you set' if api_key else LOCAL_API_KEY}  time_scale: {time_scale:g}", flush=True)
    uvicorn.Server(_config(create_app(settings), host, port)).run()
