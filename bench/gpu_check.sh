#!/usr/bin/env bash
# GPU check of issue 6 (at most ~5 minutes on a CUDA machine), run from the repo root after `pip install -e .`:
#
#     bash bench/gpu_check.sh [OUT_DIR]
#
# 1. the fusion trainer on CUDA at batch 1024: the legacy notebook's per-sample DataLoader loop vs fusion_nb.train.fit
#    with its default captured CUDA-graph step (cuda_graph=auto) beside fit eager (cuda_graph=off; the `path` column says
#    how each step ran)
#    (samples/s, speed-up, fp32 matmul rate of the GPU and our share of it) and predict_proba throughput;
# 2. the default smoke pipeline (simulate -> views -> heads + single-view twins + trees -> report) on the GPU via
#    fusion_nb.experiment.run_experiment(smoke=True, device='cuda');
# 3. both encoders under torchrun with NCCL and DistributedDataParallel on every GPU of the machine (`views`, 100k
#    simulated transactions), once full-batch and once with the GNN on sampled mini-batches (--gnn-fanout 10,10).
#    With one GPU that is one rank (NCCL initialised, no all-reduce): NCCL refuses two ranks on one device;
# 4. the default run's 9 heads (Gated x 3 views x 3 seeds, width 64, batch 1024) one at a time with fit vs stacked
#    with fusion_nb.stack.fit_stacked (bench/stacked_step.py, issue 13): sample-models/s side by side; both loops run
#    the captured step by default (`path` column);
# 5. the training step (bench/cuda_step.py, issue 13): eager vs captured CUDA graph vs torch.compile, fp32 vs bf16, and
#    9 stacked heads eager vs captured; then the CUDA tests of nbs/06b_cuda_step.ipynb;
# 6. the Trees baseline's XGBoost on CUDA vs CPU (bench/trees_gpu.py, issue 15) and the graph encoders HybridGNN vs
#    MultiGINE vs MultiPNA on the simulator (bench/multignn_ablation.py, issue 15): fit times and validation AP;
# 7. the default run (fusion-nb run --model Gated) with its heads one at a time and stacked: wall and stage times;
# 8. the whole pipeline at PIPELINE_ROWS transactions (bench/pipeline.py; default 6,360,000, the PaySim size; several
#    minutes; SKIP_PIPELINE=1 skips it): per-stage seconds, the head fit among them.
# Figures are printed and written under OUT_DIR (default outputs/bench/<timestamp>_gpu/).
# Settings via the environment: DEVICE (default cuda), ROWS (training rows, default 1000000), HIDDEN (head widths,
# default "64 256"), SCORE_ROWS (default 1000000), THREADS (CPU threads, default 4), PIPELINE_ROWS, SKIP_PIPELINE. Each step has a time limit; a step
# that fails or runs out of time is reported and the next one still runs (exit status 1 at the end).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
DEVICE=${DEVICE:-cuda}
ROWS=${ROWS:-1000000}
THREADS=${THREADS:-4}
HIDDEN=${HIDDEN:-64 256}
SCORE_ROWS=${SCORE_ROWS:-1000000}
PIPELINE_ROWS=${PIPELINE_ROWS:-6360000}
FAILED=""
OUT=${1:-outputs/bench/$(date +%Y%m%d-%H%M%S)_gpu}
if [ -e "$OUT" ] && [ -n "$(ls -A "$OUT" 2>/dev/null)" ]; then echo "gpu_check: $OUT exists and is not empty; pass a new folder." >&2; exit 2; fi
mkdir -p "$OUT"
START=$(date +%s)

echo "== environment =="
$PY - "$DEVICE" <<'PY'
import sys, os, torch, fusion_nb
device = sys.argv[1]
print(f'fusion_nb {fusion_nb.__version__}, torch {torch.__version__}, CUDA available: {torch.cuda.is_available()}, '
      f'load average {os.getloadavg()}')
if torch.cuda.is_available(): print('GPU:', torch.cuda.get_device_name(0), f'{torch.cuda.get_device_properties(0).total_memory / 2**30:.0f} GiB')
if device.startswith('cuda') and not torch.cuda.is_available():
    sys.exit('gpu_check: DEVICE=cuda but torch sees no CUDA device (CPU-only torch build or no driver). '
             'Install a CUDA build of torch, or run DEVICE=cpu bash bench/gpu_check.sh to exercise the script on the CPU.')
