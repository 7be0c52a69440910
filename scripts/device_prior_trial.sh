#!/usr/bin/env bash
# Priors for several point VAEs trained side by side on one GPU, then each scored on val: a
# paired test of which VAE's latent space the priors learn best (how MODEL.md training step 7's
# GPU trial was made). Not a way to make the shipped checkpoint: the issue asks for priors
# trained on the CPU; this only tells which CPU run is worth its hours.
#
#   scripts/device_prior_trial.sh NAME=CONFIG_JSON,VAE_SAFETENSORS [NAME=...]
#
# CONFIG_JSON is a `latentforge train points` config ({"model": ..., "train": ...});
# VAE_SAFETENSORS holds at least that model's `vae.*` weights (a whole model.safetensors will
# do: only the VAE is read). For each trial, at once on the same GPU:
#   1. `latentforge train points --stage prior` for MINUTES of wall time, with the train config's
#      prior batch and learning rate replaced by GPU_TRAIN (JSON; default batch 512, lr 1e-3);
#   2. then `python -m engine.models.points.evaluate --split val --per-category N --no-emd`:
#      N samples against the first N val shapes per category, 1-NNA-CD (CUDA draws: compare
#      trials of one call, not with CPU figures).
# The procedural training data is drawn once, one process per category, and shared.
#
# Environment: PY (python3), DEV (cuda; DEV=cpu QUICK=1 tries the plumbing without a GPU),
# MINUTES (4), N (64), GPU_TRAIN, OUT (out/device_prior_trial), WORK (/tmp/prior_trial: the data
# and the training state, hundreds of MB), DEADLINE (seconds after which no step starts; default
# 540), QUICK=1 (tiny sizes). Results: $OUT/results.json, $OUT/log.txt, and per trial
# $OUT/NAME/ckpt (the trained model) and $OUT/NAME/val.json (the evaluation).

set -u -o pipefail
cd "$(dirname "$0")/.."
PY=${PY:-python3}
DEV=${DEV:-cuda}
OUT=${OUT:-out/device_prior_trial}
DEADLINE=${DEADLINE:-540}
MINUTES=${MINUTES:-4}
N=${N:-64}
GPU_TRAIN=${GPU_TRAIN:-'{"prior_batch": 512, "prior_lr": 0.001}'}
export OMP_NUM_THREADS=1
source scripts/device_steps.sh
start_run .whl_points

SHAPES=400; CATS=
if [ "${QUICK:-0}" = 1 ]; then SHAPES=8; CATS=chair,mug; N=3; fi
CATS=${CATS:-$("$PY" -c "from engine.models.points.data import available_categories as a; print(','.join(a()))")}
WORK=${WORK:-/tmp/prior_trial}
DATA="$WORK/data"

step env 30 bash -c "nvidia-smi --query-gpu=name,memory.total --format=csv,noheader 2>/dev/null; nproc; \
  $PY -c 'import sys, torch; print(sys.version.split()[0], torch.__version__, torch.cuda.is_available())'"

# The train and in-training val sets, one process per category (the CLI would draw them in turn).
for c in ${CATS//,/ }; do
  step data_$c 120 "$PY" -c "import sys; from pathlib import Path
from engine.models.points.data import procedural_category as p
p(sys.argv[1], 'train', int(sys.argv[2]), 4096, Path(sys.argv[3])); p(sys.argv[1], 'val', 16, 4096, Path(sys.argv[3]))" \
    "$c" "$SHAPES" "$DATA" &
done
wait

trial() {  # trial NAME CONFIG VAE: train the priors, then score them on val
  local name=$1 cfg=$2 vae=$3 dir="$OUT/$1" state="$WORK/$1"
  mkdir -p "$dir/ckpt" "$state"
  ln -sfn "$(realpath "$DATA")" "$state/data"
  "$PY" - "$cfg" "$GPU_TRAIN" "$dir/train.json" "$vae" "$dir/ckpt/model.safetensors" <<'PYEOF'
import json, sys
from safetensors.torch import load_file, save_file
cfg = json.load(open(sys.argv[1]))
cfg.setdefault("train", {}).update(json.loads(sys.argv[2]), val_every_s=0, ckpt_every_s=100000)
json.dump(cfg, open(sys.argv[3], "w"), indent=1)
save_file({k: v for k, v in load_file(sys.argv[4]).items() if k.startswith("vae.")}, sys.argv[5])
PYEOF
  local quick=()
  [ "${QUICK:-0}" = 1 ] && quick=(--categories "$CATS" --shapes-per-category "$SHAPES")
  step train_$name $((DEADLINE - 60)) "$PY" -m engine.cli train points --data procedural --out "$dir/ckpt" \
    --state "$state" --config "$dir/train.json" --stage prior --device "$DEV" --prior-minutes "$MINUTES" \
    --threads 4 "${quick[@]}"
  step val_$name 240 "$PY" -m engine.models.points.evaluate --ckpt "$dir/ckpt" --split val --per-category "$N" \
    --no-emd --device "$DEV" --threads 2 --categories "$CATS" --out "$dir/val.json"
}

for t in "$@"; do
  name=${t%%=*}; rest=${t#*=}
  trial "$name" "${rest%%,*}" "${rest#*,}" &
done
wait

write_results "$OUT/results.json"
