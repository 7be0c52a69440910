"""Engine commands: serve, generate, populate, refine, interpolate, jobs, result, models, prune, shutdown.

Client commands connect to ``--connect ADDRESS`` when given, else to the default socket
when an engine answers there, else start a private engine for the call (on a temporary
socket, with the usual data directory) and stop it afterwards.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from engine.errors import InvalidRequest, LatentforgeError

SETTINGS_FILE = "settings.json"
DEFAULT_MAX_RESULTS_GB = 20.0
DEFAULT_MAX_AGE_DAYS = 90.0


# ---------------------------------------------------------------------------- parsers

def register(sub: argparse._SubParsersAction) -> None:
    """Add the engine's subcommands to ``latentforge``."""
    p = sub.add_parser("serve", help="run the engine (prints one ready line with its address)")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--socket", type=Path, help="Unix socket path (default: a private runtime directory)")
    where.add_argument("--host", help="listen on TCP instead (127.0.0.1; other interfaces need --allow-remote)")
    p.add_argument("--port", type=int, default=0, help="TCP port (default: a free one)")
    p.add_argument("--token-file", type=Path, help="where to write the TCP token (0600)")
    p.add_argument("--allow-remote", action="store_true", help="allow a non-loopback --host")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default auto)")
    p.add_argument("--data-dir", type=Path, help="database and results (default ~/.local/share/latentforge)")
    p.add_argument("--preview-hz", type=float, default=5.0, help="max previews per second per job (0: none)")
    _prune_args(p)
    p.add_argument("--log-level", default="INFO", choices=("DEBUG", "INFO", "WARNING", "ERROR"))
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("generate", help="generate objects with a model and write them to files")
    p.add_argument("--model", required=True, help="procedural, points, ... (see `latentforge models`)")
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--category", help="e.g. chair")
    what.add_argument("--prompt", help="text naming what to make")
    what.add_argument("--image", type=Path, help="a PNG image prompt")
    _gen_args(p)
    _output_args(p)
    p.set_defaults(func=cmd_generate)

    p = sub.add_parser("populate", help="generate several categories at once, laid out on a grid")
    p.add_argument("--model", default="procedural")
    p.add_argument("--item", action="append", required=True, metavar="CATEGORY=COUNT",
                   help="repeat for each category, e.g. --item chair=4 --item table=1")
    p.add_argument("--spacing", type=float, help="grid pitch in Blender units")
    _gen_args(p, count=False)
    p.set_defaults(func=cmd_populate)

    p = sub.add_parser("refine", help="refine an existing mesh with a model (SDEdit)")
    p.add_argument("--model", required=True)
    p.add_argument("--input", type=Path, required=True, help="mesh file (obj, ply, stl, off, glb)")
    p.add_argument("--strength", type=float, required=True, help="0 (keep) .. 1 (regenerate)")
    p.add_argument("--prompt")
    _gen_args(p)
    _output_args(p)
    p.set_defaults(func=cmd_refine)

    p = sub.add_parser("interpolate", help="shapes morphing from one mesh to another through the model's latents")
    p.add_argument("--model", required=True, help="a model that can interpolate (points)")
    p.add_argument("--a", type=Path, required=True, help="first shape: mesh file (obj, ply, stl, off, glb) or a PLY point cloud")
    p.add_argument("--b", type=Path, required=True, help="second shape (same formats)")
    p.add_argument("--count", type=int, default=5, help="shapes to make, A and B included (2..32, default 5)")
    cond = p.add_mutually_exclusive_group()
    cond.add_argument("--category", help="condition on a category (default: unconditional)")
    cond.add_argument("--prompt", help="text naming a category")
    _gen_args(p, count=False)
    _output_args(p)
    p.set_defaults(func=cmd_interpolate)

    p = sub.add_parser("jobs", help="list the engine's jobs, newest first")
    p.add_argument("--limit", type=int, default=20)
    p.add_argument("--state", action="append", choices=("queued", "running", "finished", "failed", "cancelled"))
    p.add_argument("--json", action="store_true")
    _conn_args(p)
    p.set_defaults(func=cmd_jobs)

    p = sub.add_parser("result", help="write a finished job's stored results to files")
    p.add_argument("job_id")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--format", default="ply", choices=("ply", "obj", "glb", "npz"))
    _conn_args(p)
    p.set_defaults(func=cmd_result)

    p = sub.add_parser("models", help="list models, what they can do, and the device")
    p.add_argument("--json", action="store_true")
    p.add_argument("--connect", help="ask this engine (default: a running one, else look locally)")
    p.add_argument("--token-file", type=Path)
    p.set_defaults(func=cmd_models)

    p = sub.add_parser("prune", help="delete old results by size/age (engine must be stopped)")
    p.add_argument("--data-dir", type=Path)
    _prune_args(p)
    p.set_defaults(func=cmd_prune)

    p = sub.add_parser("shutdown", help="stop a running engine")
    p.add_argument("--connect")
    p.add_argument("--token-file", type=Path)
    p.set_defaults(func=cmd_shutdown)


