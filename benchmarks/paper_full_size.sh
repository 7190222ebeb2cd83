#!/usr/bin/env bash
# Full-size check of the `paper` preset on one machine: FP32 / QDQ (from QAT scales) / QDQ+int4 /
# TorchScript exports with their validation and sizes, then `ubdiff-onnx bench` at 1 and 2 threads.
# Usage: bash benchmarks/paper_full_size.sh WORK_DIR REPORT_DIR [PYTHON]
#   WORK_DIR   holds the checkpoints and bundles (~4 GB); REPORT_DIR gets sizes.json, export.log, bench.*
set -euo pipefail
work=${1:?WORK_DIR}; report=${2:?REPORT_DIR}; py=${3:-python}
mkdir -p "$work" "$report"
export PYTHONUNBUFFERED=1
"$py" benchmarks/export_sizes.py "$work" --torchscript 2>&1 | grep -v "W:onnxruntime" | tee "$report/export.log" || true
cp "$work/sizes.json" "$report/sizes.json"
bundles=()
for b in fp32 qdq int4 ts; do if [ -f "$work/paper-$b/manifest.json" ]; then bundles+=("$work/paper-$b"); fi; done
"$py" -m ubdiff_onnx bench "${bundles[@]}" \
  --threads 1,2 --steps 50 --repeat 30 --rounds 3 --no-ddpm --out "$report/bench" 2>&1 | tail -40
