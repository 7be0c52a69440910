"""Load test of the engine service: many clients, random cancels and reconnects; prints JSON figures.

Starts a private engine (``python -m engine serve``) on a temporary data directory, then
``--clients`` threads submit ``--jobs`` procedural jobs in total (random category, count,
priority), cancel some at random and drop/re-open their connection at random
(re-subscribing to most of the jobs they follow; the others are only checked at the end). Bounded by ``--seconds``.

Checks, all reported in the JSON:

- every job ends in exactly one final state (the store's transitions have one final
  state, last), and the terminal event a client saw matches it;
- no connection saw two terminal events for one job;
- every result of every finished job was delivered or is retrievable, and everything
  delivered is byte-identical (SHA-256 of the arrays) to what ``result`` returns now;
- the engine log holds no traceback / ERROR line;
- the engine's resident memory, sampled every 100 ms (start, peak, end).

Exit status 0 when every check passes.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import shutil
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from engine.client import EngineClient  # noqa: E402
from engine.errors import LatentforgeError  # noqa: E402
from engine.server.launch import EngineProcess  # noqa: E402
from engine.server.store import FINAL_STATES, Store  # noqa: E402

CATEGORIES = ("chair",)


def arrays_sha(arrays: dict[str, np.ndarray]) -> str:
    h = hashlib.sha256()
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        h.update(name.encode() + a.dtype.str.encode() + repr(a.shape).encode())
        h.update(a.tobytes())
    return h.hexdigest()


@dataclass
class Track:
    submitted: float
    accepted_ms: float
    first_progress: float | None = None
    results: dict[int, str] = field(default_factory=dict)
    terminal: str | None = None
    abandoned: bool = False  # dropped on a reconnect: checked through `jobs`/`result` only
    terminal_per_gen: dict[int, int] = field(default_factory=dict)


class Worker(threading.Thread):
    """One simulated user: submits, cancels, disconnects and comes back."""

    def __init__(self, idx: int, address: str, quota: int, seed: int, deadline: float, p_cancel: float,
                 p_reconnect: float, max_count: int) -> None:
        super().__init__(name=f"load-{idx}", daemon=True)
        self.idx = idx
        self.address = address
        self.quota = quota
        self.rng = random.Random(seed)
        self.deadline = deadline
        self.p_cancel = p_cancel
        self.p_reconnect = p_reconnect
        self.max_count = max_count
        self.jobs: dict[str, Track] = {}
        self.gen = 0
        self.client: EngineClient | None = None
        self.reconnects = 0
        self.cancels = 0
        self.cancel_acks: dict[str, int] = {}
        self.errors: list[str] = []

    def _connect(self) -> None:
        self.gen += 1
        self.client = EngineClient(self.address, client_name=f"load-{self.idx}", reconnect=False)
        self.client.connect(timeout=10)

    def _reconnect(self) -> None:
        old = self.client
        old.close()
        self._drain(old, 0)
        time.sleep(self.rng.uniform(0, 0.2))
        self._connect()
        self.reconnects += 1
        for job_id, t in self.jobs.items():
            if t.terminal is None and not t.abandoned:
                if self.rng.random() < 0.3:
                    t.abandoned = True  # never asked about again on a connection
                else:
                    self.client.subscribe(job_id, timeout=30)

    def _drain(self, client: EngineClient, timeout: float) -> None:
        gen = self.gen
        end = time.monotonic() + timeout
        while True:
            try:
                msg = client.events.get(timeout=max(0.0, end - time.monotonic())) if timeout else \
                    client.events.get_nowait()
            except Exception:
                return
            t = self.jobs.get(msg.job_id) if msg.job_id else None
            if t is None:
                continue
            terminal = None
            if msg.op == "progress" and t.first_progress is None:
                t.first_progress = time.perf_counter() - t.submitted
            elif msg.op == "result":
                t.results[msg.get("index")] = arrays_sha(msg.arrays)
                if msg.get("final"):
                    terminal = "finished"
            elif msg.op == "error":
                terminal = "failed"
            elif msg.op == "cancelled":
                terminal = "cancelled"
            if terminal:
                t.terminal = t.terminal or terminal
                if t.terminal != terminal:
                    self.errors.append(f"{msg.job_id}: saw {t.terminal} then {terminal}")
                t.terminal_per_gen[gen] = t.terminal_per_gen.get(gen, 0) + 1

    def run(self) -> None:
        try:
            self._connect()
            submitted = 0
            while submitted < self.quota and time.monotonic() < self.deadline:
                spec = {"task": "generate", "model": "procedural",
                        "params": {"category": self.rng.choice(CATEGORIES),
                                   "count": self.rng.randint(1, self.max_count),
                                   "seed": self.rng.randint(0, 10000)},
                        "priority": self.rng.choice((0, 0, 0, 1, 5))}
                t0 = time.perf_counter()
                try:
                    job_id = self.client.submit(spec, timeout=30)
                except LatentforgeError as exc:
                    if exc.code.startswith("connection."):
                        self._reconnect()
                        continue
                    raise
                self.jobs[job_id] = Track(t0, (time.perf_counter() - t0) * 1000)
                submitted += 1
                self._drain(self.client, 0)
                r = self.rng.random()
                if r < self.p_cancel:
                    open_jobs = [j for j, t in self.jobs.items() if t.terminal is None and not t.abandoned]
                    if open_jobs:
                        # half the time the oldest open job: most likely running, so cancels
                        # hit running jobs too, not only queued ones
                        target = open_jobs[0] if self.rng.random() < 0.5 else self.rng.choice(open_jobs)
                        state = self.client.cancel(target, timeout=30)
                        self.cancel_acks[state] = self.cancel_acks.get(state, 0) + 1
                        self.cancels += 1
                elif r < self.p_cancel + self.p_reconnect:
                    self._reconnect()
                time.sleep(self.rng.uniform(0, 0.05))
            while time.monotonic() < self.deadline + 30 and any(t.terminal is None and not t.abandoned
                                                                 for t in self.jobs.values()):
                self._drain(self.client, 0.2)
        except Exception as exc:  # reported, not raised: the main thread verifies everything
            self.errors.append(f"{type(exc).__name__}: {exc}")
        finally:
            if self.client is not None:
                self._drain(self.client, 0)
                self.client.close()


def sample_rss(pid: int, out: list[float], stop: threading.Event) -> None:
    while not stop.is_set():
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    out.append(int(line.split()[1]) / 1024)
        except OSError:
            return
        stop.wait(0.1)


def idle_latency(client: EngineClient, n: int = 20) -> list[float]:
    """Submit -> first progress event on the now idle (warm) engine, one job at a time."""
    out = []
    for i in range(n):
        t0 = time.perf_counter()
        job_id = client.submit({"task": "generate", "model": "procedural",
                                "params": {"category": CATEGORIES[0], "seed": i}}, timeout=30)
        first = None
        while True:
            msg = client.events.get(timeout=30)
            if msg.job_id != job_id:
                continue
            if msg.op == "progress" and first is None:
                first = (time.perf_counter() - t0) * 1000
            if msg.op in ("error", "cancelled") or (msg.op == "result" and msg.get("final")):
                break
        out.append(first)
    return out


def pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    values = sorted(values)
    return round(values[min(len(values) - 1, int(q * len(values)))], 2)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--jobs", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=120)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--p-cancel", type=float, default=0.2)
    parser.add_argument("--p-reconnect", type=float, default=0.08)
    parser.add_argument("--max-count", type=int, default=10, help="objects per job: 1..N at random")
    parser.add_argument("--max-rss-mb", type=float, default=2048, help="fail above this engine RSS")
    parser.add_argument("--keep", action="store_true", help="keep the data directory")
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="lf-load-", dir="/tmp"))
    log_path = tmp / "engine.log"
    engine = EngineProcess(["--socket", str(tmp / "run" / "e.sock"), "--data-dir", str(tmp / "data"),
                            "--device", "cpu"], log_path=log_path)
    rss: list[float] = []
    stop = threading.Event()
    sampler = threading.Thread(target=sample_rss, args=(engine.pid, rss, stop), daemon=True)
    sampler.start()
    t_start = time.monotonic()
    deadline = t_start + args.seconds
    quotas = [args.jobs // args.clients + (1 if i < args.jobs % args.clients else 0) for i in range(args.clients)]
    workers = [Worker(i, engine.address, q, args.seed * 1000 + i, deadline, args.p_cancel, args.p_reconnect,
                      args.max_count)
               for i, q in enumerate(quotas)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    t_clients = time.monotonic() - t_start

    # Verification with a fresh client against the store of record.
    checker = EngineClient(engine.address, client_name="load-check", reconnect=False)
    checker.connect(timeout=10)
    idle_ms = idle_latency(checker)
    server_jobs = {j["job_id"]: j for j in checker.jobs(limit=1000)}
    tracks = {job_id: t for w in workers for job_id, t in w.jobs.items()}
    counts = {s: 0 for s in ("finished", "failed", "cancelled", "unfinished")}
    delivered = retrieved_only = mismatches = terminal_mismatch = dup_terminal = missing_terminal = 0
    result_bytes = 0
    for job_id, t in tracks.items():
        job = server_jobs.get(job_id)
        state = job["state"] if job else "missing"
        counts[state if state in FINAL_STATES else "unfinished"] += 1
        if t.terminal is None:
            missing_terminal += not t.abandoned
        elif t.terminal != state:
            terminal_mismatch += 1
        dup_terminal += sum(1 for n in t.terminal_per_gen.values() if n > 1)
        if state == "finished":
            stored = checker.result(job_id, timeout=60)
            for msg in stored:
                idx = msg.get("index")
                sha = arrays_sha(msg.arrays)
                result_bytes += sum(a.nbytes for a in msg.arrays.values())
                if idx in t.results:
                    delivered += 1
                    mismatches += t.results[idx] != sha
                else:
                    retrieved_only += 1
            if len(stored) != job["n_results"]:
                mismatches += 1
    checker.close()
    rc = engine.stop()
    stop.set()
    sampler.join()

    store = Store(tmp / "data")
    bad_transitions = 0
    for job_id in tracks:
        states = [s["state"] for s in store.transitions(job_id)]
        finals = [s for s in states if s in FINAL_STATES]
        if len(finals) != 1 or states[-1] != finals[0]:
            bad_transitions += 1
    store.close()
    log_text = log_path.read_text(errors="replace")
    log_errors = sum(1 for line in log_text.splitlines() if "Traceback" in line or " ERROR " in line)

    accept_ms = [t.accepted_ms for t in tracks.values()]
    first_progress_ms = [t.first_progress * 1000 for t in tracks.values() if t.first_progress is not None]
    worker_errors = [e for w in workers for e in w.errors]
    figures = {
        "machine": "2-core CPU",
        "clients": args.clients, "jobs_submitted": len(tracks), "duration_s": round(t_clients, 2),
        "jobs_per_s": round(len(tracks) / t_clients, 2),
        "states": counts,
        "cancels_requested": sum(w.cancels for w in workers),
        "cancel_ack_states": {s: sum(w.cancel_acks.get(s, 0) for w in workers)
                              for s in sorted({k for w in workers for k in w.cancel_acks})},
        "jobs_abandoned_on_reconnect": sum(t.abandoned for t in tracks.values()),
        "reconnects": sum(w.reconnects for w in workers),
        "results_delivered": delivered, "results_retrieved_only": retrieved_only,
        "result_mb": round(result_bytes / 2**20, 2),
        "sha_mismatches": mismatches, "terminal_mismatches": terminal_mismatch,
        "missing_terminal_events": missing_terminal, "duplicate_terminal_per_connection": dup_terminal,
        "bad_state_histories": bad_transitions, "engine_log_errors": log_errors, "engine_exit_code": rc,
        "client_errors": worker_errors[:10],
        "accept_latency_ms": {"p50": pct(accept_ms, 0.5), "p95": pct(accept_ms, 0.95), "max": pct(accept_ms, 1.0)},
        "submit_to_first_progress_ms_under_load": {"p50": pct(first_progress_ms, 0.5),
                                                   "p95": pct(first_progress_ms, 0.95)},
        "idle_submit_to_first_progress_ms": {"p50": pct(idle_ms, 0.5), "p95": pct(idle_ms, 0.95),
                                             "max": pct(idle_ms, 1.0)},
        "engine_rss_mb": {"start": round(rss[0], 1) if rss else None, "peak": round(max(rss), 1) if rss else None,
                          "end": round(rss[-1], 1) if rss else None,
                          "mean": round(statistics.mean(rss), 1) if rss else None},
    }
    ok = (counts["unfinished"] == 0 and len(tracks) == args.jobs and mismatches == 0 and terminal_mismatch == 0
          and missing_terminal == 0 and dup_terminal == 0 and bad_transitions == 0 and log_errors == 0
          and not worker_errors and rc == 0 and (max(rss) if rss else 0) < args.max_rss_mb)
    figures["ok"] = ok
    print(json.dumps(figures, indent=2))
    if args.keep:
        print(f"data kept in {tmp}", file=sys.stderr)
    else:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
