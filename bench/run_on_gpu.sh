#!/usr/bin/env bash
# Everything the Triton issue measures on a lent GPU, in one call (issue 6): the triton tests
# compiled on the device (gpu-marked ones included), `innerloop bench` against eager and
# CUDA-graphed torch.func, the precision / launch-tuning sweep of the fused meta-gradient, and a
# markdown summary of both against the targets (gpu-summary.md).
#   bash bench/run_on_gpu.sh OUT_DIR        (repository root; python3 with torch + triton)
# Each step has its own time limit so that one slow step cannot starve the others (the bench one
# allows for its fresh process, CUDA context and cached Triton kernels per case). Images without
# snntorch: put its wheel in .whl/ (pip download --no-deps snntorch -d .whl) and carry it.
set -u
out=${1:-bench/results}
mkdir -p "$out"
export PYTHONUNBUFFERED=1
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site
fi
python3 -m pip install -q --no-deps --no-build-isolation --no-index -e . || exit 1
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,temperature.gpu --format=csv
python3 -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__)"
timeout "${PYTEST_LIMIT:-150}" python3 -m pytest tests/test_triton_backend.py tests/test_mlp_inputs.py -m "gpu or not gpu" -q -p no:cacheprovider \
  -k "${PYTEST_K:-not compile_for_sm90}" 2>&1 | tee "$out/gpu-pytest.log" | tail -25
timeout "${TRAIN_LIMIT:-90}" bash -c "python3 -m innerloop train --algo maml --task sinusoid --backend triton \
  --iters 300 --meta-batch 25 --out /tmp/triton-run --quiet && python3 -m innerloop eval /tmp/triton-run --quiet \
  && cp /tmp/triton-run/adaptation.png '$out/gpu-triton-run-adaptation.png'"
timeout "${BENCH_LIMIT:-300}" python3 -m innerloop bench --device cuda --quiet --name gpu-sinusoid --out "$out" \
  --implementations torch.func,torch.func+graph,torch,torch-fused,triton,triton-cuda-graphs,triton+graph \
  --batches "${BENCH_BATCHES:-1,64,1024}" --memory-steps "${MEMORY_STEPS:-1,5,10}"
timeout "${TUNE_LIMIT:-300}" python3 -m innerloop.bench.triton_tuning --name gpu-triton-tuning --out "$out" \
  --precisions "${TUNE_PRECISIONS:-tf32x3,tf32,ieee}" --programs-per-sm "${TUNE_GRID:-1,4,0}" \
  --warps "${TUNE_WARPS:-4,8}" --max-registers "${TUNE_REGISTERS:-0,128}"
# The README's tables and the targets from the two JSON files (the tuning one if it finished)
tuning="$out/gpu-triton-tuning.json"; [ -f "$tuning" ] || tuning=""
python3 -m innerloop.bench.gpu_report "$out/gpu-sinusoid.json" $tuning | tee "$out/gpu-summary.md"
