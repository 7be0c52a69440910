"""An engine killed with SIGKILL mid-job and restarted on the same data directory:
finished results come back byte-identical, the running job is failed with the reason,
the queued one is re-queued and runs."""

from __future__ import annotations

import os
from pathlib import Path

from engine.client import EngineClient
from engine.server.jobs import STOPPED_REASON
from engine.server.launch import EngineProcess
from engine.server.store import Store
from server_harness import arrays_sha, is_terminal, short_tmp, wait_for

TESTS = Path(__file__).resolve().parent


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(TESTS)] + [p for p in [env.get("PYTHONPATH")] if p])
    env["LATENTFORGE_EXTRA_PIPELINES"] = "server_slow_pipeline:SlowPipeline"
    return env


def test_sigkill_mid_job_then_restart():
    tmp = short_tmp()
    args = ["--socket", str(tmp / "run" / "e.sock"), "--data-dir", str(tmp / "data"), "--device", "cpu"]
    engine = EngineProcess(args, env=_env(), log_path=tmp / "engine1.log")
    try:
        c = EngineClient(engine.address, reconnect=False)
        c.connect(timeout=10)
        done = c.submit({"task": "generate", "model": "procedural", "params": {"category": "chair", "count": 2}})
        first = [m for m in wait_for(c.events, is_terminal(done), timeout=60) if m.op == "result"]
        shas = [arrays_sha(m.arrays) for m in first]
        running = c.submit({"task": "generate", "model": "slow", "params": {"steps": 100000, "delay": 0.01}})
        queued = c.submit({"task": "generate", "model": "slow", "params": {"steps": 3, "delay": 0, "count": 2}})
        wait_for(c.events, lambda m: m.op == "progress" and m.job_id == running and m.get("step", 0) >= 2)
    finally:
        engine.kill()
    c.close()

    engine = EngineProcess(args, env=_env(), log_path=tmp / "engine2.log")
    try:
        c = EngineClient(engine.address, reconnect=False)
        c.connect(timeout=10)
        again = c.result(done)
        assert [arrays_sha(m.arrays) for m in again] == shas
        assert [m.get("sha256") for m in again] == [m.get("sha256") for m in first]
        jobs = {j["job_id"]: j for j in c.jobs()}
        assert jobs[running]["state"] == "failed"
        assert jobs[running]["error"]["message"] == STOPPED_REASON
        assert jobs[running]["error"]["code"] == "job.interrupted"
        assert c.subscribe(queued) in ("queued", "running", "finished")
        results = [m for m in wait_for(c.events, is_terminal(queued), timeout=60) if m.job_id == queued]
        assert results[-1].op == "result" and results[-1].get("final")
        assert c.subscribe(running) == "failed"
        err = wait_for(c.events, is_terminal(running))[-1]
        assert err.op == "error" and err.get("message") == STOPPED_REASON
        c.close()
    finally:
        assert engine.stop() == 0
    store = Store(tmp / "data")
    states = [t["state"] for t in store.transitions(running)]
    assert states == ["queued", "running", "failed"]
    assert [t["state"] for t in store.transitions(queued)] == ["queued", "running", "finished"]
    store.close()
    log = (tmp / "engine2.log").read_text()
    assert "Traceback" not in log