PY
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.used,memory.total,utilization.gpu --format=csv || true

echo; echo "== 1. fusion trainer on $DEVICE: legacy DataLoader vs fusion_nb fit, batch 1024; predict_proba =="
# shellcheck disable=SC2086  # HIDDEN is a list
timeout 200 $PY bench/fusion_step.py --device "$DEVICE" --threads "$THREADS" --batch-sizes 1024 --rows "$ROWS" --epochs 1 \
    --hidden-dims $HIDDEN --score-rows "$SCORE_ROWS" --out "$OUT/fusion_step" || { echo "STEP 1 FAILED or timed out (exit $?)"; FAILED="$FAILED 1"; }

echo; echo "== 2. default smoke pipeline on $DEVICE (run_experiment(smoke=True)) =="
cat > "$OUT/smoke_check.py" <<'PY'
import os, sys, time, warnings
os.environ.setdefault('TQDM_DISABLE', '1')
warnings.filterwarnings('ignore')
from fusion_nb.experiment import run_experiment
device, out, threads = sys.argv[1], sys.argv[2], int(sys.argv[3])
for stack in ('off', 'auto'):       # one head at a time, then (auto on CUDA) all heads stacked: issue 13
  t0 = time.perf_counter()
  r = run_experiment(smoke=True, device=device, output_dir=out, threads=threads, stack_heads=stack)
  env, run = r['environment'], r['run']
  print(f"--- stack_heads={stack}")
  print(f"device {env.get('device')} ({env.get('device_name')}), run {run['dir']}")
  print(f"wall {time.perf_counter() - t0:.1f} s (run duration {run['duration_s']} s); stage timings {run['timings']}")
  print(f"view timings {r['dataset'].get('view_timings')}; rows per split {r['dataset'].get('rows') or r['dataset'].get('n')}")
  for key, m in r['models'].items():
      print(f"  {key:<22} test AP {m['test']['average_precision'] if m['test']['average_precision'] is None else round(m['test']['average_precision'], 4)}"
            f"  train {m['train_time_s']:.1f} s  epochs {m['epochs']}")
  assert str(env.get('device', '')).startswith(device.split(':')[0]), f"expected the run on {device}, results say {env.get('device')}"
PY
# the library's progress bars go to $OUT/smoke_stderr.log (shown if the step fails)
timeout 120 $PY "$OUT/smoke_check.py" "$DEVICE" "$OUT/smoke" "$THREADS" 2>"$OUT/smoke_stderr.log" || {
    echo "STEP 2 FAILED or timed out (exit $?); last lines of $OUT/smoke_stderr.log:"; tail -n 15 "$OUT/smoke_stderr.log"; FAILED="$FAILED 2"; }
echo; echo "== 3. both encoders under torchrun (NCCL, DDP) on $DEVICE: full-batch and sampled GNN =="
NGPU=$($PY -c "import torch; print(max(1, torch.cuda.device_count()))")
for MODE in full sampled; do
  EXTRA=""; [ "$MODE" = sampled ] && EXTRA="--gnn-fanout 10,10 --gnn-epochs 3"
  # shellcheck disable=SC2086
  timeout 100 $PY -m torch.distributed.run --standalone --nproc_per_node="$NGPU" -m fusion_nb.distributed views --n-transactions 100000 \
      --gnn-epochs 30 --seq-epochs 1 $EXTRA --out "$OUT/views_$MODE" 2>"$OUT/views_${MODE}_stderr.log" \
    && $PY -c "import json,sys; d=json.load(open(sys.argv[1])); print('$MODE:', {k: d[k] for k in ('world_size', 'backend', 'device', 'seconds', 'timings', 'probe_val_ap', 'val_fraud_rate')})" "$OUT/views_$MODE/views.json" \
    || { echo "STEP 3 ($MODE) FAILED or timed out; last lines of $OUT/views_${MODE}_stderr.log:"; tail -n 15 "$OUT/views_${MODE}_stderr.log"; FAILED="$FAILED 3-$MODE"; }
