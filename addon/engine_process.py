"""Start, stop and watch a local engine subprocess (``python -m engine serve``), keeping its log.

No bpy here: this runs on the bridge's worker thread (start/stop) and is polled from the
main thread (``poll``). The engine's stdout and stderr go to a log file in its data
directory; the ready line it prints (holding ``unix://...`` or ``tcp://...``) tells us it
is listening.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from pathlib import Path

from ._link.client import parse_ready_line
from ._link.errors import LatentforgeError

LOG_NAME = "engine.log"


class EngineStartError(LatentforgeError):
    """The engine could not be started; ``advice`` says what to do."""

    code = "engine.start_failed"


def _check_engine(python: str, timeout: float = 20.0) -> str | None:
    """The engine version importable by ``python``, or None."""
    try:
        proc = subprocess.run([python, "-c", "import engine; print(engine.__version__)"], capture_output=True,
                              text=True, timeout=timeout, env=_child_env())
    except (OSError, subprocess.TimeoutExpired):
        return None
    return (proc.stdout.strip() or None) if proc.returncode == 0 else None


def _venv_python(folder: Path) -> Path:
    return folder / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def python_candidates() -> list[str]:
    """Pythons that may have the engine installed, most specific first (not yet checked)."""
    found: list[str] = []
    env = os.environ.get("LATENTFORGE_PYTHON")
    if env:
        found.append(env)
    script = shutil.which("latentforge")
    if script:
        try:
            first = Path(script).read_text(encoding="utf-8", errors="replace").splitlines()[0]
            if first.startswith("#!"):
                found.append(first[2:].strip().split()[0])
        except (OSError, IndexError):
            pass
        found.append(str(Path(script).with_name("python")))
    exe = Path(sys.executable)
    # Inside Blender sys.executable is Blender's own Python; with the bpy module it is the venv's.
    for name in (exe.name, "python3", "python"):
        found.append(str(exe.with_name(name)))
    for root in (Path.cwd(), Path.home() / "latentforge", Path.home() / "Latentforge"):
        found.append(str(_venv_python(root / ".venv")))
    seen, unique = set(), []
    for path in found:
        if path and path not in seen and Path(path).is_file():
            seen.add(path)
            unique.append(path)
    return unique


def detect_python() -> tuple[str, str] | None:
    """The first candidate Python that imports the engine: ``(path, engine version)``."""
    for python in python_candidates():
        version = _check_engine(python)
        if version:
            return python, version
    return None


def _child_env() -> dict[str, str]:
    env = dict(os.environ)
    # A PYTHONHOME meant for Blender's bundled Python would break the engine's interpreter.
    env.pop("PYTHONHOME", None)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def default_socket_path() -> str:
    """A short socket path in a fresh private (0700) temporary directory."""
    return os.path.join(tempfile.mkdtemp(prefix="lf-"), "engine.sock")


class EngineProcess:
    """One local engine subprocess at a time; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self.proc: subprocess.Popen | None = None
        self.log_path: Path | None = None
        self.address: str | None = None
        self.token_file: str | None = None
        self.command: list[str] = []
        self.started_at: float | None = None
        self.exit_code: int | None = None
        self.stopping = False
        self._ready = threading.Event()
        self._tail: deque[str] = deque(maxlen=200)
        self._reader: threading.Thread | None = None

    # ------------------------------------------------------------------ queries

    @property
    def running(self) -> bool:
        with self._lock:
            return self.proc is not None and self.proc.poll() is None

    @property
    def pid(self) -> int | None:
        with self._lock:
            return self.proc.pid if self.proc is not None else None

    def poll(self) -> str:
        """``stopped`` | ``starting`` | ``running`` | ``crashed`` (exited without being asked to)."""
        with self._lock:
            if self.proc is None:
                return "stopped"
            code = self.proc.poll()
            if code is None:
                return "running" if self._ready.is_set() else "starting"
            self.exit_code = code
            return "stopped" if self.stopping else "crashed"

    def tail(self, n: int = 20) -> list[str]:
        """The last ``n`` lines the engine printed."""
        with self._lock:
            return list(self._tail)[-n:]

    # ------------------------------------------------------------------ lifetime

    def start(self, python: str, data_dir: str | None = None, socket_path: str | None = None,
              device: str = "auto", extra_args: list[str] | None = None) -> None:
        """Launch ``python -m engine serve``; returns at once (see ``wait_ready``)."""
        with self._lock:
            if self.running:
                raise EngineStartError("The engine is already running.", "Stop or restart it instead.")
            if not python or not Path(python).is_file():
                raise EngineStartError(f"No Python interpreter at {python!r}.",
                                       "Set 'Engine Python' in the add-on preferences (or press Detect).")
            data = Path(data_dir).expanduser() if data_dir else Path(tempfile.gettempdir()) / "latentforge-engine"
            data.mkdir(parents=True, exist_ok=True)
            socket_path = socket_path or default_socket_path()
            self.log_path = data / LOG_NAME
            self.command = [python, "-m", "engine", "serve", "--socket", socket_path, "--data-dir", str(data)]
            if device and device != "auto":
                self.command += ["--device", device]
            self.command += list(extra_args or [])
            self._ready.clear()
            self._tail.clear()
            self.address = None
            self.exit_code = None
            self.stopping = False
            log = open(self.log_path, "a", encoding="utf-8")
            log.write(f"\n--- {time.strftime('%Y-%m-%d %H:%M:%S')} starting: {' '.join(self.command)}\n")
            log.flush()
            try:
                self.proc = subprocess.Popen(self.command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                             stdin=subprocess.DEVNULL, env=_child_env(), cwd=str(data),
                                             text=True, bufsize=1, start_new_session=True)
            except OSError as exc:
                log.close()
                raise EngineStartError(f"Cannot run {python}: {exc.strerror or exc}.",
                                       "Check 'Engine Python' in the add-on preferences.") from None
            self.started_at = time.time()
            self._reader = threading.Thread(target=self._read_output, args=(self.proc, log, socket_path),
                                            name="latentforge-engine-log", daemon=True)
            self._reader.start()

    def _read_output(self, proc: subprocess.Popen, log, socket_path: str) -> None:
        with log:
            for line in proc.stdout:
                log.write(line)
                log.flush()
                line = line.rstrip("\n")
                with self._lock:
                    self._tail.append(line)
                if not self._ready.is_set():
                    try:
                        self.address, self.token_file = parse_ready_line(line)
                    except ValueError:
                        continue
                    self._ready.set()
            code = proc.wait()
            log.write(f"--- engine exited with code {code}\n")
        self._ready.set()  # wake wait_ready; it checks whether the process is still alive

    def wait_ready(self, timeout: float = 120.0) -> str:
        """Block until the engine prints its address; return it. Raises ``EngineStartError``."""
        if not self._ready.wait(timeout):
            raise EngineStartError(f"The engine did not report ready within {timeout:.0f} s.",
                                   f"See its log: {self.log_path}")
        with self._lock:
            if self.proc is None or self.proc.poll() is not None or not self.address:
                code = None if self.proc is None else self.proc.poll()
                last = " | ".join(self.tail(3)) or "no output"
                raise EngineStartError(f"The engine exited during start-up (code {code}): {last}",
                                       f"Check that this Python has the engine installed; full log: {self.log_path}")
            return self.address

    def stop(self, timeout: float = 10.0) -> None:
        """Terminate the engine (SIGTERM, then SIGKILL after ``timeout``)."""
        with self._lock:
            proc = self.proc
            self.stopping = True
        if proc is None or proc.poll() is not None:
            return
        try:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        except OSError:
            pass
        with self._lock:
            self.exit_code = proc.poll()

    def kill(self) -> None:
        """Kill the engine at once, as a crash would (used by tests and as a last resort)."""
        with self._lock:
            proc = self.proc
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait(5)
