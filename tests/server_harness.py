"""Test helpers: an in-process engine on its own event loop thread, and raw-socket frame tools."""

from __future__ import annotations

import asyncio
import atexit
import hashlib
import shutil
import socket
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from engine import protocol
from engine.client import EngineClient
from engine.server.jobs import JobManager
from engine.server.server import EngineServer, ServerConfig
from engine.server.store import Store


def short_tmp() -> Path:
    """A short temporary directory (Unix socket paths are limited to ~100 bytes), removed at exit."""
    path = Path(tempfile.mkdtemp(prefix="lf-test-", dir="/tmp"))
    atexit.register(shutil.rmtree, path, ignore_errors=True)
    return path


class InProcessEngine:
    """EngineServer + JobManager + Store running on a background event loop."""

    def __init__(self, data_dir: Path, *, tcp: bool = False, preview_hz: float = 20.0,
                 config: dict[str, Any] | None = None) -> None:
        self.data_dir = Path(data_dir)
        self.store = Store(self.data_dir)
        self.store.acquire_lock()
        self.manager = JobManager(self.store, "cpu", preview_hz=preview_hz)
        kw = dict(config or {})
        if tcp:
            kw.update(host="127.0.0.1", port=0, token_path=self.data_dir / "run" / "engine.token")
        else:
            kw.update(socket_path=self.data_dir / "run" / "engine.sock")
        self.server = EngineServer(ServerConfig(**kw), self.store, self.manager)
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self.address = ""
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        if not self._ready.wait(60):
            raise RuntimeError("engine did not start")
        if self._error:
            raise self._error

    def _run(self) -> None:
        async def main() -> None:
            try:
                where = await self.server.start()
            except BaseException as exc:
                self._error = exc
                self._ready.set()
                return
            self.address = where.split()[0]
            self.token_file = where.split("token-file=")[1] if "token-file=" in where else None
            self._ready.set()
            await self.server.serve_forever()

        asyncio.run(main())

    def client(self, **kw: Any) -> EngineClient:
        """A connected EngineClient (token read from the token file on TCP)."""
        kw.setdefault("reconnect", False)
        c = EngineClient(self.address, token_file=self.token_file if hasattr(self, "token_file") else None, **kw)
        c.connect(timeout=10)
        return c

    def stop(self) -> None:
        if self._thread.is_alive():
            self.server.request_stop()
            self._thread.join(30)
        self.store.close()


def raw_connect(address: str, hello: bool = True, token: str | None = None) -> socket.socket:
    """A plain socket to the engine (optionally after a successful hello)."""
    if address.startswith("unix://"):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(address[len("unix://"):])
    else:
        host, port = address[len("tcp://"):].rsplit(":", 1)
        s = socket.create_connection((host, int(port)))
    s.settimeout(10)
    if hello:
        protocol.send_message(s, protocol.hello_request(1, token=token, client="raw-test"))
        msg = protocol.read_message(s)
        assert msg.op == "welcome", msg.header
    return s


def wait_for(events, pred, timeout: float = 20.0) -> list:
    """Collect messages from a client's event queue until ``pred(msg)``; return them all."""
    got = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            msg = events.get(timeout=max(0.01, deadline - time.monotonic()))
        except Exception:
            break
        got.append(msg)
        if pred(msg):
            return got
    raise AssertionError(f"condition not met; got {[m.op for m in got]}")


def is_terminal(job_id: str):
    def pred(msg) -> bool:
        return msg.job_id == job_id and (msg.op in ("error", "cancelled") or
                                         (msg.op == "result" and bool(msg.get("final"))))
    return pred


def arrays_sha(arrays: dict[str, np.ndarray]) -> str:
    h = hashlib.sha256()
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        h.update(name.encode() + str(a.dtype.str).encode() + str(a.shape).encode() + a.tobytes())
    return h.hexdigest()
