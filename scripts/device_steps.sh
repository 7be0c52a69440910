# Sourced by the device scripts (device_check.sh, device_points_eval.sh, device_prior_trial.sh):
# the run's folders, the wheels they carry, steps under time limits (in sequence or in the
# background), and one results.json of all steps. The caller sets PY, OUT (the results folder)
# and DEADLINE (seconds from the script's start after which no step starts), then calls
# start_run, which sets LOG (a log file) and RES (a scratch folder).

start_run() {  # start_run WHEEL_DIR: results folder, empty log, scratch folder, then use_wheels
  RES=$(mktemp -d)
  mkdir -p "$OUT"
  export PYTHONUNBUFFERED=1
  LOG="$OUT/log.txt"
  : > "$LOG"
  use_wheels "$1"
}

use_wheels() {  # use_wheels DIR: install DIR/*.whl into /tmp/site (unless SKIP_INSTALL=1), set PYTHONPATH
  if [ -d "$1" ] && ls "$1"/*.whl > /dev/null 2>&1 && [ "${SKIP_INSTALL:-0}" != 1 ]; then
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
      "$1"/*.whl >> "$LOG" 2>&1 || echo "wheel install failed" | tee -a "$LOG"
    export PYTHONPATH=/tmp/site:$PWD
  else
    export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
  fi
}

step() {  # step NAME LIMIT_S CMD...: stdout → $RES/NAME.out and the log, stderr → log and terminal
  local name=$1 limit=$2; shift 2
  local left=$((DEADLINE - SECONDS))
  [ "$left" -lt "$limit" ] && limit=$left
  if [ "$limit" -lt 10 ]; then
    echo "=== $name: skipped, out of time" | tee -a "$LOG"; echo "-1 0" > "$RES/$name.rc"; return
  fi
  echo "=== $name (limit ${limit} s): $*" | tee -a "$LOG"
  local t0=$SECONDS rc
  timeout "$limit" "$@" > "$RES/$name.out" 2> >(tee -a "$LOG" >&2)
  rc=$?
  # exit status and seconds in a file: a step run in the background cannot set the caller's variables
  echo "$rc $((SECONDS - t0))" > "$RES/$name.rc"
  cat "$RES/$name.out" >> "$LOG"
  echo "=== $name: rc $rc, $((SECONDS - t0)) s" | tee -a "$LOG"
}

write_results() {  # write_results FILE: every step's exit status, seconds and output (JSON where it parses)
  "$PY" - "$RES" "$1" <<'PYEOF'
import json, sys
from pathlib import Path
res, out = Path(sys.argv[1]), {}
for rc_file in sorted(res.glob("*.rc")):
    rc, sec = rc_file.read_text().split()
    out_file = res / f"{rc_file.stem}.out"
    text = out_file.read_text() if out_file.exists() else ""
    try:
        body = json.loads(text)
    except ValueError:
        body = text[-4000:]
    out[rc_file.stem] = {"rc": int(rc), "seconds": int(sec), "output": body}
Path(sys.argv[2]).write_text(json.dumps(out, indent=1))
print(json.dumps({k: v["rc"] for k, v in out.items()}))
PYEOF
}
