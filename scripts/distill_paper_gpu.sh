#!/usr/bin/env bash
# Distil the `paper` preset's U-Net into few-step INT8 students on a GPU (issue 22), then export them.
#
# Usage: bash scripts/distill_paper_gpu.sh RUN_DIR [STUDENT_STEPS...]   (default steps: 4)
#   RUN_DIR  a `paper` run that has finished `--stage diffusion` and `--stage qat-decoders`
#            (train it with `ubdiff-onnx train RUN_DIR --data DATA --dataset NAME --preset paper
#            --stage all --device cuda`); each student goes to RUN_DIR/distill-N.pt, its bundles to
#            RUN_DIR/bundles/student-N-{fp32,int8}.
# Env:   DEVICE (cuda), NPROC (GPUs; >1 runs under torchrun), STEPS_CAP (optional --steps cap per
#        epoch, for a quick dry run), PYTHON (python).
# Recipe (training/config.py, paper): every halving round 4 × 1000 Adam steps at batch 64, lr 5e-5
# cosine, EMA 0.995 every 10 steps; then the last round again with fake-quant, 2 × 1000 steps at
# lr 8e-6. A 4-step student is 6 rounds + QAT = 26k steps. Resumable: rerun the same command.
set -euo pipefail
run=${1:?RUN_DIR}; shift
students=("${@:-4}")
py=${PYTHON:-python}; device=${DEVICE:-cuda}; nproc=${NPROC:-1}
export PYTHONUNBUFFERED=1 OMP_NUM_THREADS=${OMP_NUM_THREADS:-4}
for f in diffusion.pt qat-decoders.pt; do
  [ -f "$run/$f" ] || { echo "error: $run/$f not found: train the paper preset through --stage qat-decoders first" >&2; exit 1; }
done
if [ "$nproc" -gt 1 ]; then launch=(torchrun --standalone --nproc_per_node "$nproc" -m ubdiff_onnx); else launch=("$py" -m ubdiff_onnx); fi
cap=(); [ -n "${STEPS_CAP:-}" ] && cap=(--steps "$STEPS_CAP")
mkdir -p "$run/bundles"
for n in "${students[@]}"; do
  resume=(); [ -f "$run/distill-$n.pt" ] && resume=(--resume)
  start=$(date +%s)
  "${launch[@]}" train "$run" --stage distill --student-steps "$n" --device "$device" --no-progress "${resume[@]}" "${cap[@]}"
  echo "distill-$n: $(( $(date +%s) - start )) s on $device x$nproc" | tee -a "$run/distill-times.txt"
  "$py" -m ubdiff_onnx export "$run/distill-$n.pt" "$run/bundles/student-$n-fp32" --format fp32 --use-ema --overwrite
  "$py" -m ubdiff_onnx export "$run/distill-$n.pt" "$run/bundles/student-$n-int8" --format qdq --overwrite
done
echo "bundles in $run/bundles; evidence: python benchmarks/distill_table.py $run JUDGE HELDOUT OUT --students ${students[*]// /,}"