def _conn_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--connect", metavar="ADDRESS", help="engine address (unix:///path.sock or tcp://127.0.0.1:PORT)")
    p.add_argument("--token-file", type=Path, help="token file of a TCP engine")
    p.add_argument("--data-dir", type=Path, help="data directory of a private engine started for this call")
    p.add_argument("--device", default="auto", help="device of a private engine (auto, cpu, cuda)")


def _gen_args(p: argparse.ArgumentParser, count: bool = True) -> None:
    if count:
        p.add_argument("--count", type=int, default=1, help="objects to make (default 1)")
    p.add_argument("--seed", type=int, help="object i uses seed + i (default: random, recorded)")
    p.add_argument("--steps", type=int, help="denoising steps (learned models)")
    p.add_argument("--guidance", type=float, help="classifier-free guidance scale (learned models)")
    p.add_argument("--priority", type=int, default=0, help="higher runs first (default 0)")
    p.add_argument("--param", action="append", default=[], metavar="KEY=JSON",
                   help="extra model parameter, e.g. --param overrides='{\"legs\": \"four_straight\"}'")
    p.add_argument("--out", type=Path, required=True, help="folder for the files and summary.json")
    p.add_argument("--format", default="ply", choices=("ply", "obj", "glb", "npz"),
                   help="file format (default ply; images are always PNG)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    _conn_args(p)


def _output_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--output", choices=("points", "mesh"),
                   help="points model: point clouds (default) or meshes reconstructed from them")
    p.add_argument("--mesh-resolution", type=int, help="grid resolution of --output mesh (32..128, default 64)")


def _prune_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--max-results-gb", type=float,
                   help=f"keep stored results under this size (default {DEFAULT_MAX_RESULTS_GB:g}, or settings.json)")
    p.add_argument("--max-age-days", type=float,
                   help=f"drop results older than this (default {DEFAULT_MAX_AGE_DAYS:g}, or settings.json)")


# ---------------------------------------------------------------------------- helpers

def _data_dir(args: argparse.Namespace) -> Path:
    from engine.server.address import default_data_dir
    return Path(args.data_dir).expanduser().resolve() if getattr(args, "data_dir", None) else default_data_dir()


def prune_policy(args: argparse.Namespace, data_dir: Path) -> tuple[int | None, float | None]:
    """(max bytes, max age in seconds): CLI flags, else ``DATA_DIR/settings.json``, else defaults.

    settings.json may hold ``{"max_results_gb": 20, "max_age_days": 90}``; a value of 0 or
    null there disables that limit.
    """
    settings: dict[str, Any] = {}
    path = data_dir / SETTINGS_FILE
    if path.exists():
        try:
            settings = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise InvalidRequest(f"Cannot read {path}: {exc}.", "Fix or delete the file.") from exc
    gb = args.max_results_gb if args.max_results_gb is not None else settings.get("max_results_gb", DEFAULT_MAX_RESULTS_GB)
    days = args.max_age_days if args.max_age_days is not None else settings.get("max_age_days", DEFAULT_MAX_AGE_DAYS)
    return (int(gb * (1 << 30)) if gb else None), (float(days) * 86400 if days else None)


