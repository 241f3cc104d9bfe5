#!/usr/bin/env bash
# The GPU check (benchmarks/gpu_check.py): every piece of a job on one GPU in about 5 minutes, without Ray or W&B.
#
#   benchmarks/gpu_check.sh --device cuda --out gpu_check           # one H100/H200: gpu_check/gpu_check.{json,md}
#   benchmarks/gpu_check.sh --device cpu --quick --out /tmp/check   # the same end to end on a CPU, tiny (CI)
#
# A bare GPU machine has torch and Lightning but not Hydra: when `import hydra` fails, the wheels in .whl (or
# HARNESS_WHEELS; `make gpu-wheels` downloads them here) are installed into /tmp/harness-site first.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${HARNESS_PYTHON:-python3}
if ! "$PY" -c "import hydra, omegaconf" 2>/dev/null; then
    WHEELS=${HARNESS_WHEELS:-.whl}
    if ! compgen -G "$WHEELS/*.whl" >/dev/null; then
        echo "error: hydra-core is not installed and $WHEELS holds no wheels; run \`make gpu-wheels\` and carry $WHEELS" >&2
        exit 2
    fi
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/harness-site \
        "$WHEELS"/*.whl
    export PYTHONPATH=/tmp/harness-site${PYTHONPATH:+:$PYTHONPATH}
fi
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1 WANDB_MODE=disabled
exec "$PY" -m benchmarks.gpu_check "$@"
