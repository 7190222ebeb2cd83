#!/usr/bin/env bash
# `paper`-size INT8 check across CPU families (docs/int8-cpus.md): FP32, QDQ from QAT scales and
# PTQ QDQ exports (default 7-bit weights) with their validation on this host, the QDQ bundles'
# validation re-run under an emulated AVX2-only x86 (qemu-x86_64 -cpu Haswell; numbers only, never
# speed), then `bench` FP32 vs QDQ at 1 and 2 threads on this host, and the component speed-ups on
# this host's kernels and (on an AVX-512 host) on onnxruntime's AVX2 kernels side by side
# (benchmarks/int8_kernel_speed.py; the AVX2 column is a proxy for an AVX2-only CPU, see avx2_kernels.py).
# Usage: bash benchmarks/int8_cpus_paper.sh WORK_DIR REPORT_DIR CALIBRATION_DATA [PYTHON]
set -euo pipefail
work=${1:?WORK_DIR}; report=${2:?REPORT_DIR}; data=${3:?CALIBRATION_DATA}; py=${4:-python}
mkdir -p "$work" "$report"
export PYTHONUNBUFFERED=1
grep -m1 '^flags' /proc/cpuinfo | tr ' ' '\n' | grep -E '^(avx2|avx512f|avx512bw|avx512_vnni|avx_vnni|amx_int8)$' | tr '\n' ' ' > "$report/cpu_flags.txt" || true
grep -m1 '^model name' /proc/cpuinfo >> "$report/cpu_flags.txt" || true
"$py" -c "import sys; sys.path.insert(0, 'benchmarks'); from pathlib import Path; from export_sizes import make_checkpoints; make_checkpoints(Path('$work'))"
ex() { # name checkpoint args...
  local name=$1 ckpt=$2; shift 2
  if [ ! -f "$work/$name/manifest.json" ]; then
    local t0=$SECONDS
    "$py" -m ubdiff_onnx export "$work/$ckpt" "$work/$name" --overwrite "$@" 2>&1 | grep -v "W:onnxruntime" | tail -12
    echo "$name: $((SECONDS - t0)) s" | tee -a "$report/export_seconds.txt"
  fi
}
ex paper-fp32 paper.pt --format fp32
ex paper-qdq paper-qat.pt --format qdq
ex paper-ptq paper.pt --format qdq --calibrate "$data"
"$py" - "$work" > "$report/validation.json" <<'EOF'
import json, sys
from pathlib import Path
out = {}
for name in ("paper-fp32", "paper-qdq", "paper-ptq"):
    man = json.loads((Path(sys.argv[1]) / name / "manifest.json").read_text())
    out[name] = {"validation": man.get("validation"), "against_fp32": man.get("validation_against_fp32"),
                 "int8": man.get("int8"), "bytes": {c: v["bytes"] for c, v in man["components"].items()}}
print(json.dumps(out, indent=2))
EOF
{ timeout 1800 "$py" benchmarks/validate_emulated.py "$work/paper-qat.pt" "$work/paper-qdq" --family haswell || true
  timeout 1800 "$py" benchmarks/validate_emulated.py "$work/paper.pt" "$work/paper-ptq" --family haswell --ptq || true
} 2>&1 | tee "$report/validation_haswell.txt"
"$py" -m ubdiff_onnx bench "$work/paper-fp32" "$work/paper-qdq" \
  --threads 1,2 --steps 50 --repeat 20 --rounds 2 --no-ddpm --out "$report/bench" 2>&1 | tail -30
"$py" benchmarks/int8_kernel_speed.py "$work/paper-fp32" "$work/paper-qdq" --out "$report/kernel-speed" --rounds 5 --repeat 40 2>&1 | tail -12