def _setup_logging(level: str, data_dir: Path) -> None:
    from logging.handlers import RotatingFileHandler
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    root = logging.getLogger()
    root.setLevel(level)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(fmt)
    root.addHandler(handler)
    log_dir = data_dir / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    fh = RotatingFileHandler(log_dir / "engine.log", maxBytes=5 << 20, backupCount=3)
    fh.setFormatter(fmt)
    root.addHandler(fh)


def _default_address(args: argparse.Namespace) -> str | None:
    """The default socket's address when an engine answers there."""
    from engine.server.address import default_socket_path
    path = default_socket_path(_data_dir(args))
    return f"unix://{path}" if path.exists() else None


@contextmanager
def engine_client(args: argparse.Namespace, start: bool = True) -> Iterator[Any]:
    """A connected ``EngineClient``: --connect, else the default engine, else a private one."""
    from engine.client import ConnectionFailed, EngineClient
    from engine.server.launch import EngineProcess

    token_file = str(args.token_file) if getattr(args, "token_file", None) else None
    if token_file is None and args.connect and args.connect.startswith("tcp://"):
        from engine.server.address import default_token_path
        default = default_token_path(_data_dir(args))
        token_file = str(default) if default.exists() else None
    candidates = [args.connect] if args.connect else [a for a in [_default_address(args)] if a]
    for address in candidates:
        client = EngineClient(address, token_file=token_file, client_name="latentforge-cli", reconnect=False)
        try:
            client.connect(timeout=5)
        except ConnectionFailed:
            if args.connect:
                raise
            continue
        try:
            yield client
        finally:
            client.close()
        return
    if not start:
        yield None
        return
    tmp = tempfile.mkdtemp(prefix="lf-engine-", dir="/tmp" if os.path.isdir("/tmp") else None)
    serve_args = ["--socket", f"{tmp}/engine.sock", "--data-dir", str(_data_dir(args)),
                  "--device", getattr(args, "device", "auto")]
    print("starting a private engine for this call...", file=sys.stderr)
    engine = EngineProcess(serve_args, log_path=Path(tmp) / "engine.log")
    try:
        client = EngineClient(engine.address, client_name="latentforge-cli", reconnect=False)
        client.connect(timeout=10)
        try:
            yield client
        finally:
            client.close()
    finally:
        engine.stop()
        shutil.rmtree(tmp, ignore_errors=True)


def _extra_params(items: list[str]) -> dict[str, Any]:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise InvalidRequest(f"--param {item!r} must be KEY=VALUE.")
        try:
            out[key] = json.loads(value)
        except ValueError:
            out[key] = value
    return out


def _common_params(args: argparse.Namespace) -> dict[str, Any]:
    params = {}
    for key in ("count", "seed", "steps", "guidance", "output", "mesh_resolution"):
        value = getattr(args, key, None)
        if value is not None:
            params[key] = value
    params.update(_extra_params(args.param))
    return params


# ------------------------------------------------------------------------ run a job

