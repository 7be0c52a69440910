"""Blocking, thread-safe client of the Latentforge engine (see docs/protocol.md).

Standard library + numpy only, relative imports only: the Blender add-on ships this
module unchanged. The add-on calls it from a background thread and drains
``client.events`` (a ``queue.Queue`` of ``protocol.Message``) on Blender's main thread.

One reader thread per client reads every frame. Replies are matched to the waiting
request by ``req_id``; pushed job events (progress, preview, result, error, cancelled)
and local ``connection`` events go to ``client.events`` and to the optional callback.
When the connection drops the reader reconnects with exponential backoff, sends
``hello`` again, and re-subscribes to every job it follows that has not reached a final
state; results it already delivered are not delivered twice.
"""

from __future__ import annotations

import itertools
import logging
import os
import queue
import socket
import threading
import time
from typing import Any, Callable, Mapping

from . import protocol
from .errors import JobCancelled, LatentforgeError
from .protocol import AuthFailed, Message, ProtocolError, VersionMismatch

log = logging.getLogger(__name__)


class ConnectionFailed(LatentforgeError):
    """The engine could not be reached."""

    code = "connection.failed"
    advice = ("Start the engine (`latentforge serve`) and check the address in the add-on "
              "preferences (a socket path, or tcp://127.0.0.1:PORT).")


class ConnectionLost(LatentforgeError):
    """The connection dropped while a request waited for its reply."""

    code = "connection.lost"
    advice = "The client reconnects by itself; retry the request once it is connected again."


class RequestTimeout(LatentforgeError):
    """No reply came in time."""

    code = "connection.timeout"
    advice = "The engine may be busy or stuck; check its log, or raise the client's timeout."


class ClientClosed(LatentforgeError):
    """The client was closed."""

    code = "connection.closed"
    advice = "Create a new client to talk to the engine again."


def parse_address(address: str) -> tuple[str, Any]:
    """``("unix", path)`` or ``("tcp", (host, port))`` from an address string.

    Accepted: ``tcp://host:port``, ``unix:///path`` or ``unix:/path``, a bare
    ``host:port`` (port all digits, no ``/``), otherwise a Unix socket path.
    """
    if not isinstance(address, str) or not address:
        raise ConnectionFailed(f"Engine address {address!r} is empty or not a string.")
    if address.startswith("tcp://"):
        return "tcp", _host_port(address[6:], address)
    if address.startswith("unix://"):
        return "unix", os.path.expanduser(address[7:])
    if address.startswith("unix:"):
        return "unix", os.path.expanduser(address[5:])
    host, sep, port = address.rpartition(":")
    if sep and host and port.isdigit() and "/" not in address and "\\" not in address:
        return "tcp", _host_port(address, address)
    return "unix", os.path.expanduser(address)


