"""Start an engine as a child process and wait for its ready line (CLI, scripts, tests).

``python -m engine serve ...`` prints exactly one line ``latentforge ready ADDRESS
[token-file=PATH]`` on stdout once it accepts connections; everything else goes to its
log. ``EngineProcess`` parses that line and stops the engine when done (``shutdown``
request first, then SIGTERM, then SIGKILL).
"""

from __future__ import annotations

import os
import selectors
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Sequence

from engine.client import parse_ready_line
from engine.errors import LatentforgeError


class EngineStartFailed(LatentforgeError):
    """A private engine did not come up."""

    code = "engine.start_failed"
    advice = "Run `latentforge serve` yourself to see why, or connect to a running engine with --connect."


class EngineProcess:
    """A running ``latentforge serve`` child process."""

    def __init__(self, args: Sequence[str], *, env: dict[str, str] | None = None, timeout: float = 120.0,
                 log_path: Path | None = None) -> None:
        self.args = [sys.executable, "-m", "engine", "serve", *args]
        self.log_path = log_path
        # stderr goes to a file, never a pipe nobody reads (a full pipe would block the engine).
        self._stderr = open(log_path, "ab") if log_path else tempfile.TemporaryFile()
        self.proc = subprocess.Popen(self.args, stdout=subprocess.PIPE, stderr=self._stderr, env=env,
                                     start_new_session=True)
        self.address, self.token_file = self._wait_ready(timeout)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def _wait_ready(self, timeout: float) -> tuple[str, str | None]:
        deadline = time.monotonic() + timeout
        sel = selectors.DefaultSelector()
        sel.register(self.proc.stdout, selectors.EVENT_READ)
        buf = b""
        try:
            while time.monotonic() < deadline:
                if sel.select(timeout=0.2):
                    chunk = os.read(self.proc.stdout.fileno(), 4096)
                    if not chunk:
                        break
                    buf += chunk
                    if b"\n" in buf:
                        line = buf.split(b"\n", 1)[0].decode("utf-8", "replace").strip()
                        try:
                            return parse_ready_line(line)
                        except ValueError:
                            buf = buf.split(b"\n", 1)[1]
                elif self.proc.poll() is not None:
                    break
        finally:
            sel.close()
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        if self.log_path:
            err = Path(self.log_path).read_text(errors="replace").strip()
        else:
            self._stderr.seek(0)
            err = self._stderr.read().decode("utf-8", "replace").strip()
        self._close_pipes()
        last = err.splitlines()[-1] if err else "no output"
        raise EngineStartFailed(f"The engine did not start within {timeout:.0f} s: {last}",
                                details={"command": self.args, "stderr": err[-4000:]})

    def stop(self, timeout: float = 15.0) -> int:
        """Ask the engine to shut down; escalate to SIGTERM/SIGKILL; return its exit code."""
        if self.proc.poll() is None:
            try:
                from engine.client import EngineClient
                client = EngineClient(self.address, token_file=self.token_file, reconnect=False)
                client.connect(timeout=5)
                client.shutdown(timeout=5)
                client.close()
            except LatentforgeError:
                self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.kill()
        self._close_pipes()
        return self.proc.returncode

    def kill(self) -> None:
        """SIGKILL the engine (no cleanup: as in a crash)."""
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        self._close_pipes()

    def _close_pipes(self) -> None:
        if self.proc.stdout:
            self.proc.stdout.close()
        self._stderr.close()

    def __enter__(self) -> "EngineProcess":
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