done
echo; echo "== 4. the run's 9 heads on $DEVICE: one at a time (fit) vs stacked (fit_stacked) =="
timeout 240 $PY bench/stacked_step.py --device "$DEVICE" --threads "$THREADS" --rows "$ROWS" --epochs 1 --repeat 1 \
    --out "$OUT/stacked_step" || { echo "STEP 4 FAILED or timed out (exit $?)"; FAILED="$FAILED 4"; }
echo; echo "== 5. the training step on $DEVICE: eager vs captured CUDA graph vs torch.compile, fp32 vs bf16, 9 stacked heads =="
timeout 420 $PY bench/cuda_step.py --device "$DEVICE" --threads "$THREADS" --rows "$ROWS" --out "$OUT/cuda_step" \
    || { echo "STEP 5 FAILED or timed out (exit $?)"; FAILED="$FAILED 5"; }
if command -v nbdev-test >/dev/null; then
  timeout 300 nbdev-test nbs/06b_cuda_step.ipynb >"$OUT/cuda_step_tests.log" 2>&1 \
    && echo "nbs/06b_cuda_step.ipynb tests passed (its CUDA tests run only where torch sees a GPU)" \
    || { echo "STEP 5 (06b_cuda_step tests) FAILED or timed out; last lines of $OUT/cuda_step_tests.log:"; tail -n 25 "$OUT/cuda_step_tests.log"; FAILED="$FAILED 5-tests"; }
else echo "nbdev-test not installed (pip install -e '.[dev]'): the CUDA tests of nbs/06b_cuda_step.ipynb were not run"; fi
echo; echo "== 6. issue 15 on $DEVICE: XGBoost trees CUDA vs CPU; graph encoders HybridGNN vs MultiGINE vs MultiPNA =="
timeout 300 $PY bench/trees_gpu.py || { echo "STEP 6 (trees) FAILED or timed out (exit $?)"; FAILED="$FAILED 6-trees"; }
timeout 420 $PY bench/multignn_ablation.py --data sim --device "$DEVICE" --only HybridGNN,MultiGINE,MultiPNA --hidden 64 --epochs 100 --lr 5e-3 \
    || { echo "STEP 6 (multignn) FAILED or timed out (exit $?)"; FAILED="$FAILED 6-multignn"; }
echo; echo "== 7. the default run on $DEVICE (fusion-nb run --model Gated), heads one at a time and stacked: stage times (issue 13: at most 40 s wall) =="
for STACK in off auto; do
  T0=$(date +%s)
  if timeout 300 $PY -m fusion_nb.cli run --model Gated --device "$DEVICE" --threads "$THREADS" --stack-heads "$STACK" \
      --output-dir "$OUT/default_run_$STACK" >"$OUT/default_run_$STACK.log" 2>&1; then
    echo "stack-heads $STACK: $(( $(date +%s) - T0 )) s wall (with start-up)"; grep -E '^(stages|heads|views|trees):' "$OUT/default_run_$STACK.log" | sed 's/^/  /'
  else echo "STEP 7 ($STACK) FAILED or timed out; last lines of $OUT/default_run_$STACK.log:"; tail -n 15 "$OUT/default_run_$STACK.log"; FAILED="$FAILED 7-$STACK"; fi
done
echo; echo "== 8. the pipeline at ${PIPELINE_ROWS} transactions on $DEVICE (bench/pipeline.py): per-stage seconds (issue 13: head fit at most 10 s at 6.36M) =="
if [ "${SKIP_PIPELINE:-0}" = 1 ]; then echo "skipped (SKIP_PIPELINE=1)"
else timeout 600 $PY bench/pipeline.py --device "$DEVICE" --threads "$THREADS" --sizes "$PIPELINE_ROWS" --out "$OUT/pipeline" \
    || { echo "STEP 8 FAILED or timed out (exit $?)"; FAILED="$FAILED 8"; }; fi
echo; echo "gpu_check done in $(( $(date +%s) - START )) s; figures in $OUT${FAILED:+; FAILED steps:$FAILED}"
[ -z "$FAILED" ]