def run_job(client: Any, spec: dict[str, Any], arrays: dict[str, Any] | None, out: Path, fmt: str,
            progress: bool = True) -> dict[str, Any]:
    """Submit, follow with a progress bar, write every result and ``out/summary.json``; return the summary."""
    from tqdm import tqdm
    from engine.client import ConnectionLost
    from engine.errors import JobCancelled
    from engine.protocol import error_from_header
    from engine.server.export import write_result

    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    job_id = client.submit(spec, arrays)
    t_accepted = time.perf_counter() - t0
    t_started = t_preview = None
    bar = tqdm(total=1, desc="queued", unit="step", disable=not progress, leave=False, file=sys.stderr)
    files: list[str] = []
    results: list[dict[str, Any]] = []
    try:
        while True:
            msg = client.events.get(timeout=3600)
            if msg.op == "connection" and msg.get("state") in ("lost", "closed", "failed"):
                raise ConnectionLost("The connection to the engine was lost.", "Check the engine log and retry.")
            if msg.job_id != job_id:
                continue
            now = time.perf_counter() - t0
            if msg.op == "progress":
                if t_started is None:
                    t_started = now
                if bar.total != msg.get("total"):
                    bar.total = max(1, msg.get("total") or 1)
                bar.n = msg.get("step") or 0
                bar.set_description(msg.get("stage") or "", refresh=False)
                bar.refresh()
            elif msg.op == "preview":
                if t_preview is None:
                    t_preview = now
            elif msg.op == "result":
                meta = msg.get("meta") or {}
                paths = write_result(out, msg.get("index"), msg.get("kind"), msg.arrays, meta, fmt)
                files += [p.name for p in paths]
                results.append({"index": msg.get("index"), "kind": msg.get("kind"), "files": [p.name for p in paths],
                                "seed": msg.get("seed"), "category": meta.get("category"),
                                "prompt": msg.get("prompt"), "transform": msg.get("transform"),
                                "sha256": msg.get("sha256")})
                if msg.get("final"):
                    break
            elif msg.op == "error":
                raise error_from_header(msg.header)
            elif msg.op == "cancelled":
                raise JobCancelled(f"Job {job_id} was cancelled.")
    except KeyboardInterrupt:
        try:
            client.cancel(job_id, timeout=5)
        except LatentforgeError:
            pass
        raise
    finally:
        bar.close()
    total = time.perf_counter() - t0
    summary = {
        "job_id": job_id, "model": spec["model"], "task": spec["task"], "params": spec["params"],
        "seed": results[0]["seed"] if results else None, "files": files, "results": results,
        "timings": {"accepted_s": round(t_accepted, 4),
                    "queue_wait_s": None if t_started is None else round(t_started, 4),
                    "first_preview_s": None if t_preview is None else round(t_preview, 4),
                    "total_s": round(total, 4)},
        "engine": {"address": client.address, "device": (client.welcome or {}).get("device")},
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary


def _finish(summary: dict[str, Any], out: Path) -> int:
    print(f"job {summary['job_id']}: {len(summary['results'])} result(s) in {summary['timings']['total_s']:.2f} s "
          f"-> {out}")
    return 0


# ------------------------------------------------------------------------- commands

def cmd_serve(args: argparse.Namespace) -> int:
    """`latentforge serve`."""
    import asyncio
    import signal

    from engine.client import READY_PREFIX
    from engine.device import resolve_device
    from engine.server.jobs import JobManager
    from engine.server.server import EngineServer, ServerConfig
    from engine.server.store import Store

    from engine.server.address import check_host, check_socket_path
    if args.host is not None:  # refuse a bad address before the slow start (torch import)
        check_host(args.host, args.allow_remote)
    if args.socket is not None:
        check_socket_path(args.socket)
    data_dir = _data_dir(args)
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    _setup_logging(args.log_level, data_dir)
    log = logging.getLogger("engine.server")
    device = resolve_device(args.device)
    max_bytes, max_age = prune_policy(args, data_dir)
    store = Store(data_dir)
    store.acquire_lock()
    manager = JobManager(store, device, preview_hz=args.preview_hz, max_result_bytes=max_bytes,
                         max_result_age_s=max_age)
    config = ServerConfig(socket_path=args.socket, host=args.host, port=args.port, allow_remote=args.allow_remote,
                          token_path=args.token_file, private_socket_dir=args.socket is None)

    async def main() -> None:
        server = EngineServer(config, store, manager)
        try:
            where = await server.start()
        except BaseException:
            await server.stop()
            raise
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, server.request_stop)
        log.info("serving on %s (device %s, data %s)", where, device, data_dir)
        print(f"{READY_PREFIX}{where}", flush=True)
        await server.serve_forever()
        log.info("stopped")

    try:
        asyncio.run(main())
    finally:
        store.close()
    return 0


def cmd_generate(args: argparse.Namespace) -> int:
    """`latentforge generate`."""
    params = _common_params(args)
    arrays = None
    if args.category:
        params["category"] = args.category
    elif args.prompt:
        params["prompt"] = args.prompt
    else:
        arrays = {"image": _load_image(args.image)}
        params["image"] = "image"
    return _submit(args, "generate", params, arrays)


