#!/usr/bin/env bash
# The CUDA-only checks, in one run on a GPU machine: how the GPU figures in
# engine/checkpoints/points/bench.json ("gpu"), engine/checkpoints/points/MODEL.md (Speed → GPU)
# and docs/geometry.md (Measured on a GPU) were made.
#
#   1. the tests that are skipped without CUDA, with the rest of their files:
#      tests/test_render.py (nvdiffrast backend vs the CPU Embree renderer) and
#      tests/test_marching_tets.py (CUDA vs CPU marching tets);
#   2. scripts/bench_generate.py --model points --device cuda at batch 64 and batch 8;
#   3. scripts/bench_render.py with --backend cuda and cpu (same machine), and
#      scripts/bench_geometry.py --device cuda --no-sdf (marching tets, R=64, batch 1/4).
#
# Each step runs under its own time limit and records its exit status; one failing does not
# stop the others. Results: $OUT/results.json (every benchmark's JSON and each step's rc),
# $OUT/log.txt (everything printed), $OUT/pytest.txt.
#
# Dependencies that the machine lacks travel as wheels in .whl/ (git-ignored through
# .git/info/exclude; see /work/.library/device/README.md), downloaded on the dev machine with
#   pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#     --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
#     --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .whl \
#     trimesh==5.2.0 embreex==4.4.0.post1 diffusers==0.42.1 libigl==2.6.3 manifold3d==3.5.4 \
#     importlib_metadata diffrp-nvdiffrast==0.3.3.1
# (torch, numpy, scipy, scikit-image, safetensors, huggingface_hub, pytest are the machine's own).
# diffrp-nvdiffrast is a pure-Python wheel: its CUDA extension is compiled (nvcc + ninja) on
# first use, here in step 0, for the GPU's architecture only.
#
# Environment: PY (python, default python3), DEV (default cuda; DEV=cpu QUICK=1 tries the
# plumbing on a machine without a GPU), QUICK=1 (tiny sizes), OUT (default out/device_check).

set -u -o pipefail
cd "$(dirname "$0")/.."
PY=${PY:-python3}
DEV=${DEV:-cuda}
OUT=${OUT:-out/device_check}
source scripts/device_steps.sh
start_run .whl
export TORCH_EXTENSIONS_DIR=${TORCH_EXTENSIONS_DIR:-/tmp/torch_extensions}
export MAX_JOBS=${MAX_JOBS:-$(nproc)}
if [ "$DEV" = cuda ] && [ -z "${TORCH_CUDA_ARCH_LIST:-}" ]; then
  TORCH_CUDA_ARCH_LIST=$("$PY" -c "import torch; print('%d.%d' % torch.cuda.get_device_capability())" 2>/dev/null) \
    && export TORCH_CUDA_ARCH_LIST
fi

if [ "${QUICK:-0}" = 1 ]; then
  B64=4; B8=2; STEPS=2; REP=1; VIEWS=2; SHAPES=1; R=16
else
  B64=64; B8=8; STEPS=25; REP=3; VIEWS=24; SHAPES=6; R=64
fi

DEADLINE=${DEADLINE:-285}  # seconds from the start: no step runs past it (the run's own limit is 300 s)

step env 30 bash -c "nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader; \
  $PY -c 'import sys, torch, numpy; print(sys.version.split()[0], torch.__version__, torch.version.cuda, numpy.__version__, torch.cuda.is_available())'; \
  nvcc --version | tail -1; nproc"
if [ "$DEV" = cuda ]; then  # compile nvdiffrast's extension once, timed, before anything uses it
  step nvdiffrast_build 180 "$PY" -c "import time, torch; t=time.perf_counter(); \
from engine.render.backend_cuda import _context; _context('cuda'); \
print(round(time.perf_counter()-t, 1), 's to build (first time) and load nvdiffrast')"
fi
step pytest 150 bash -c "set -o pipefail; $PY -m pytest -q -rs -p no:cacheprovider tests/test_render.py tests/test_marching_tets.py \
  2>&1 | tee $OUT/pytest.txt"
# the figures behind tests/test_render.py::test_cpu_and_cuda_backends_agree, printed
cat > "$RES/compare.py" <<'PYEOF'
import json, math, sys
import numpy as np, trimesh
from engine.render.cameras import orbit_cameras
from engine.render.renderer import render_mesh
dev = sys.argv[1]
mesh = trimesh.load("tests/data/meshes/featuretype.STL", force="mesh")
mesh.apply_translation(-mesh.bounds.mean(0))
mesh.apply_scale(2.0 / mesh.extents.max())
cams = orbit_cameras(6, polar=math.radians(60), radius=3.5)
cpu = render_mesh(mesh.vertices, mesh.faces, cams, size=256, backend="cpu")
gpu = render_mesh(mesh.vertices, mesh.faces, cams, size=256, backend=dev)
both = cpu["mask"] & gpu["mask"]
d = np.abs(cpu["depth"][both] - gpu["depth"][both])
c = np.abs(cpu["rgb"][both].astype(int) - gpu["rgb"][both]).max(-1)
cos = np.clip((cpu["normals"][both] * gpu["normals"][both]).sum(-1), -1, 1)
print(json.dumps({"mesh": "featuretype.STL", "faces": len(mesh.faces), "views": 6, "size": 256, "backend": dev,
                  "mask_iou": float(both.sum() / (cpu["mask"] | gpu["mask"]).sum()),
                  "mask_pixels_differing": int((cpu["mask"] != gpu["mask"]).sum()),
                  "depth_abs_err_median": float(np.median(d)), "depth_frac_err_below_1e-2": float(np.mean(d < 1e-2)),
                  "depth_abs_err_max": float(d.max()), "rgb_frac_within_2": float(np.mean(c <= 2)),
                  "normals_angle_deg_p99": float(np.percentile(np.degrees(np.arccos(cos)), 99))}))
PYEOF
step render_compare 60 "$PY" "$RES/compare.py" "$DEV"
step gen_b$B64 150 "$PY" scripts/bench_generate.py --model points --device "$DEV" --batch $B64 --steps $STEPS \
  --repeats $REP --threads 1 --direct --machine "$DEV"
step render_$DEV 90 "$PY" scripts/bench_render.py --backend "$DEV" --shapes $SHAPES --views $VIEWS
step geometry_$DEV 90 "$PY" scripts/bench_geometry.py --device "$DEV" --no-sdf --resolution $R
step gen_b$B8 100 "$PY" scripts/bench_generate.py --model points --device "$DEV" --batch $B8 --steps $STEPS \
  --repeats $REP --threads 1 --direct --machine "$DEV"
[ "$DEV" = cpu ] || step render_cpu 90 "$PY" scripts/bench_render.py --backend cpu --shapes $SHAPES --views $VIEWS

write_results "$OUT/results.json"
