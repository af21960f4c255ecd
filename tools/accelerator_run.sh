#!/usr/bin/env bash
# One command for an air-gapped accelerator host, run from the repository root after
# `python -m tools.accelerator_bundle` wrote bundle/ (it travels with the checkout):
#
#   bash tools/accelerator_run.sh OUT_DIR
#
# Installs bundle/wheels into bundle/site (pip --no-index --target: the host's own environment
# is left alone), prints the versions it finds, then, each stage with its own time limit and
# the whole under one limit of DIFFMTL_ACCEL_LIMIT seconds (default 540, 9 minutes):
#   1. the tests that need neither TensorFlow nor a slow mark (pytest -m "not slow"),
#   2. benchmarks/dit_accelerator.py: DiT-S/2 and DiT-B/2 step time, MFU and memory,
#   3. the pilot (benchmarks/reproduce_accelerator.py --mode=pilot): vanilla and ANT-Nash-MTL at
#      2e-3 and 4e-3, as many steps as fit in the time left, then FID_FMNIST.
# Everything goes to OUT_DIR as it happens (run.log, versions.json, tests.xml, dit.jsonl,
# pilot_plan.json, pilot_results.json, pilot_report.md, stages.json), so a run cut short still
# leaves its figures. DIFFMTL_ACCEL_PROFILE=cpu shrinks every stage for the CPU rehearsal
# (tests/test_accelerator_rehearsal.py); PYTHON picks the interpreter (default python3).
set -uo pipefail

OUT=$(mkdir -p "${1:?usage: bash tools/accelerator_run.sh OUT_DIR}" && cd "$1" && pwd)
LIMIT=${DIFFMTL_ACCEL_LIMIT:-540}
if [ -z "${DIFFMTL_ACCEL_INNER:-}" ]; then  # the whole run under one limit
  DIFFMTL_ACCEL_INNER=1 exec timeout --kill-after=10 "$LIMIT" bash "$0" "$@"
fi
PYTHON=${PYTHON:-python3}
ROOT=$(pwd)
WORK=${DIFFMTL_ACCEL_WORKDIR:-$(mktemp -d /tmp/diffmtl_accelerator.XXXXXX)}  # checkpoints
exec > >(tee -a "$OUT/run.log") 2>&1
export DIFFMTL_FASHION_MNIST_DIR="$ROOT/bundle/fashion-mnist"
export PYTHONPATH="$ROOT/bundle/site:$ROOT${PYTHONPATH:+:$PYTHONPATH}"
export TF_CPP_MIN_LOG_LEVEL=3

if [ "${DIFFMTL_ACCEL_PROFILE:-gpu}" = cpu ]; then
  TESTS=(tests/test_events.py tests/test_clustering.py)
  DIT=(--variants=DiT-Ti/4 --batch_sizes=10 --steps=1 --dtypes=float32)
  PILOT=(--scale=cpu --pilot_samples=100 --pilot_round=2 --timing_steps=2)
  TESTS_S=240 DIT_S=300 PILOT_RESERVE_S=60 PILOT_TRAIN_S=30  # a loaded 2-core CI machine
else
  TESTS=(tests)
  DIT=(--variants=DiT-S/2,DiT-B/2 --batch_sizes=50,50 --steps=5 --dtypes=bfloat16,float32)
  PILOT=(--scale=accelerator --pilot_samples=2000)
  TESTS_S=75 DIT_S=100 PILOT_RESERVE_S=100  # reserve: compiles, timing and the four FIDs
fi

STAGES="$OUT/stages.json"
echo "{}" > "$STAGES"
stage() {  # stage NAME SECONDS COMMAND...: runs it under its own limit, records rc and time
  local name=$1 seconds=$2 start=$SECONDS rc
  shift 2
  echo "== $name (limit ${seconds}s, $((LIMIT - SECONDS))s left): $*"
  timeout --kill-after=5 "$seconds" "$@"
  rc=$?
  "$PYTHON" - "$STAGES" "$name" "$rc" "$((SECONDS - start))" <<'EOF'
import json, sys
path, name, rc, seconds = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
stages = json.load(open(path))
stages[name] = {"rc": rc, "seconds": seconds, "timed_out": rc in (124, 137)}
json.dump(stages, open(path, "w"), indent=1)
EOF
  echo "== $name: rc $rc after $((SECONDS - start))s"
}

stage install 60 "$PYTHON" -m pip install --quiet --no-index --find-links bundle/wheels \
  --target bundle/site --upgrade -r bundle/requirements.txt
stage versions 60 "$PYTHON" -c "
import json, jax
from diffmtl.training import run_info
info = run_info.run_info()
info['default_backend'] = jax.default_backend()
info['device_kind'] = jax.devices()[0].device_kind
json.dump(info, open('$OUT/versions.json', 'w'), indent=1)
print(json.dumps(info, indent=1))"
stage tests "$TESTS_S" "$PYTHON" -m pytest -q -m "not slow" \
  --junitxml="$OUT/tests.xml" "${TESTS[@]}"
stage dit "$DIT_S" bash -c \
  "set -o pipefail; '$PYTHON' -m benchmarks.dit_accelerator ${DIT[*]} | tee '$OUT/dit.jsonl'"
LEFT=$((LIMIT - SECONDS - 15))
stage pilot "$LEFT" "$PYTHON" -m benchmarks.reproduce_accelerator --mode=pilot "${PILOT[@]}" \
  --pilot_train_seconds="${PILOT_TRAIN_S:-$((LEFT - PILOT_RESERVE_S))}" --out="$OUT" \
  --workdir="$WORK" --compile_cache="$WORK/jax_cache"
cp "$WORK/pilot/results.md" "$OUT/pilot_report.md" 2>/dev/null
echo "== done in ${SECONDS}s; figures in $OUT"