def cmd_populate(args: argparse.Namespace) -> int:
    """`latentforge populate`."""
    items = []
    for item in args.item:
        cat, sep, count = item.partition("=")
        if not cat or (sep and not count.isdigit()):
            raise InvalidRequest(f"--item {item!r} must be CATEGORY or CATEGORY=COUNT.")
        items.append({"category": cat, "count": int(count) if sep else 1})
    params = _common_params(args)
    params["items"] = items
    if args.spacing is not None:
        params["spacing"] = args.spacing
    return _submit(args, "populate", params, None)


def cmd_refine(args: argparse.Namespace) -> int:
    """`latentforge refine`: the mesh travels as arrays ``vertices``/``faces`` (params ``input: "mesh"``)."""
    import numpy as np
    from engine.data.meshio import load_mesh

    mesh = load_mesh(args.input)
    arrays = {"vertices": np.asarray(mesh.vertices, dtype=np.float32),
              "faces": np.asarray(mesh.faces, dtype=np.int32)}
    params = _common_params(args)
    params.update(input="mesh", strength=args.strength)
    if args.prompt:
        params["prompt"] = args.prompt
    return _submit(args, "refine", params, arrays)


def _submit(args: argparse.Namespace, task: str, params: dict[str, Any], arrays: dict[str, Any] | None) -> int:
    """Run one job of ``task`` on ``args.model`` with progress, write its results to ``args.out``."""
    spec = {"task": task, "model": args.model, "params": params, "priority": args.priority}
    with engine_client(args) as client:
        summary = run_job(client, spec, arrays, args.out, args.format, progress=not args.no_progress)
    return _finish(summary, args.out)


def _shape_arrays(path: Path, prefix: str) -> dict[str, Any]:
    """A shape file as arrays ``{prefix}vertices``/``{prefix}faces``, or ``{prefix}points`` for a
    file that holds only points (e.g. a PLY point cloud); the engine checks them like refine's input."""
    import numpy as np
    from engine.data.errors import EmptyMesh
    from engine.data.meshio import load_mesh

    try:
        mesh = load_mesh(path)
    except EmptyMesh as exc:
        import trimesh
        try:
            loaded = trimesh.load(str(path), process=False)
        except Exception:
            raise exc from None
        if not isinstance(loaded, trimesh.PointCloud) or len(loaded.vertices) == 0:
            raise
        return {f"{prefix}points": np.asarray(loaded.vertices, dtype=np.float32)}
    return {f"{prefix}vertices": np.asarray(mesh.vertices, dtype=np.float32),
            f"{prefix}faces": np.asarray(mesh.faces, dtype=np.int32)}


def cmd_interpolate(args: argparse.Namespace) -> int:
    """`latentforge interpolate --a A --b B`: shapes travel as arrays ``a_*``/``b_*``; results are in
    the canonical frame (centred, fitted to [-1, 1]^3), written in order from A (0) to B (count-1)."""
    arrays = {**_shape_arrays(args.a, "a_"), **_shape_arrays(args.b, "b_")}
    params = _common_params(args)
    params["count"] = args.count
    if args.category:
        params["category"] = args.category
    elif args.prompt:
        params["prompt"] = args.prompt
    return _submit(args, "interpolate", params, arrays)


def cmd_jobs(args: argparse.Namespace) -> int:
    """`latentforge jobs`."""
    with engine_client(args) as client:
        jobs = client.jobs(limit=args.limit, state=args.state)
    if args.json:
        print(json.dumps({"jobs": jobs}, indent=2))
        return 0
    print(f"{'job':16}  {'state':9}  {'task':8}  {'model':10}  {'created':19}  results  error")
    for j in jobs:
        created = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(j["created"])) if j.get("created") else ""
        err = (j.get("error") or {}).get("code", "")
        print(f"{j['job_id']:16}  {j['state']:9}  {j['spec'].get('task', ''):8}  {j['spec'].get('model', ''):10}  "
              f"{created:19}  {j['n_results']:7}  {err}")
    return 0


