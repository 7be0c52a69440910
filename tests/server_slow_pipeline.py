"""A test-only pipeline that takes its time, so mid-job behaviour can be tested deterministically.

Registered through ``LATENTFORGE_EXTRA_PIPELINES=server_slow_pipeline:SlowPipeline`` (with
this folder on the path); never part of the product.

params: ``steps`` (int), ``delay`` (s per step), ``count`` (results), ``seed``, ``fail``
("crash" raises a plain exception, "error" a LatentforgeError), ``n_points``,
``gate`` (wait at the first step until ``GATES[gate]`` is set; in-process tests only),
``go_file`` (a path: wait at the first step until it exists; subprocess tests).
"""

from __future__ import annotations

import os
import threading
import time
from typing import Any

import numpy as np

from engine.errors import InvalidRequest, LatentforgeError
from engine.pipelines.base import Result

GATES: dict[str, threading.Event] = {}
RUN_ORDER: list[str] = []


class SlowPipeline:
    name = "slow"
    tasks = ("generate",)
    kinds = ("points",)

    def status(self) -> dict[str, Any]:
        return {"available": True, "reason": "", "tasks": {"generate": {"available": True, "reason": ""}}}

    def validate(self, task: str, params: dict[str, Any]) -> dict[str, Any]:
        steps = params.get("steps", 5)
        if not isinstance(steps, int) or not 1 <= steps <= 100000:
            raise InvalidRequest("steps must be 1..100000")
        return {"steps": steps, "delay": float(params.get("delay", 0.01)), "count": int(params.get("count", 1)),
                "seed": int(params.get("seed", 0)), "fail": params.get("fail"), "tag": params.get("tag"),
                "n_points": int(params.get("n_points", 64)), "gate": params.get("gate"),
                "go_file": params.get("go_file")}

    def run(self, task: str, params: dict[str, Any], ctx: Any) -> list[Result]:
        RUN_ORDER.append(params.get("tag") or "")
        rng = np.random.default_rng(params["seed"])
        for i in range(params["steps"]):
            ctx.check_cancelled()
            if i == 0 and params["gate"]:
                while not GATES.setdefault(params["gate"], threading.Event()).wait(0.02):
                    ctx.check_cancelled()
            if i == 0 and params["go_file"]:
                while not os.path.exists(params["go_file"]):
                    ctx.check_cancelled()
                    time.sleep(0.02)
            time.sleep(params["delay"])
            if params["fail"] == "crash" and i == params["steps"] // 2:
                raise RuntimeError("simulated crash")
            if params["fail"] == "error" and i == params["steps"] // 2:
                raise LatentforgeError("simulated model error", "try again", code="slow.error")
            ctx.progress("denoise", i + 1, params["steps"])
            if ctx.wants_preview(i + 1):
                ctx.preview("points", {"points": rng.standard_normal((params["n_points"], 3)).astype(np.float32)},
                            {"step": i + 1})
        return [Result("points", {"points": rng.standard_normal((params["n_points"], 3)).astype(np.float32)},
                       {"seed": params["seed"] + k, "index": k}) for k in range(params["count"])]
