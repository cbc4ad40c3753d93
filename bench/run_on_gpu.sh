#!/usr/bin/env bash
# Everything the Triton issue measures on a lent GPU (issue 6): the triton tests compiled on the
# device (gpu-marked ones included), a MAML run on --backend triton, `innerloop bench` against
# eager and CUDA-graphed torch.func, the precision / launch-tuning sweep of the fused
# meta-gradient, and a markdown summary of both against the targets (gpu-summary.md).
#   bash bench/run_on_gpu.sh OUT_DIR                    (repository root; python3 with torch + triton)
#   STEPS=tests,train bash bench/run_on_gpu.sh OUT_DIR  (some steps only: tests, train, bench, tune, report)
# Each step has its own time limit so that one slow step cannot starve the others (the bench one
# allows for its fresh process, CUDA context and cached Triton kernels per case); all steps take
# about 15 minutes, so a machine that allows 10 minutes a command runs them in two calls, e.g.
# STEPS=tests,train,bench and then STEPS=tune,report into the same OUT_DIR. Images without
# snntorch: put its wheel in .whl/ (pip download --no-deps snntorch -d .whl) and carry it.
set -u
out=${1:-bench/results}
steps=",${STEPS:-tests,train,bench,tune,report},"
mkdir -p "$out"
export PYTHONUNBUFFERED=1
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site
fi
python3 -m pip install -q --no-deps --no-build-isolation --no-index -e . || exit 1
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,temperature.gpu --format=csv
python3 -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__)"
if [[ $steps == *,tests,* ]]; then
  timeout "${PYTEST_LIMIT:-300}" python3 -m pytest tests/test_triton_backend.py tests/test_mlp_inputs.py \
    tests/test_cuda_graphs.py -m "gpu or not gpu" -q -p no:cacheprovider -k "${PYTEST_K:-not compile_for_sm90}" \
    2>&1 | tee "$out/gpu-pytest.log" | tail -25
fi
if [[ $steps == *,train,* ]]; then
  timeout "${TRAIN_LIMIT:-90}" bash -c "python3 -m innerloop train --algo maml --task sinusoid --backend triton \
    --backend-option cuda_graphs=true --iters 300 --meta-batch 25 --out /tmp/triton-run --quiet \
    && python3 -m innerloop eval /tmp/triton-run --quiet && cp /tmp/triton-run/adaptation.png '$out/gpu-triton-run-adaptation.png'"
fi
if [[ $steps == *,bench,* ]]; then
  timeout "${BENCH_LIMIT:-300}" python3 -m innerloop bench --device cuda --quiet --name gpu-sinusoid --out "$out" \
    --implementations torch.func,torch.func+graph,torch,torch-fused,triton,triton-cuda-graphs,triton+graph \
    --batches "${BENCH_BATCHES:-1,64,1024}" --memory-steps "${MEMORY_STEPS:-1,5,10}"
fi
if [[ $steps == *,tune,* ]]; then
  timeout "${TUNE_LIMIT:-300}" python3 -m innerloop.bench.triton_tuning --name gpu-triton-tuning --out "$out" \
    --precisions "${TUNE_PRECISIONS:-tf32x3,tf32,ieee}" --programs-per-sm "${TUNE_GRID:-1,4,0}" \
    --warps "${TUNE_WARPS:-4,8}" --max-registers "${TUNE_REGISTERS:-0,128}"
fi
if [[ $steps == *,report,* ]]; then  # the README's tables and the targets (the tuning file if it finished)
  tuning="$out/gpu-triton-tuning.json"; [ -f "$tuning" ] || tuning=""
  python3 -m innerloop.bench.gpu_report "$out/gpu-sinusoid.json" $tuning | tee "$out/gpu-summary.md"
fi