def cmd_result(args: argparse.Namespace) -> int:
    """`latentforge result JOB --out DIR`."""
    from engine.server.export import write_result
    with engine_client(args) as client:
        messages = client.result(args.job_id, timeout=600)
    files, results = [], []
    for msg in messages:
        meta = msg.get("meta") or {}
        paths = write_result(args.out, msg.get("index"), msg.get("kind"), msg.arrays, meta, args.format)
        files += [p.name for p in paths]
        results.append({"index": msg.get("index"), "kind": msg.get("kind"), "files": [p.name for p in paths],
                        "seed": msg.get("seed"), "category": meta.get("category"),
                        "transform": msg.get("transform"), "sha256": msg.get("sha256")})
    model = messages[0].get("model") if messages else None
    summary = {"job_id": args.job_id, "model": model, "files": files, "results": results}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2))
    print(f"job {args.job_id}: {len(results)} result(s) -> {args.out}")
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    """`latentforge models`: from a running engine, else from this installation."""
    args.data_dir = None
    with engine_client(args, start=False) as client:
        if client is not None:
            listing = client.models()
            listing["engine"] = client.address
        else:
            from engine.pipelines.registry import list_models
            listing = {"device": local_device_guess(), "models": list_models(), "engine": None}
    if args.json:
        print(json.dumps(listing, indent=2))
        return 0
    print(f"device: {listing['device']}" + ("" if listing.get("engine") else " (no engine running; local view)"))
    for m in listing["models"]:
        tasks = ", ".join(t for t, s in m["tasks"].items() if s.get("available"))
        state = f"available: {tasks}" if m["available"] else f"unavailable: {m['reason']}"
        print(f"  {m['name']:11} {'/'.join(m['kinds']):8} {state}")
    return 0


def local_device_guess() -> str:
    """The device ``auto`` would pick, told without importing torch (seconds): ``cuda`` when the
    installed torch is a CUDA build, an NVIDIA driver is loaded and ``CUDA_VISIBLE_DEVICES``
    does not hide every device, else ``cpu``. A running engine reports the device it resolved."""
    import importlib.util
    import re

    spec = importlib.util.find_spec("torch")   # finds the package without importing it
    if spec is None or not spec.submodule_search_locations:
        return "cpu"
    if os.environ.get("CUDA_VISIBLE_DEVICES") in ("", "-1"):
        return "cpu"
    try:
        text = (Path(list(spec.submodule_search_locations)[0]) / "version.py").read_text()
    except OSError:
        return "cpu"
    match = re.search(r"^cuda\s*(?::[^=]*)?=\s*(\S+)", text, re.M)
    if not match or match.group(1) in ("None", "''", '""'):
        return "cpu"
    return "cuda" if Path("/proc/driver/nvidia/version").exists() else "cpu"


def cmd_prune(args: argparse.Namespace) -> int:
    """`latentforge prune`: apply the size/age policy to a stopped engine's data directory."""
    from engine.server.store import Store
    data_dir = _data_dir(args)
    max_bytes, max_age = prune_policy(args, data_dir)
    store = Store(data_dir)
    try:
        store.acquire_lock()
        stats = store.prune(max_bytes, max_age, collect=True, grace_s=0.0)
    finally:
        store.close()
    print(json.dumps(stats))
    return 0


def cmd_shutdown(args: argparse.Namespace) -> int:
    """`latentforge shutdown`."""
    args.data_dir = None
    with engine_client(args, start=False) as client:
        if client is None:
            print("no engine is running at the default address")
            return 1
        client.shutdown(timeout=30)
    print("engine stopped")
    return 0


def _load_image(path: Path) -> Any:
    import numpy as np
    from PIL import Image, UnidentifiedImageError
    try:
        with Image.open(path) as img:
            return np.asarray(img.convert("RGBA"), dtype=np.uint8)
    except (OSError, UnidentifiedImageError) as exc:
        raise InvalidRequest(f"Cannot read the image {path}: {exc}.", "Give a PNG or JPEG file.") from exc
