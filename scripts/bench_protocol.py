"""Protocol throughput vs the raw socket, and (when the engine can be started) submit latency.

Prints one JSON object:

- ``raw_gbps``: a 1M-vertex mesh's bytes (vertices f32 1M×3, faces i32 2M×3, 36 MB) sent
  with ``sendall`` over a Unix socketpair and received with ``recv_into`` into a fresh
  buffer by another thread (the faster of a bytearray and an uninitialized numpy buffer);
- ``protocol_gbps``: the same arrays as a ``result`` frame: encode + send + receive +
  decode (zero-copy views) through ``engine.protocol``;
- ``ratio`` = protocol / raw (goal ≥ 0.5). Both are the best of ``--repeats`` runs,
  interleaved in the same process so machine noise hits both alike;
- ``submit_to_progress_ms``: median time from ``submit`` to the first ``progress`` event
  on a warm engine running the procedural model (one warm-up job first), with the engine
  started by ``latentforge serve`` in a subprocess (``submit_to_progress_engine``).
  Left out (with ``submit_to_progress_note`` saying why) when no engine can be started.

Usage: ``python scripts/bench_protocol.py [--repeats 7] [--vertices 1000000] [--no-engine]``
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine import protocol  # noqa: E402


def _pair() -> tuple[socket.socket, socket.socket]:
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    for s in (a, b):
        for opt in (socket.SO_SNDBUF, socket.SO_RCVBUF):
            s.setsockopt(socket.SOL_SOCKET, opt, 4 << 20)
    return a, b


def _timed(send, receive) -> float:
    """Seconds from the start of ``send`` until ``receive`` (other thread) has finished."""
    done = threading.Event()
    box: dict = {}

    def rx():
        try:
            box["value"] = receive()
        except BaseException as exc:  # surfaced below
            box["error"] = exc
        finally:
            done.set()
            box["t1"] = time.perf_counter()

    t = threading.Thread(target=rx)
    t.start()
    t0 = time.perf_counter()
    send()
    done.wait()
    t.join()
    if "error" in box:
        raise box["error"]
    return box["t1"] - t0, box.get("value")


def bench_throughput(n_vertices: int, repeats: int) -> dict:
    rng = np.random.default_rng(0)
    vertices = rng.standard_normal((n_vertices, 3)).astype(np.float32)
    faces = rng.integers(0, n_vertices, size=(2 * n_vertices, 3), dtype=np.int32)
    nbytes = vertices.nbytes + faces.nbytes
    header = protocol.result_event("bench-job", 0, 1, "mesh", model="procedural", seed=0, prompt=None)
    arrays = {"vertices": vertices, "faces": faces}
    a, b = _pair()
    raw_times, proto_times = [], []
    try:
        def raw_send():
            a.sendall(memoryview(vertices).cast("B"))
            a.sendall(memoryview(faces).cast("B"))

        def raw_recv(alloc):
            buf = alloc(nbytes)
            mv = memoryview(buf)
            got = 0
            while got < nbytes:
                n = b.recv_into(mv[got:])
                if n == 0:
                    raise EOFError
                got += n
            return buf

        def proto_send():
            protocol.send_message(a, header, arrays)

        def proto_recv():
            return protocol.read_message(b)

        # The raw baseline is the faster of two receive buffers (zeroed bytearray, or
        # uninitialized numpy as read_message uses), so the ratio is not flattered.
        raw_allocs = (bytearray, lambda n: np.empty(n, dtype=np.uint8))
        for _ in range(repeats):
            for alloc in raw_allocs:
                dt, _ = _timed(raw_send, lambda: raw_recv(alloc))
                raw_times.append(dt)
            dt, msg = _timed(proto_send, proto_recv)
            proto_times.append(dt)
            if not (np.array_equal(msg.arrays["faces"], faces) and np.array_equal(msg.arrays["vertices"], vertices)):
                raise RuntimeError("protocol round trip corrupted the arrays")
            del msg
    finally:
        a.close()
        b.close()
    raw = nbytes / min(raw_times) / 1e9
    proto = nbytes / min(proto_times) / 1e9
    return {"raw_gbps": round(raw, 3), "protocol_gbps": round(proto, 3), "ratio": round(proto / raw, 3),
            "payload_mb": round(nbytes / 1e6, 1), "repeats": repeats,
            "raw_ms_best": round(min(raw_times) * 1e3, 2), "protocol_ms_best": round(min(proto_times) * 1e3, 2)}


class _SubprocessEngine:
    """``latentforge serve`` in a child process (the real deployment), via engine.server.launch."""

    where = "subprocess"

    def __init__(self, tmp: str) -> None:
        from engine.server.launch import EngineProcess
        self.proc = EngineProcess(["--socket", os.path.join(tmp, "engine.sock"), "--device", "cpu",
                                   "--data-dir", os.path.join(tmp, "data")], timeout=120)
        self.address, self.token_file = self.proc.address, self.proc.token_file

    def stop(self) -> None:
        self.proc.stop()


def bench_submit_to_progress(samples: int) -> dict:
    """Start a private engine, warm it up, then time submit -> first progress event."""
    from engine.client import EngineClient

    from engine.data.procedural import CATEGORIES

    category = CATEGORIES[0]
    tmp = tempfile.mkdtemp(prefix="lf-bench-", dir="/tmp")
    eng = client = None
    try:
        eng = _SubprocessEngine(tmp)
        first_progress: dict[str, float] = {}

        def on_event(msg):
            if msg.op == "progress" and msg.job_id not in first_progress:
                first_progress[msg.job_id] = time.perf_counter()

        client = EngineClient(eng.address, token_file=eng.token_file, on_event=on_event, request_timeout=60)
        client.connect(timeout=10)

        def run_one(seed: int) -> float:
            spec = {"task": "generate", "model": "procedural",
                    "params": {"category": category, "count": 1, "seed": seed}}
            t0 = time.perf_counter()
            job_id = client.submit(spec)
            client.wait(job_id, timeout=60)  # the next job then finds the engine idle and warm
            if job_id not in first_progress:
                raise RuntimeError("the job finished without a progress event")
            return (first_progress[job_id] - t0) * 1e3

        run_one(0)  # warm-up: imports and caches the pipeline
        times = [run_one(i + 1) for i in range(samples)]
        return {"submit_to_progress_ms": round(statistics.median(times), 2),
                "submit_to_progress_ms_min": round(min(times), 2),
                "submit_to_progress_ms_max": round(max(times), 2),
                "submit_to_progress_samples": samples, "submit_to_progress_engine": eng.where}
    except Exception as exc:
        return {"submit_to_progress_note": f"engine benchmark failed: {type(exc).__name__}: {exc}"}
    finally:
        if client is not None:
            client.close()
        if eng is not None:
            try:
                eng.stop()
            except Exception:
                pass
        shutil.rmtree(tmp, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--vertices", type=int, default=1_000_000)
    ap.add_argument("--samples", type=int, default=20, help="submit->progress samples")
    ap.add_argument("--no-engine", action="store_true", help="skip the submit->progress measurement")
    args = ap.parse_args(argv)
    out = bench_throughput(args.vertices, args.repeats)
    if args.no_engine:
        out["submit_to_progress_note"] = "skipped (--no-engine)"
    else:
        out.update(bench_submit_to_progress(args.samples))
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
