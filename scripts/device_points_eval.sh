#!/usr/bin/env bash
# Quality and speed of a points checkpoint on a GPU machine, in one short run: how the GPU
# figures of engine/checkpoints/points (eval.json "gpu_*", bench.json "gpu", MODEL.md) were made.
#
#   A. at once (the GPU samples, the 16 CPU cores run the exact EMD and draw the reference shapes):
#      1. test split, 32 shapes per category: 1-NNA-CD/EMD, COV, MMD, classifier accuracy
#         (python -m engine.models.points.evaluate --device cuda; four processes of 2-3 categories);
#      2. test split, 64 shapes per category, Chamfer metrics only (two processes);
#      (VAL=1: also the val split, 64 per category, Chamfer metrics only: for choosing a checkpoint);
#      3. quality against sampler steps (10, 25, 50 DPM-Solver++, 1000 DDPM), 32 per category,
#         all categories (scripts/bench_generate.py --quality);
#   B. alone, so that nothing else shares the GPU: speed at batch 64 and 8 (bench_generate.py).
#
# The random draws on CUDA differ from the CPU's, so these figures differ from the CPU ones by
# sampling noise, not by method. Dependencies the machine lacks travel as wheels in .whl_points/
# (diffusers, trimesh, manifold3d, importlib_metadata; see scripts/device_check.sh for the download command).
#
# Environment: CKPT (default engine/checkpoints/points), PY (python3), DEV (cuda; DEV=cpu QUICK=1
# tries the plumbing without a GPU), QUICK=1 (tiny sizes), OUT (default out/device_points_eval),
# SKIP_INSTALL=1 (the wheels are already on PYTHONPATH), DEADLINE (seconds from the start after
# which no step starts; default 420), PHASES (default AB; A alone while a second checkpoint is
# measured at the same time for a paired comparison, then B), QUALITY=0 (skip A.3).
# Results: $OUT/results.json (each step's JSON and exit status), $OUT/log.txt.

set -u -o pipefail
cd "$(dirname "$0")/.."
PY=${PY:-python3}
DEV=${DEV:-cuda}
CKPT=${CKPT:-engine/checkpoints/points}
OUT=${OUT:-out/device_points_eval}
DEADLINE=${DEADLINE:-420}
PHASES=${PHASES:-AB}
RES=$(mktemp -d)
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 OMP_NUM_THREADS=1
LOG="$OUT/log.txt"
: > "$LOG"

if [ -d .whl_points ] && ls .whl_points/*.whl > /dev/null 2>&1 && [ "${SKIP_INSTALL:-0}" != 1 ]; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
    .whl_points/*.whl >> "$LOG" 2>&1 || echo "wheel install failed" | tee -a "$LOG"
  export PYTHONPATH=/tmp/site:$PWD
else
  export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
fi

if [ "${QUICK:-0}" = 1 ]; then
  N32=2; N64=3; QN=2; QSTEPS=2,5; QCATS=chair,mug; B64=4; B8=2; REP=1; W=1
else
  N32=32; N64=64; QN=32; QSTEPS=10,25,50,1000; QCATS=; B64=64; B8=8; REP=3; W=4
fi
CATS_A=airplane,bench,bottle,car,chair,lamp  # two halves for the Chamfer-only tables
CATS_B=mug,shelf,sofa,table,vase
QCATS=${QCATS:-$("$PY" -c "import json,sys; print(','.join(json.load(open(sys.argv[1]))['cond']['categories']))" \
  "$CKPT/config.json")}

run() {  # run NAME LIMIT_S CMD...: stdout → $RES/NAME.out, stderr → log, exit status → $RES/NAME.rc
  local name=$1 limit=$2; shift 2
  local left=$((DEADLINE - SECONDS))
  [ "$left" -lt "$limit" ] && limit=$left
  if [ "$limit" -lt 10 ]; then echo "=== $name: skipped, out of time" | tee -a "$LOG"; echo -1 > "$RES/$name.rc"; return; fi
  echo "=== $name (limit ${limit} s): $*" | tee -a "$LOG"
  local t0=$SECONDS
  timeout "$limit" "$@" > "$RES/$name.out" 2>> "$LOG"
  echo $? > "$RES/$name.rc"
  echo "=== $name: rc $(cat "$RES/$name.rc"), $((SECONDS - t0)) s" | tee -a "$LOG"
}

run env 30 bash -c "nvidia-smi --query-gpu=name,memory.total --format=csv,noheader 2>/dev/null; nproc; \
  $PY -c 'import sys, torch; print(sys.version.split()[0], torch.__version__, torch.cuda.is_available())'"

[[ "$PHASES" != *A* ]] || {
EV="$PY -m engine.models.points.evaluate --ckpt $CKPT --device $DEV --workers $W --threads 1"
# the exact EMD is the slow part (about 45 s a category at 32 shapes on 6 workers): 4 processes
for g in airplane,bench,bottle car,chair,lamp mug,shelf,sofa table,vase; do
  run test32_${g%%,*} 300 $EV --per-category $N32 --categories $g &
done
run test64_a 300 $EV --per-category $N64 --categories $CATS_A --no-emd --seed 1 &
run test64_b 300 $EV --per-category $N64 --categories $CATS_B --no-emd --seed 1 &
if [ "${VAL:-0}" = 1 ]; then
  run val64_a 300 $EV --per-category $N64 --categories $CATS_A --no-emd --split val &
  run val64_b 300 $EV --per-category $N64 --categories $CATS_B --no-emd --split val &
fi
# few-step solvers and the 1000-step DDPM reference in two processes (DDPM alone takes minutes)
[ "${QUALITY:-1}" = 0 ] || for q in ${QSTEPS%,*} ${QSTEPS##*,}; do
  run quality_${q//,/_} 300 "$PY" scripts/bench_generate.py --model points --checkpoint "$CKPT" --device "$DEV" \
    --threads 2 --batch $B8 --repeats 1 --quality $q --quality-categories "$QCATS" --quality-n $QN --machine "$DEV" &
done
wait
}

[[ "$PHASES" != *B* ]] || {
BENCH="$PY scripts/bench_generate.py --model points --checkpoint $CKPT --device $DEV --threads 1 --direct --steps 25"
run speed_b64 90 $BENCH --batch $B64 --repeats $REP --machine "$DEV"
run speed_b8 60 $BENCH --batch $B8 --repeats $REP --machine "$DEV"
}

"$PY" - "$RES" "$OUT/results.json" <<'EOF'
import json, sys
from pathlib import Path
res, out = Path(sys.argv[1]), {}
for rc in sorted(res.glob("*.rc")):
    text = (res / f"{rc.stem}.out").read_text() if (res / f"{rc.stem}.out").exists() else ""
    try:
        body = json.loads(text)
    except ValueError:
        body = text[-4000:]
    out[rc.stem] = {"rc": int(rc.read_text()), "output": body}
Path(sys.argv[2]).write_text(json.dumps(out, indent=1))
print(json.dumps({k: v["rc"] for k, v in out.items()}))
EOF
