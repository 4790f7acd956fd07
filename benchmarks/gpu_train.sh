#!/usr/bin/env bash
# Run benchmarks/train.py on a CUDA GPU and append its tables to benchmarks/RESULTS.md.
#
#   bash benchmarks/gpu_train.sh                      # every backbone, then one epoch end to end
#   bash benchmarks/gpu_train.sh --backbones ma_cnn_gesture sma_vgg8 --no-epoch
#   bash benchmarks/gpu_train.sh --download-wheels    # (on a machine with PyPI) see below
#
# Arguments other than the two above go to benchmarks/train.py (--backbones, --variants,
# --warmup, --steps, --epoch-data, --epoch-set precision=bf16, ...).
#
# On a machine without the project's environment (this workplace's device machine: torch and
# triton are there, the network is not), the missing packages travel as wheels in .whl/:
#   1. here, once:   echo /.whl/ >> .git/info/exclude; bash benchmarks/gpu_train.sh --download-wheels
#   2. the device run, carrying ".whl":   bash benchmarks/gpu_train.sh
# A 10-minute call may not hold every backbone (compile of MS-ResNet-104 alone takes minutes):
# split it, e.g. `--backbones ma_cnn_gesture ma_cnn_gait sma_vgg8` with the epoch, then
# `--backbones gac_ms_resnet18_cifar ms_resnet104 --no-epoch`. Each call's tree is sent anew:
# copy $OUT/RESULTS.md over benchmarks/RESULTS.md after each call.
set -euo pipefail
cd "$(dirname "$0")/.."

# What the device image lacks (KINDS.md lists what it has): SpikingJelly for its column, tonic
# and jsonschema for spikeattn's data and params modules.
WHEELS=(spikingjelly==2.0.0 "loguru>=0.7,<1" tonic==1.7.0 importRosbag jsonschema
        jsonschema-specifications referencing rpds-py)

if [[ "${1:-}" == "--download-wheels" ]]; then
    python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
        --platform manylinux2014_x86_64 -d .whl "${WHEELS[@]}"
    exit 0
fi

if compgen -G ".whl/*.whl" >/dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site .whl/*.whl
    export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi

PY=${PYTHON:-python3}
if [[ -z "${PYTHON:-}" && -x .venv/bin/python ]]; then PY=.venv/bin/python; fi
export PYTHONUNBUFFERED=1

epoch=(--epoch)
args=()
for a in "$@"; do
    if [[ "$a" == "--no-epoch" ]]; then epoch=(); else args+=("$a"); fi
done

"$PY" - <<'EOF'
import torch
assert torch.cuda.is_available(), "benchmarks/gpu_train.sh needs a CUDA GPU"
print(torch.cuda.get_device_name(), "torch", torch.__version__, flush=True)
EOF
nvidia-smi --query-gpu=name,memory.total,clocks.max.sm --format=csv,noheader || true

results=benchmarks/RESULTS.md
status=0
"$PY" benchmarks/train.py "${epoch[@]}" --append "$results" "${args[@]}" || status=$?
if [[ -n "${OUT:-}" ]]; then cp "$results" "$OUT/RESULTS.md"; fi
exit $status
