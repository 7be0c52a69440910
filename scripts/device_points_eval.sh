#!/usr/bin/env bash
# Quality and speed of a points checkpoint on a GPU machine, in one short run: how the GPU
# figures of engine/checkpoints/points (eval.json "retrained_vae_current_data", bench.json
# "gpu_2026_11_27", MODEL.md training step 9) were made.
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
# Results: $OUT/results.json (each step's JSON, exit status and seconds), $OUT/log.txt.

set -u -o pipefail
cd "$(dirname "$0")/.."
PY=${PY:-python3}
DEV=${DEV:-cuda}
CKPT=${CKPT:-engine/checkpoints/points}
OUT=${OUT:-out/device_points_eval}
DEADLINE=${DEADLINE:-420}
PHASES=${PHASES:-AB}
export OMP_NUM_THREADS=1
source scripts/device_steps.sh
start_run .whl_points

if [ "${QUICK:-0}" = 1 ]; then
  N32=2; N64=3; QN=2; QSTEPS=2,5; QCATS=chair,mug; B64=4; B8=2; REP=1; W=1
else
  N32=32; N64=64; QN=32; QSTEPS=10,25,50,1000; QCATS=; B64=64; B8=8; REP=3; W=4
fi
CATS_A=airplane,bench,bottle,car,chair,lamp  # two halves for the Chamfer-only tables
CATS_B=mug,shelf,sofa,table,vase
QCATS=${QCATS:-$("$PY" -c "import json,sys; print(','.join(json.load(open(sys.argv[1]))['cond']['categories']))" \
  "$CKPT/config.json")}

step env 30 bash -c "nvidia-smi --query-gpu=name,memory.total --format=csv,noheader 2>/dev/null; nproc; \
  $PY -c 'import sys, torch; print(sys.version.split()[0], torch.__version__, torch.cuda.is_available())'"

[[ "$PHASES" != *A* ]] || {
EV="$PY -m engine.models.points.evaluate --ckpt $CKPT --device $DEV --workers $W --threads 1"
# the exact EMD is the slow part (about 45 s a category at 32 shapes on 4 workers of the H200
# machine): four processes
for g in airplane,bench,bottle car,chair,lamp mug,shelf,sofa table,vase; do
  step test32_${g%%,*} 300 $EV --per-category $N32 --categories $g &
done
step test64_a 300 $EV --per-category $N64 --categories $CATS_A --no-emd --seed 1 &
step test64_b 300 $EV --per-category $N64 --categories $CATS_B --no-emd --seed 1 &
if [ "${VAL:-0}" = 1 ]; then
  step val64_a 300 $EV --per-category $N64 --categories $CATS_A --no-emd --split val &
  step val64_b 300 $EV --per-category $N64 --categories $CATS_B --no-emd --split val &
fi
# few-step solvers and the 1000-step DDPM reference in two processes (DDPM alone takes minutes)
[ "${QUALITY:-1}" = 0 ] || for q in ${QSTEPS%,*} ${QSTEPS##*,}; do
  step quality_${q//,/_} 300 "$PY" scripts/bench_generate.py --model points --checkpoint "$CKPT" --device "$DEV" \
    --threads 2 --batch $B8 --repeats 1 --quality $q --quality-categories "$QCATS" --quality-n $QN --machine "$DEV" &
done
wait
}

[[ "$PHASES" != *B* ]] || {
BENCH="$PY scripts/bench_generate.py --model points --checkpoint $CKPT --device $DEV --threads 1 --direct --steps 25"
step speed_b64 90 $BENCH --batch $B64 --repeats $REP --machine "$DEV"
step speed_b8 60 $BENCH --batch $B8 --repeats $REP --machine "$DEV"
}

write_results "$OUT/results.json"