def _host_port(text: str, address: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not host:
        raise ConnectionFailed(f"Engine address {address!r} is not of the form tcp://host:port.")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host, int(port)


# `latentforge serve` prints exactly one line on stdout once it accepts connections:
# "latentforge ready ADDRESS [token-file=PATH]". Whoever starts an engine reads it here.
READY_PREFIX = "latentforge ready "


def parse_ready_line(line: str) -> tuple[str, str | None]:
    """``(address, token_file or None)`` from the engine's ready line; ``ValueError`` for any other line."""
    parts = line[len(READY_PREFIX):].split() if line.startswith(READY_PREFIX) else []
    if not parts:
        raise ValueError(f"not a ready line: {line!r}")
    token_file = next((p.split("=", 1)[1] for p in parts[1:] if p.startswith("token-file=")), None)
    return parts[0], token_file


class TokenUnreadable(AuthFailed):
    """The token file cannot be read (same code as a wrong token: the user fixes the same setting)."""

    advice = ("Check the token file path in the add-on preferences; `latentforge serve --host ...` "
              "prints where it wrote the token.")


def read_token_file(path: str | os.PathLike) -> str:
    """The token stored in an engine token file (surrounding whitespace removed)."""
    try:
        with open(os.path.expanduser(os.fspath(path)), encoding="utf-8") as f:
            token = f.read().strip()
    except OSError as exc:
        raise TokenUnreadable(f"Cannot read the engine token file {os.fspath(path)!r}: "
                              f"{exc.strerror or exc}.") from None
    if not token:
        raise TokenUnreadable(f"The engine token file {os.fspath(path)!r} is empty.")
    return token


class _Pending:
    """One request waiting for its terminal reply."""

    __slots__ = ("op", "job_id", "messages", "error", "done", "background")

    def __init__(self, op: str, job_id: str | None, background: bool) -> None:
        self.op = op
        self.job_id = job_id
        self.messages: list[Message] = []
        self.error: LatentforgeError | None = None
        self.done = threading.Event()
        self.background = background  # nobody waits: sent by the reader itself (re-subscribe)

    def add(self, msg: Message) -> bool:
        """Record a reply; True when it ends the request."""
        if msg.op == "error":
            self.error = protocol.error_from_header(msg.header)
            return True
        self.messages.append(msg)
        return self.op != "result" or (msg.op == "result" and bool(msg.get("final")))


EventCallback = Callable[[Message], None]


class EngineClient:
    """A connection to one engine. Every public method is safe to call from any thread.

    ``address``: Unix socket path or ``tcp://host:port``. ``token`` (or ``token_file``,
    re-read on every reconnect since a restarted engine writes a new token) is needed
    on TCP. ``on_event`` is called on the reader thread for every event; it must be
    quick and must not call back into this client and wait (use ``client.events`` for
    anything else).
    """

    def __init__(self, address: str, token: str | None = None, client_name: str = "latentforge", *,
                 token_file: str | os.PathLike | None = None, on_event: EventCallback | None = None,
                 request_timeout: float = 30.0, reconnect: bool = True,
                 reconnect_delay: float = 0.1, reconnect_max_delay: float = 5.0) -> None:
        self.address = address
        self._kind, self._target = parse_address(address)
        self.token = token
        self.token_file = token_file
        self.client_name = client_name
        self.on_event = on_event
        self.request_timeout = float(request_timeout)
        self.reconnect = reconnect
        self.reconnect_delay = float(reconnect_delay)
        self.reconnect_max_delay = float(reconnect_max_delay)
        self.events: queue.Queue[Message] = queue.Queue()
        self.welcome: dict[str, Any] | None = None

        self._sock: socket.socket | None = None
        self._send_lock = threading.Lock()
        self._state_lock = threading.Lock()
        self._connect_lock = threading.Lock()
        self._pending: dict[int, _Pending] = {}
        # job_id -> result indices already delivered; jobs leave on their final event.
        self._following: dict[str, set[int]] = {}
        self._ids = itertools.count(1)
        self._connected = threading.Event()
        self._closing = threading.Event()
        self._stop_reconnect = False
        self._fatal: LatentforgeError | None = None
        self._gave_up = threading.Event()  # the reader ended without close(): no more reconnects
        self._reader: threading.Thread | None = None
        self._connect_timeout = 5.0

    # ------------------------------------------------------------------ connection

    @property
    def connected(self) -> bool:
        """True while a welcomed connection is up."""
        return self._connected.is_set()

    @property
    def following(self) -> list[str]:
        """Job ids this client follows (re-subscribed on reconnect) until they end."""
        with self._state_lock:
            return list(self._following)

    def connect(self, timeout: float = 5.0) -> dict[str, Any]:
        """Connect, say hello, check the version, start the reader; return the ``welcome`` header."""
        with self._connect_lock:
            if self._closing.is_set():
                raise ClientClosed("This client was closed.")
            if self._connected.is_set() and self.welcome is not None:
                return self.welcome
            reader = self._reader
            if reader is not None and reader.is_alive():
                # The reader is reconnecting on its own; a second connection would race it.
                self._wait_connected(time.monotonic() + timeout, timeout)
                return self.welcome
            self._connect_timeout = float(timeout)
            sock = self._open(timeout)
            try:
                welcome = self._handshake(sock, timeout)
            except BaseException:
                _close_quietly(sock)
                raise
            self._fatal = None
            self._stop_reconnect = False
            self._install(sock, welcome)
            # Before the reader starts, so "connected" precedes every event of this connection.
            self._deliver(Message(protocol.connection_event("connected", self.address)))
            self._gave_up.clear()
            self._reader = threading.Thread(target=self._read_loop, name="latentforge-client-reader",
                                            daemon=True)
            self._reader.start()
        return welcome

    def close(self) -> None:
        """Close the connection and stop the reader; waiting requests get ``ClientClosed``."""
        if self._closing.is_set():
            return
        self._closing.set()
        sock = self._sock
        self._connected.clear()
        if sock is not None:
            _close_quietly(sock)
        reader = self._reader
        if reader is not None and reader is not threading.current_thread():
            reader.join(timeout=5.0)
        self._fail_pending(ClientClosed("The client was closed while the request waited."))
        self._deliver(Message(protocol.connection_event("closed", self.address)))

    def __enter__(self) -> "EngineClient":
        if not self.connected:
            self.connect()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def _current_token(self) -> str | None:
        if self.token is not None:
            return self.token
        if self.token_file is not None:
            return read_token_file(self.token_file)
        return None

    def _open(self, timeout: float) -> socket.socket:
        try:
            if self._kind == "tcp":
                sock = socket.create_connection(self._target, timeout=timeout)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                _no_sigpipe(sock)
                return sock
            if not hasattr(socket, "AF_UNIX"):
                raise ConnectionFailed("Unix sockets are not available on this system.",
                                       "Start the engine with --host 127.0.0.1 --port N and connect to tcp://127.0.0.1:N.")
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(timeout)
            try:
                sock.connect(self._target)
            except BaseException:
                sock.close()
                raise
            _no_sigpipe(sock)
            return sock
        except OSError as exc:
            raise ConnectionFailed(f"Cannot connect to the engine at {self.address}: "
                                   f"{exc.strerror or exc}.") from None

    def _handshake(self, sock: socket.socket, timeout: float) -> dict[str, Any]:
        """hello -> welcome on a fresh socket, before the reader thread owns it."""
        sock.settimeout(timeout)
        req_id = next(self._ids)
        try:
            protocol.send_message(sock, protocol.hello_request(req_id, token=self._current_token(),
                                                               client=self.client_name))
            msg = protocol.read_message(sock)
        except socket.timeout:
            raise RequestTimeout(f"The engine at {self.address} did not answer hello within {timeout:g} s.") from None
        except ProtocolError:
            raise
        except OSError as exc:
            raise ConnectionFailed(f"The engine at {self.address} dropped the connection during hello: "
                                   f"{exc.strerror or exc}.") from None
        if msg is None:
            raise ConnectionFailed(f"The engine at {self.address} closed the connection during hello.")
        if msg.op == "error":
            raise protocol.error_from_header(msg.header)
        if msg.op != "welcome":
            raise protocol.BadHeader(f"Expected 'welcome' in reply to hello, got {msg.op!r}.")
        version = msg.get("version")
        if version != protocol.PROTOCOL_VERSION:
            raise VersionMismatch(f"The engine speaks protocol version {version}; this add-on speaks "
                                  f"{protocol.PROTOCOL_VERSION}.",
                                  details={"peer_version": version, "version": protocol.PROTOCOL_VERSION})
        sock.settimeout(None)
        return dict(msg.header)

    def _install(self, sock: socket.socket, welcome: dict[str, Any]) -> None:
        with self._send_lock:
            self._sock = sock
            self.welcome = welcome
        self._connected.set()

    # --------------------------------------------------------------------- reader

    def _read_loop(self) -> None:
        try:
            self._read_until_done()
        finally:
            if self._closing.is_set() and self._sock is not None:
                _close_quietly(self._sock)  # a reconnect may have raced close()

    def _read_until_done(self) -> None:
        while not self._closing.is_set():
            sock = self._sock
            error: LatentforgeError | None = None
            try:
                while True:
                    try:
                        msg = protocol.read_message(sock)
                    except ProtocolError as exc:
                        if exc.fatal:
                            raise
                        log.warning("latentforge client: skipped a bad frame: %s", exc)
                        continue
                    if msg is None:
                        break
                    try:
                        self._dispatch(msg)
                    except Exception:  # a bug here must not kill the reader
                        log.exception("latentforge client: error while handling %r", msg.op)
            except ProtocolError as exc:
                error = exc
            except OSError as exc:
                error = ConnectionLost(f"Connection to the engine at {self.address} lost: {exc.strerror or exc}.")
            if self._closing.is_set():
                return
            self._connection_lost(sock, error)
            if isinstance(error, VersionMismatch) or not self._reconnect_loop():
                self._gave_up.set()
                return

    def _connection_lost(self, sock: socket.socket, error: LatentforgeError | None) -> None:
        self._connected.clear()
        _close_quietly(sock)
        lost = error if error is not None else ConnectionLost(
            f"The engine at {self.address} closed the connection.")
        self._fail_pending(ConnectionLost(f"{lost.message} The request was interrupted."))
        if isinstance(error, VersionMismatch):
            self._fatal = error
            self._deliver(Message(protocol.connection_event("failed", self.address, error)))
        elif self._stop_reconnect or not self.reconnect:
            self._deliver(Message(protocol.connection_event("closed", self.address, lost)))
        else:
            self._deliver(Message(protocol.connection_event("lost", self.address, lost)))

    def _reconnect_loop(self) -> bool:
        """Reconnect with backoff; True once connected again, False when giving up."""
        if self._stop_reconnect or not self.reconnect:
            return False
        delay = self.reconnect_delay
        while not self._closing.wait(delay):
            try:
                sock = self._open(self._connect_timeout)
                try:
                    welcome = self._handshake(sock, self._connect_timeout)
                except BaseException:
                    _close_quietly(sock)
                    raise
            except TokenUnreadable as exc:
                # A restarting engine may not have rewritten its token file yet.
                log.debug("latentforge client: reconnect waits for the token file: %s", exc)
                delay = min(delay * 2, self.reconnect_max_delay)
                continue
            except (AuthFailed, VersionMismatch) as exc:
                # Retrying cannot fix these: tell the UI and stop.
                self._fatal = exc
                self._deliver(Message(protocol.connection_event("failed", self.address, exc)))
                return False
            except LatentforgeError as exc:
                log.debug("latentforge client: reconnect failed: %s", exc)
                delay = min(delay * 2, self.reconnect_max_delay)
                continue
            if self._closing.is_set():
                _close_quietly(sock)
                return False
            self._install(sock, welcome)
            self._deliver(Message(protocol.connection_event("reconnected", self.address)))
            self._resubscribe()
            return True
        return False

    def _resubscribe(self) -> None:
        with self._state_lock:
            jobs = list(self._following)
        for job_id in jobs:
            try:
                self._send_request(protocol.subscribe_request, (job_id,), job_id=job_id, background=True)
            except LatentforgeError as exc:
                log.debug("latentforge client: re-subscribe to %s failed: %s", job_id, exc)
                return  # the reader will notice the dead connection and start over

    def _dispatch(self, msg: Message) -> None:
        req_id = msg.req_id
        if req_id is not None:
            with self._state_lock:
                pending = self._pending.get(req_id)
            if pending is None:
                log.debug("latentforge client: dropped a reply to unknown request %r", req_id)
                return
            self._track_reply(pending, msg)
            if pending.add(msg):
                with self._state_lock:
                    self._pending.pop(req_id, None)
                if pending.background and pending.error is not None:
                    self._deliver(Message(protocol.error_event(pending.error, job_id=pending.job_id)))
                pending.done.set()
            return
        if self._track_event(msg):
            self._deliver(msg)

    def _track_reply(self, pending: _Pending, msg: Message) -> None:
        """Start following a job when it is accepted or subscribed; stop when it is unknown."""
        with self._state_lock:
            if msg.op == "accepted" and msg.job_id:
                self._following.setdefault(msg.job_id, set())
            elif msg.op == "ack" and pending.op == "subscribe" and pending.job_id:
                self._following.setdefault(pending.job_id, set())
            elif msg.op == "error" and pending.op == "subscribe" and pending.background:
                self._following.pop(pending.job_id, None)

    def _track_event(self, msg: Message) -> bool:
        """Update followed jobs from a pushed event; False for a result already delivered."""
        job_id = msg.job_id
        if job_id is None:
            return True
        with self._state_lock:
            seen = self._following.get(job_id)
            if msg.op == "result":
                index = msg.get("index")
                if seen is not None:
                    if index in seen:
                        return False
                    seen.add(index)
                if msg.get("final"):
                    self._following.pop(job_id, None)
            elif msg.op in ("error", "cancelled"):
                self._following.pop(job_id, None)
        return True

    def _deliver(self, msg: Message) -> None:
        self.events.put(msg)
        callback = self.on_event
        if callback is not None:
            try:
                callback(msg)
            except Exception:
                log.exception("latentforge client: event callback failed on %r", msg.op)

    def _fail_pending(self, error: LatentforgeError) -> None:
        with self._state_lock:
            pending = list(self._pending.values())
            self._pending.clear()
        for p in pending:
            if p.error is None:
                p.error = error
            p.done.set()

    # ------------------------------------------------------------------- requests

    def _send_request(self, build: Callable[..., dict[str, Any]], args: tuple, *,
                      arrays: Mapping[str, Any] | None = None, job_id: str | None = None,
                      background: bool = False) -> _Pending:
        req_id = next(self._ids)
        header = build(req_id, *args)
        pending = _Pending(header["op"], job_id, background)
        with self._state_lock:
            self._pending[req_id] = pending
        try:
            with self._send_lock:
                sock = self._sock
                if sock is None or not self._connected.is_set():
                    raise ConnectionLost(f"Not connected to the engine at {self.address}.")
                protocol.send_message(sock, header, arrays)
        except OSError as exc:
            with self._state_lock:
                self._pending.pop(req_id, None)
            raise ConnectionLost(f"Sending to the engine at {self.address} failed: {exc.strerror or exc}.") from None
        except BaseException:
            with self._state_lock:
                self._pending.pop(req_id, None)
            raise
        return pending

    def _request(self, build: Callable[..., dict[str, Any]], *args: Any, arrays: Mapping[str, Any] | None = None,
                 job_id: str | None = None, timeout: float | None = None) -> list[Message]:
        """Send a request and wait for its terminal reply; raise the error it got."""
        if self._closing.is_set():
            raise ClientClosed("This client was closed.")
        if self._fatal is not None:
            raise self._fatal
        timeout = self.request_timeout if timeout is None else float(timeout)
        deadline = time.monotonic() + timeout
        if self._reader is None:
            raise ConnectionFailed("The client is not connected; call connect() first.")
        self._wait_connected(deadline, timeout)
        pending = self._send_request(build, args, arrays=arrays, job_id=job_id)
        if not pending.done.wait(max(0.0, deadline - time.monotonic())):
            with self._state_lock:
                for key, value in list(self._pending.items()):
                    if value is pending:
                        del self._pending[key]
            raise RequestTimeout(f"No reply to '{pending.op}' from the engine within {timeout:g} s.")
        if pending.error is not None:
            raise pending.error
        return pending.messages

    def _wait_connected(self, deadline: float, timeout: float) -> None:
        """Wait (while the reader reconnects) until connected, or raise why not."""
        while not self._connected.wait(min(0.05, max(0.0, deadline - time.monotonic()))):
            if self._closing.is_set():
                raise ClientClosed("This client was closed.")
            if self._fatal is not None:
                raise self._fatal
            if self._gave_up.is_set():
                raise ConnectionLost(f"The connection to the engine at {self.address} is closed and the "
                                     "client does not reconnect.", "Call connect() again.")
            if time.monotonic() >= deadline:
                raise RequestTimeout(f"Not connected to the engine at {self.address} after {timeout:g} s.")

    def ping(self, timeout: float | None = None) -> float:
        """Round-trip time to the engine, in seconds."""
        start = time.perf_counter()
        self._request(protocol.ping_request, timeout=timeout)
        return time.perf_counter() - start

    def submit(self, spec: Mapping[str, Any], arrays: Mapping[str, Any] | None = None,
               timeout: float | None = None) -> str:
        """Queue a job (``{task, model, params, priority}``); return its id and follow it."""
        reply = self._request(protocol.submit_request, spec, arrays=arrays, timeout=timeout)[0]
        return str(reply.job_id)

    def cancel(self, job_id: str, timeout: float | None = None) -> str:
        """Ask for a job to be cancelled; return its state at that moment."""
        return str(self._request(protocol.cancel_request, job_id, job_id=job_id, timeout=timeout)[0].get("state"))

    def subscribe(self, job_id: str, timeout: float | None = None) -> str:
        """Follow a job's events (stored results are re-sent as events); return its state."""
        return str(self._request(protocol.subscribe_request, job_id, job_id=job_id,
                                 timeout=timeout)[0].get("state"))

    def jobs(self, limit: int = 50, state: list[str] | None = None, timeout: float | None = None) -> list[dict[str, Any]]:
        """Job history, newest first (optionally only some states)."""
        return list(self._request(protocol.jobs_request, limit, state, timeout=timeout)[0].get("jobs") or [])

    def result(self, job_id: str, timeout: float | None = None) -> list[Message]:
        """A finished job's stored results, as ``result`` messages in index order."""
        return self._request(protocol.result_request, job_id, job_id=job_id, timeout=timeout)

    def models(self, timeout: float | None = None) -> dict[str, Any]:
        """``{"device": ..., "models": [...]}`` as the engine reports them."""
        header = self._request(protocol.models_request, timeout=timeout)[0].header
        return {k: v for k, v in header.items() if k not in ("op", "req_id")}

    def wait(self, job_id: str, timeout: float | None = None,
             on_event: EventCallback | None = None) -> list[Message]:
        """Block until a job ends; return its ``result`` messages in index order.

        For scripts and the CLI: this *consumes* ``client.events``, passing this job's
        events (and connection events) to ``on_event`` and dropping other jobs' events.
        Raises the job's error if it failed, ``JobCancelled`` if it was cancelled, and
        ``RequestTimeout`` after ``timeout`` seconds (None: wait for ever).
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        results: dict[int, Message] = {}
        while True:
            if self._closing.is_set() and self.events.empty():
                raise ClientClosed("This client was closed while waiting for a job.")
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                raise RequestTimeout(f"Job {job_id} did not finish within {timeout:g} s.")
            try:
                msg = self.events.get(timeout=0.1 if remaining is None else min(0.1, remaining))
            except queue.Empty:
                continue
            if msg.job_id != job_id and msg.op != "connection":
                continue
            if on_event is not None:
                on_event(msg)
            if msg.op == "connection" and msg.get("state") in ("failed", "closed"):
                err = msg.get("error")
                raise protocol.error_from_header(err) if err else ClientClosed("The connection was closed.")
            if msg.op == "result":
                results[int(msg.get("index", len(results)))] = msg
                if msg.get("final"):
                    return [results[i] for i in sorted(results)]
            elif msg.op == "error":
                raise protocol.error_from_header(msg.header)
            elif msg.op == "cancelled":
                raise JobCancelled(f"Job {job_id} was cancelled.")

    def shutdown(self, timeout: float | None = None) -> None:
        """Stop the engine; this client then stays disconnected (no reconnect)."""
        self._stop_reconnect = True
        try:
            self._request(protocol.shutdown_request, timeout=timeout)
        except BaseException:
            self._stop_reconnect = False
            raise


def _close_quietly(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    try:
        sock.close()
    except OSError:
        pass


def _no_sigpipe(sock: socket.socket) -> None:
    # Inside Blender SIGPIPE may not be ignored; macOS has no MSG_NOSIGNAL, only this option.
    opt = getattr(socket, "SO_NOSIGPIPE", None)
    if opt is not None:
        try:
            sock.setsockopt(socket.SOL_SOCKET, opt, 1)
        except OSError:
            pass
