"""The engine's asyncio server: listens, authenticates, routes requests, fans job events out.

One event loop thread serves every connection; the job worker runs on its own thread
(``engine.server.jobs``) and hands events to the loop with ``call_soon_threadsafe``.
Store and pipeline calls that may block run in the loop's thread pool.

Per connection:

- a reader task parses frames (``engine.protocol``) and handles requests in order;
- a writer task drains a bounded send queue, so a slow or dead client never blocks the
  others. Pushed job events never wait: a newer ``progress`` of a job replaces an unsent
  one, ``preview`` frames are dropped first when the queue is long, and a client whose
  queue of other events still overflows is disconnected (it can reconnect and
  ``subscribe``). Replies to its own requests wait for queue space instead.

A frame the protocol module rejects gets an ``error`` event; the connection is closed when
the stream is out of sync (bad magic, oversized sections, truncation) and kept otherwise.
Nothing received is ever unpickled or evaluated.

Subscriptions: the loop keeps, per queued/running job, its subscribers and the headers of
the results already fanned out. A new subscriber is attached *holding*: live events are
buffered for it while stored results are replayed, then flushed, so it sees every
result once, in order, then the live events.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import os
import socket
import stat
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from engine import __version__, protocol
from engine.errors import InvalidRequest, LatentforgeError
from engine.pipelines import registry
from engine.protocol import AuthFailed, AuthRequired, ProtocolError, VersionMismatch
from engine.server import address as addr
from engine.server.jobs import (EngineStopping, JobManager, JobNotFinished, JobNotFound, new_job_id,
                                result_header)
from engine.server.store import ResultUnavailable, Store

log = logging.getLogger(__name__)

SERVER_NAME = f"latentforge {__version__}"
PREAUTH_MAX_BYTES = 64 << 10  # header and buffer limit before a successful hello


@dataclass
class ServerConfig:
    """Where and how to listen, and the per-connection queue limits."""

    socket_path: Path | None = None      # Unix socket (the default transport)
    host: str | None = None              # TCP instead, with a token
    port: int = 0
    allow_remote: bool = False
    token_path: Path | None = None
    private_socket_dir: bool = True      # force the socket's directory to 0700 (default location)
    max_queued_events: int = 1000        # non-preview frames waiting for one client
    max_queued_bytes: int = 1 << 30      # array bytes waiting for one client
    max_queued_previews: int = 4
    reply_soft_bytes: int = 64 << 20     # replies wait while more than this is queued
    flush_timeout_s: float = 2.0
    hello_timeout_s: float = 30.0       # a connection must say hello within this


@dataclass
class LiveJob:
    """A queued or running job as the loop sees it."""

    # connection -> None (attached) or a list buffering events while it is being attached
    subscribers: dict["Connection", list | None] = field(default_factory=dict)
    results: dict[int, dict[str, Any]] = field(default_factory=dict)


class Connection:
    """One client: its send queue, writer task and authentication state."""

    def __init__(self, server: "EngineServer", reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.server = server
        self.cfg = server.config
        self.reader = reader
        self.writer = writer
        peer = writer.get_extra_info("peername")
        self.peer = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else "unix"
        self.name = self.peer
        self.authed = False
        self.closed = False
        self._closing = False
        self._q: deque[list] = deque()  # [header, arrays, is_preview, nbytes]
        self._progress: dict[str, list] = {}
        self.n_events = 0
        self.n_previews = 0
        self.nbytes = 0
        self.dropped_previews = 0
        self._wake = asyncio.Event()
        self._space = asyncio.Event()
        self._space.set()
        self._writer_task = asyncio.get_running_loop().create_task(self._write_loop())

    def __repr__(self) -> str:
        return f"<Connection {self.name}>"

    # ---- queue --------------------------------------------------------------------

    def push(self, header: dict[str, Any], arrays: Mapping[str, np.ndarray] | None = None, *,
             reply: bool = False) -> None:
        """Queue a frame without waiting (see the module docstring for the overflow policy)."""
        if self.closed or (self._closing and not reply):
            return
        op = header.get("op")
        job_id = header.get("job_id")
        pushed = header.get("req_id") is None
        if op == "progress" and pushed:
            slot = self._progress.get(job_id)
            if slot is not None:
                slot[0] = header  # only the newest progress matters
                return
        nb = sum(int(a.nbytes) for a in arrays.values()) if arrays else 0
        preview = op == "preview" and pushed
        if preview:
            while self.n_previews >= self.cfg.max_queued_previews:
                self._drop_preview()
            if self._over(nb):
                self.dropped_previews += 1
                return
        elif not reply and self._over(nb):
            while self.n_previews:
                self._drop_preview()
            if self._over(nb):
                log.warning("%s is not reading (%d frames, %d bytes queued): disconnecting it",
                            self, self.n_events, self.nbytes)
                self.abort()
                return
        item = [header, arrays, preview, nb]
        self._q.append(item)
        self.nbytes += nb
        if preview:
            self.n_previews += 1
        else:
            self.n_events += 1
        if op == "progress" and pushed:
            self._progress[job_id] = item
        self._wake.set()

    def _over(self, nb: int) -> bool:
        if not self._q:
            return False  # a single frame always fits
        return self.n_events >= self.cfg.max_queued_events or self.nbytes + nb > self.cfg.max_queued_bytes

    def _drop_preview(self) -> None:
        for i, item in enumerate(self._q):
            if item[2]:
                del self._q[i]  # by position: comparing items would compare numpy arrays
                self.n_previews -= 1
                self.nbytes -= item[3]
                self.dropped_previews += 1
                return

    async def send(self, header: dict[str, Any], arrays: Mapping[str, np.ndarray] | None = None) -> None:
        """Queue a reply, waiting while this client has much unsent data (backpressure)."""
        while not self.closed and self._q and self.nbytes > self.cfg.reply_soft_bytes:
            self._space.clear()
            await self._space.wait()
        self.push(header, arrays, reply=True)

    async def _write_loop(self) -> None:
        try:
            while True:
                if not self._q:
                    if self._closing:
                        return
                    self._wake.clear()
                    await self._wake.wait()
                    continue
                item = self._q.popleft()
                header, arrays, preview, nb = item
                self.nbytes -= nb
                if preview:
                    self.n_previews -= 1
                else:
                    self.n_events -= 1
                if self._progress.get(header.get("job_id")) is item:
                    del self._progress[header["job_id"]]
                if self.nbytes <= self.cfg.reply_soft_bytes:
                    self._space.set()
                try:
                    pieces = protocol.encode_frame(header, arrays)
                except LatentforgeError as exc:
                    log.error("cannot encode a %s frame for %s: %s", header.get("op"), self, exc)
                    pieces = protocol.encode_frame(protocol.error_event(
                        exc, job_id=header.get("job_id"), req_id=header.get("req_id")))
                for piece in pieces:
                    self.writer.write(piece)
                await self.writer.drain()
        except (ConnectionError, OSError):
            self.abort()
        except asyncio.CancelledError:
            pass
        finally:
            self._space.set()

    # ---- closing ------------------------------------------------------------------

    def abort(self) -> None:
        """Drop the connection now (its queue is discarded)."""
        if self.closed:
            return
        self.closed = True
        self._q.clear()
        self._space.set()
        self._writer_task.cancel()
        self.writer.transport.abort()

    async def close(self) -> None:
        """Send what is queued (bounded wait), then close."""
        if self.closed:
            return
        self._closing = True
        self._wake.set()
        try:
            await asyncio.wait_for(asyncio.shield(self._writer_task), self.cfg.flush_timeout_s)
        except (asyncio.TimeoutError, asyncio.CancelledError):
            pass
        if not self.closed:
            self.closed = True
            self._writer_task.cancel()
            try:
                self.writer.close()
            except (ConnectionError, OSError):
                pass
        self._space.set()


class EngineServer:
    """Owns the listening socket, the connections, and the loop side of every live job."""

    def __init__(self, config: ServerConfig, store: Store, manager: JobManager) -> None:
        self.config = config
        self.store = store
        self.manager = manager
        self.device = manager.device
        self.token: str | None = None
        self.address: addr.Address | None = None
        self.conns: set[Connection] = set()
        self.live: dict[str, LiveJob] = {}
        self.stats = {"connections": 0, "requests": 0, "protocol_errors": 0, "overflows": 0}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.base_events.Server | None = None
        self._stop = asyncio.Event()
        self._stopped = False

    # ---- lifecycle ----------------------------------------------------------------

    async def start(self) -> str:
        """Bind, recover and start jobs, then accept connections; return the ready line's address part.

        The socket is bound first (so a bad or busy address fails before anything is
        touched) but accepts only once re-queued jobs are known to the loop.
        """
        self._loop = asyncio.get_running_loop()
        self.manager.sink = self._sink
        cfg = self.config
        if cfg.host is not None:
            addr.check_host(cfg.host, cfg.allow_remote)
            self._server = await asyncio.start_server(self._handle, cfg.host, cfg.port, start_serving=False)
            token_path = Path(cfg.token_path) if cfg.token_path else addr.default_token_path(self.store.data_dir)
            if cfg.token_path is None:
                addr.ensure_private_dir(token_path.parent)
            elif not token_path.parent.exists():
                token_path.parent.mkdir(parents=True, mode=0o700)
            self.token = addr.write_token(token_path)
            self.token_path = token_path
            port = self._server.sockets[0].getsockname()[1]
            self.address = addr.Address("tcp", host=cfg.host, port=port)
            where = f"{self.address.url()} token-file={token_path}"
        else:
            path = Path(cfg.socket_path or addr.default_socket_path(self.store.data_dir))
            addr.check_socket_path(path)
            if cfg.private_socket_dir:
                addr.ensure_private_dir(path.parent)
            elif not path.parent.exists():
                path.parent.mkdir(parents=True, mode=0o700)
            _remove_stale_socket(path)
            old = os.umask(0o177)  # the socket is born 0600, never briefly world-connectable
            try:
                self._server = await asyncio.start_unix_server(self._handle, path=str(path), start_serving=False)
            finally:
                os.umask(old)
            os.chmod(path, 0o600)
            self.address = addr.Address("unix", path=str(path))
            where = self.address.url()
        requeued = await self._loop.run_in_executor(None, self.manager.recover)
        for job_id in requeued:  # known to the loop before the worker can emit their events
            self.live.setdefault(job_id, LiveJob())
        self.manager.start_worker()
        self.models = await self._loop.run_in_executor(None, registry.list_models)
        await self._server.start_serving()
        return where

    def request_stop(self) -> None:
        """Ask ``serve_forever`` to stop (thread-safe via the loop, or from a signal handler)."""
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)

    async def serve_forever(self) -> None:
        """Serve until ``request_stop`` or a ``shutdown`` request, then stop cleanly."""
        await self._stop.wait()
        await self.stop()

    async def stop(self) -> None:
        """Stop listening, cancel unfinished jobs, flush and close every connection."""
        if self._stopped:
            return
        self._stopped = True
        if self._server is not None:
            self._server.close()
        await self._loop.run_in_executor(None, self.manager.stop)
        await asyncio.sleep(0)  # let the worker's last events reach the queues
        await asyncio.gather(*(c.close() for c in list(self.conns)), return_exceptions=True)
        if self._server is not None:
            try:
                await asyncio.wait_for(self._server.wait_closed(), 2)
            except asyncio.TimeoutError:
                pass
        if self.address is not None and self.address.kind == "unix":
            try:
                os.unlink(self.address.path)
            except FileNotFoundError:
                pass
        if self.token is not None:
            try:
                os.unlink(self.token_path)
            except FileNotFoundError:
                pass

    # ---- job events (worker thread -> loop) ---------------------------------------

    def _sink(self, job_id: str, header: dict, arrays: Mapping[str, np.ndarray] | None) -> None:
        try:
            self._loop.call_soon_threadsafe(self._dispatch, job_id, header, arrays)
        except RuntimeError:  # loop closed: the engine is exiting
            pass

    def _dispatch(self, job_id: str, header: dict, arrays: Mapping[str, np.ndarray] | None) -> None:
        live = self.live.get(job_id)
        if live is None:
            return
        op = header["op"]
        if op == "result":
            live.results[header["index"]] = header
        for conn, hold in list(live.subscribers.items()):
            if hold is not None:
                hold.append((header, arrays))
            elif conn.closed:
                del live.subscribers[conn]
            else:
                conn.push(header, arrays)
                if conn.closed:
                    self.stats["overflows"] += 1
        if op in ("error", "cancelled") or (op == "result" and header.get("final")):
            del self.live[job_id]

    # ---- connections --------------------------------------------------------------

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._stopped:
            writer.close()
            return
        conn = Connection(self, reader, writer)
        self.conns.add(conn)
        self.stats["connections"] += 1
        log.debug("connection from %s", conn.peer)
        try:
            while not conn.closed and not self._stopped:
                try:
                    if conn.authed:
                        msg = await protocol.read_message_async(reader)
                    else:
                        # Before hello, small frames only and a deadline: an unauthenticated
                        # peer must not make the engine allocate or wait much.
                        msg = await asyncio.wait_for(protocol.read_message_async(
                            reader, max_header=PREAUTH_MAX_BYTES, max_buffer=PREAUTH_MAX_BYTES),
                            self.config.hello_timeout_s)
                except asyncio.TimeoutError:
                    log.info("%s sent no hello within %.0f s: closing", conn, self.config.hello_timeout_s)
                    break
                except ProtocolError as exc:
                    self.stats["protocol_errors"] += 1
                    log.info("%s sent a bad frame: %s", conn, exc)
                    conn.push(protocol.error_event(exc), reply=True)
                    if exc.fatal:
                        break
                    continue
                except (ConnectionError, OSError):
                    break
                if msg is None:
                    break
                self.stats["requests"] += 1
                if not await self._request(conn, msg):
                    break
        except asyncio.CancelledError:
            pass
        except Exception:
            log.exception("connection %s failed", conn)
        finally:
            self.conns.discard(conn)
            for live in self.live.values():
                live.subscribers.pop(conn, None)
            await conn.close()
            log.debug("%s closed", conn)

    async def _request(self, conn: Connection, msg: protocol.Message) -> bool:
        """Handle one request; False when the connection must be closed."""
        req_id = msg.req_id
        try:
            if not conn.authed and msg.op != "hello":
                raise AuthRequired("The first request must be hello.")
            protocol.validate_request(msg.header)
            if not conn.authed:
                await self._hello(conn, msg)
                return True
            handler = getattr(self, f"_op_{msg.op}")
            await handler(conn, msg)
            return True
        except LatentforgeError as exc:
            if not isinstance(exc, (ProtocolError, InvalidRequest, AuthRequired, AuthFailed)):
                log.debug("%s: %s failed: %s", conn, msg.op, exc)
            job_id = msg.get("job_id") if isinstance(msg.get("job_id"), str) else None
            conn.push(protocol.error_event(exc, job_id=job_id if msg.op != "submit" else None, req_id=req_id),
                      reply=True)
            fatal = isinstance(exc, (AuthRequired, AuthFailed)) or (isinstance(exc, ProtocolError) and exc.fatal)
            return not fatal
        except Exception as exc:
            log.exception("%s: request %s failed", conn, msg.op)
            err = LatentforgeError(f"The engine failed on '{msg.op}': {type(exc).__name__}: {exc}",
                                   "This is a bug; the engine log has the traceback.")
            conn.push(protocol.error_event(err, req_id=req_id), reply=True)
            return True

    async def _hello(self, conn: Connection, msg: protocol.Message) -> None:
        version = msg.get("version")
        if version != protocol.PROTOCOL_VERSION:
            raise VersionMismatch(f"The client speaks protocol version {version}; this engine speaks "
                                   f"{protocol.PROTOCOL_VERSION}.",
                                   details={"peer_version": version, "version": protocol.PROTOCOL_VERSION})
        if self.token is not None:
            token = msg.get("token")
            if not isinstance(token, str) or not hmac.compare_digest(token.encode(), self.token.encode()):
                log.warning("%s: wrong or missing token", conn)
                raise AuthFailed("The token is wrong or missing.")
        conn.authed = True
        conn.name = f"{msg.get('client') or 'client'}@{conn.peer}"
        models = [{"name": m["name"], "available": m["available"], "kinds": m["kinds"]} for m in self.models]
        await conn.send(protocol.welcome_reply(msg.req_id, server=SERVER_NAME, device=self.device, models=models))

    # ---- requests -----------------------------------------------------------------

    async def _op_hello(self, conn: Connection, msg: protocol.Message) -> None:
        await self._hello(conn, msg)

    async def _op_ping(self, conn: Connection, msg: protocol.Message) -> None:
        await conn.send(protocol.pong_reply(msg.req_id))

    async def _op_models(self, conn: Connection, msg: protocol.Message) -> None:
        self.models = await self._loop.run_in_executor(None, registry.list_models)
        await conn.send(protocol.models_reply(msg.req_id, self.device, self.models))

    async def _op_submit(self, conn: Connection, msg: protocol.Message) -> None:
        if self._stopped:
            raise EngineStopping("The engine is shutting down.")
        job_id = new_job_id()
        hold: list = []
        live = LiveJob()
        live.subscribers[conn] = hold
        self.live[job_id] = live
        try:
            _, position = await self._loop.run_in_executor(
                None, self.manager.submit, msg.get("spec"), dict(msg.arrays) or None, conn.name, job_id)
        except BaseException:
            self.live.pop(job_id, None)
            raise
        await conn.send(protocol.accepted_reply(msg.req_id, job_id, position))
        self._attach(conn, job_id, hold)

    def _attach(self, conn: Connection, job_id: str, hold: list) -> None:
        """Flush events buffered while ``conn`` was being attached, then deliver live."""
        for header, arrays in hold:
            conn.push(header, arrays)
        live = self.live.get(job_id)
        if live is not None and live.subscribers.get(conn) is hold:
            live.subscribers[conn] = None

    async def _op_cancel(self, conn: Connection, msg: protocol.Message) -> None:
        state = await self._loop.run_in_executor(None, self.manager.cancel, msg.job_id)
        await conn.send(protocol.ack_reply(msg.req_id, msg.job_id, state))

    async def _op_subscribe(self, conn: Connection, msg: protocol.Message) -> None:
        job_id = msg.job_id
        live = self.live.get(job_id)
        if live is not None:
            hold: list = []
            live.subscribers[conn] = hold
            done = dict(live.results)
            try:
                state = self.manager.live_state(job_id) or "running"
                await conn.send(protocol.ack_reply(msg.req_id, job_id, state))
                for index in sorted(done):
                    arrays = await self._load(job_id, index)
                    await conn.send(dict(done[index], req_id=None), arrays)
            finally:
                self._attach(conn, job_id, hold)
            return
        job = await self._loop.run_in_executor(None, self.store.job, job_id)
        if job is None:
            raise JobNotFound(f"There is no job {job_id!r}.", details={"job_id": job_id})
        records = await self._replayable(job) if job["state"] == "finished" else []
        await conn.send(protocol.ack_reply(msg.req_id, job_id, job["state"]))
        if job["state"] == "finished":
            await self._replay(conn, job, records, req_id=None)
        elif job["state"] == "failed":
            await conn.send(protocol.error_event(job["error"] or {"code": "internal", "message": "The job failed."},
                                                 job_id=job_id))
        elif job["state"] == "cancelled":
            await conn.send(protocol.cancelled_event(job_id))
        else:  # a queued/running job this engine does not hold cannot exist; say so rather than hang
            raise JobNotFound(f"Job {job_id!r} is {job['state']} in the store but not known to this engine.")

    async def _op_result(self, conn: Connection, msg: protocol.Message) -> None:
        job = await self._loop.run_in_executor(None, self.store.job, msg.job_id)
        if job is None:
            raise JobNotFound(f"There is no job {msg.job_id!r}.", details={"job_id": msg.job_id})
        if job["state"] != "finished":
            why = {"failed": "it failed", "cancelled": "it was cancelled"}.get(job["state"], f"it is {job['state']}")
            raise JobNotFinished(f"Job {msg.job_id} has no results: {why}.",
                                 details={"job_id": msg.job_id, "state": job["state"]})
        await self._replay(conn, job, await self._replayable(job), req_id=msg.req_id)

    async def _replayable(self, job: dict[str, Any]) -> list:
        """A finished job's result records, once every file is known to be there.

        Checked before the first reply so a pruned or deleted result fails the request
        cleanly instead of after some frames.
        """
        records = await self._loop.run_in_executor(None, self.store.results, job["job_id"])
        if not records:
            raise JobNotFinished(f"Job {job['job_id']} finished without stored results.")
        if job.get("pruned"):
            raise ResultUnavailable(f"The results of job {job['job_id']} were pruned.")
        missing = [r.index for r in records if not self.store.blob_path(r.sha256).exists()]
        if missing:
            raise ResultUnavailable(f"Result file(s) {missing} of job {job['job_id']} are missing.")
        return records

    async def _replay(self, conn: Connection, job: dict[str, Any], records: list, req_id: Any) -> None:
        """Load and send stored results one at a time (``send`` waits while the client lags)."""
        for i, record in enumerate(records):
            arrays = await self._loop.run_in_executor(None, self.store.load_result, record)
            await conn.send(result_header(job, record, len(records), i == len(records) - 1, req_id=req_id), arrays)

    async def _load(self, job_id: str, index: int) -> dict[str, np.ndarray]:
        records = await self._loop.run_in_executor(None, self.store.results, job_id)
        record = next(r for r in records if r.index == index)
        return await self._loop.run_in_executor(None, self.store.load_result, record)

    async def _op_jobs(self, conn: Connection, msg: protocol.Message) -> None:
        rows = await self._loop.run_in_executor(None, self.store.jobs, msg.get("limit", 50), msg.get("state"))
        jobs = [{"job_id": r["job_id"], "state": r["state"], "spec": r["spec"], "created": r["created"],
                 "started": r["started"], "finished": r["finished"], "error": r["error"],
                 "n_results": r["n_results"], "pruned": r["pruned"], "position": None} for r in rows]
        for j in jobs:
            if j["state"] == "queued":
                j["position"] = self.manager.position(j["job_id"])
        await conn.send(protocol.jobs_reply(msg.req_id, jobs))

    async def _op_shutdown(self, conn: Connection, msg: protocol.Message) -> None:
        log.info("shutdown requested by %s", conn)
        await conn.send(protocol.ack_reply(msg.req_id, None, "shutting_down"))
        self._stop.set()


def _remove_stale_socket(path: Path) -> None:
    """Remove a socket file left by a dead engine; refuse if one still answers there."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(st.st_mode):
        raise addr.AddressError(f"{path} exists and is not a socket.", "Remove it or pass another --socket.")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(1.0)
    try:
        probe.connect(str(path))
    except (ConnectionRefusedError, FileNotFoundError, socket.timeout):
        os.unlink(path)
        return
    finally:
        probe.close()
    raise addr.AddressError(f"Another engine is already listening on {path}.",
                            f"Connect to it (--connect unix://{path}) or stop it first (`latentforge shutdown`).")
