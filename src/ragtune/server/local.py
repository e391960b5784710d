"""Running a server on this machine: a free loopback port, and waiting until ``/readyz`` answers 200.

Used by the demo, the benchmarks and the tests, which all start ``ragtune serve`` (or the app in a thread) and
must wait for the model and index to load before the first request.
"""

from __future__ import annotations

import socket
import time
import urllib.error
import urllib.request
from collections.abc import Callable


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
