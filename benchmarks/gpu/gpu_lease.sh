#!/usr/bin/env bash
# The whole CUDA check in one call on a GPU machine without a package index (benchmarks/README.md,
# "The CUDA check"): run from the checkout's root once every piece of `gpu_check.py pack` is in
# /tmp/ch. Writes into $OUT (default gpu-out/), by step (STEPS, default tests,check,quick,shapes:
# about 4 minutes on an H200):
#   tests     pytest-gpu.txt: the GPU test tier against the carried export and torch folder
#   check     check.json: gpu_check.py run: parity, overlap against the plain loop, end-to-end speed
#   quick     CUDA-quick.md/.json: benchmarks/run.py --device cuda --installed --quick:
#             gist-onnx fp16 against sentence-transformers fp32 and fp16 on the same GPU
#   shapes    shapes.json: what a new input shape costs (gpu_check.py shapes)
#   settings  settings.json: the same under session settings, one profiled by operator
#   run       CUDA.md/.json: run.py's full mode (--repeats 3, with STS-B): over 5 minutes there,
#             each torch process taking ~15 s to start; a call of its own
# Each step has its own time limit, and a failed step does not stop the next; the exit status is
# the first failure's. GPU_FOLDER names an unpacked folder instead of /tmp/ch's pieces (to try the
# script on a CPU: GPU_FOLDER=DIR DEVICE=cpu VARIANT=fp32 STACKS=st-torch,gist-fp32, with a
# `prepare --variant fp32 --weights` folder).
set -uo pipefail
out="${OUT:-gpu-out}"
folder="${GPU_FOLDER:-/tmp/gpu}"
device="${DEVICE:-cuda}"
variant="${VARIANT:-fp16}"
stacks="${STACKS:-st-torch,st-torch-fp16,gist-fp16}"
steps="${STEPS:-tests,check,quick,shapes}"
want() { [[ ",$steps," == *",$1,"* ]]; }
mkdir -p "$out"
status=0
step() {  # step NAME LOG LIMIT COMMAND...: run it into $out/LOG, time it, keep the first failure
    local name=$1 log=$2 limit=$3 start rc
    shift 3
    start=$(date +%s)
    timeout "$limit" "$@" > >(tee "$out/$log") 2>&1
    rc=$?
    echo "== $name: exit $rc in $(($(date +%s) - start)) s" | tee -a "$out/steps.txt"
    [ "$rc" -ne 0 ] && [ "$status" -eq 0 ] && status=$rc
    return 0
}

if [ -z "${GPU_FOLDER:-}" ]; then
    python3 benchmarks/gpu/gpu_check.py unpack || exit 1
    export PYTHONPATH=/tmp/site:.
else
    export PYTHONPATH=.
fi
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv >"$out/gpu.txt" 2>&1
python3 -c 'import onnxruntime as o; print(o.__version__, o.get_available_providers())' \
    >>"$out/gpu.txt" 2>&1
# -W default: the machine's own library versions may warn where ours do not (pyproject: error)
want tests && step "GPU test tier" pytest-gpu.txt 240 env GIST_TEST_EXPORT="$folder/model" \
    GIST_TEST_STAND_IN="$folder/torch" python3 -m pytest -m gpu tests/test_parity.py \
    -p no:cacheprovider -W default -v
want run && step "run.py --device $device --installed" run.txt 540 env GIST_BENCH_WORK=/tmp/gist-bench \
    python3 benchmarks/run.py --device "$device" --installed --repeats 3 --model "$folder/model" \
    --source "$folder/torch" --stacks "$stacks" \
    --output "$out/CUDA.md"
want check && step "gpu_check.py run" check.txt 200 python3 benchmarks/gpu/gpu_check.py run --folder "$folder" \
    --device "$device" --variant "$variant" --report "$out/check.json"
want shapes && step "gpu_check.py shapes" shapes.txt 200 python3 benchmarks/gpu/gpu_check.py shapes \
    --folder "$folder" --device "$device" --variant "$variant" --report "$out/shapes.json"
want settings && step "gpu_check.py shapes --settings" settings.txt 150 python3 \
    benchmarks/gpu/gpu_check.py shapes --settings --folder "$folder" --device "$device" \
    --variant "$variant" --report "$out/settings.json"
want quick && step "run.py --quick" quick.txt 200 env GIST_BENCH_WORK=/tmp/gist-bench \
    python3 benchmarks/run.py --device "$device" --installed --quick --model "$folder/model" \
    --source "$folder/torch" --stacks "$stacks" --output "$out/CUDA-quick.md"
exit "$status"
