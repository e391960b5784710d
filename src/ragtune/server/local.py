"""Running a server on this machine: a free loopback port, and waiting until ``/readyz`` answers 200.

Used by the demo, the benchmarks and the tests, which all start ``ragtune serve`` (or the app in a thread) and
must wait for the model and index to load before the first request.
"""

from __future__ import annotations

import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ragtune.project import Project


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_ready(url: str, timeout_s: float = 120, alive: Callable[[], bool] = lambda: True,
               poll_s: float = 0.2) -> bool:
    """Whether ``url``/readyz answered 200 within ``timeout_s``; False at once when ``alive()`` turns False (the
    server process exited)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and alive():
        try:
            with urllib.request.urlopen(f"{url}/readyz", timeout=5) as response:  # noqa: S310 - loopback only
                if response.status == 200:
                    return True
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(poll_s)
    return False


@contextmanager
def serve_in_thread(project: Project, timeout_s: float = 180) -> Iterator[str]:
    """``create_app(project)`` on uvicorn in a daemon thread on a free 127.0.0.1 port until the block ends;
    yields the base URL once ``/readyz`` answers 200 (``RuntimeError`` if it does not within ``timeout_s``).
    For tests, scripts and examples that need a real server in-process."""
    import uvicorn

    from ragtune.server.app import create_app

    server = uvicorn.Server(uvicorn.Config(create_app(project), host="127.0.0.1", port=free_port(),
                                           log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.config.port}"
    try:
        if not wait_ready(url, timeout_s):
            raise RuntimeError(f"the server at {url} was not ready within {timeout_s:g} s (see its log above)")
        yield url
    finally:
        server.should_exit = True
        thread.join(timeout=30)
