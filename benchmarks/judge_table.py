"""The judge's table: bundles × samplers, each judged against held-out real pairs.

Runs ``ubdiff-onnx evaluate --bundle B --judge J --data HELDOUT -n N --sampler S --steps K --no-physics``
for every (bundle, sampler) — the same x_T for every bundle — and writes one Markdown table of
pairwise SSIM (OpenFWI convention) and the seismic / velocity Fréchet distances, with the real pairs'
ceiling and floors as the first row (they do not depend on the bundle; the table takes them from the
first run and checks the others agree).

Usage: python benchmarks/judge_table.py OUT JUDGE HELDOUT NAME=BUNDLE [NAME=BUNDLE ...]
       [--samples 512] [--samplers unipc:10,ddim:50,ddpm:256] [--seed 0] [--physics]
e.g.   python benchmarks/judge_table.py results/judge-quickstart quickstart-out/judge quickstart-out/heldout-data \
           FP32=quickstart-out/bundles/fp32 "QDQ (QAT)=quickstart-out/bundles/qdq" "QDQ (PTQ)=quickstart-out/bundles/qdq-ptq"
Writes OUT/<name>-<sampler>/evaluate.{json,md} (reused by a rerun), OUT/table.md and OUT/table.json.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("out", type=Path)
    p.add_argument("judge", type=Path)
    p.add_argument("heldout", type=Path)
    p.add_argument("bundles", nargs="+", help="NAME=BUNDLE_DIR")
    p.add_argument("--samples", type=int, default=512)
    p.add_argument("--samplers", default="unipc:10,ddim:50,ddpm:256")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--physics", action="store_true", help="also forward-model every pair (slow: ~0.07 s a pair)")
    a = p.parse_args()
    from ubdiff_onnx._source_tree import python_module_command

    bundles = [b.split("=", 1) for b in a.bundles]
    if any(len(b) != 2 for b in bundles):
        sys.exit("error: bundles are NAME=BUNDLE_DIR")
    samplers = [(s.split(":")[0], int(s.split(":")[1])) for s in a.samplers.split(",")]
    a.out.mkdir(parents=True, exist_ok=True)
    rows, real, seconds = [], None, {}
    for sampler, steps in samplers:
        for name, bundle in bundles:
            slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") + f"-{sampler}{steps}"
            rep_path = a.out / slug / "evaluate.json"
            if not rep_path.exists():
                t0 = time.perf_counter()
                cmd = python_module_command("ubdiff_onnx", "evaluate", "--bundle", bundle, "--judge", str(a.judge), "--data", str(a.heldout),
                                            "-n", str(a.samples), "--sampler", sampler, "--steps", str(steps), "--seed", str(a.seed),
                                            "--batch-size", "16", "--num-real", str(min(a.samples, 256)), "--out", str(a.out / slug),
                                            *([] if a.physics else ["--no-physics"]))
                print(f"{name} · {sampler}-{steps}", flush=True)
                r = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
                if r.returncode != 0:
                    sys.exit(f"error: evaluate {name} {sampler}-{steps} failed: {r.stderr.strip().splitlines()[-1:]}")
                seconds[slug] = round(time.perf_counter() - t0, 1)
            rep = json.loads(rep_path.read_text())
            jd = rep["judge"]
            floors = (jd["pairwise_ssim"]["real_ceiling"]["mean"], jd["frechet"]["seismic"]["real_floor"], jd["frechet"]["velocity"]["real_floor"])
            if real is None:
                real = floors
            elif max(abs(x - y) for x, y in zip(real, floors)) > 1e-9:
                print(f"warning: {slug}: real ceiling/floors differ from the first run's ({floors} vs {real})", file=sys.stderr)
            phys = (rep.get("physics") or {}).get("bundle", {}).get("rel_l2", {}).get("mean")
            rows.append({"bundle": name, "sampler": f"{sampler}-{steps}", "pairwise_ssim": jd["pairwise_ssim"]["bundle"]["mean"],
                         "frechet_seismic": jd["frechet"]["seismic"]["bundle"], "frechet_velocity": jd["frechet"]["velocity"]["bundle"],
                         "physics_rel_l2": phys, "n": jd["n_generated"], "frechet_count": jd["frechet_count"]})
    j = json.loads(rep_path.read_text())["judge"]  # the last run's; ceiling and floors checked equal above
    head = (f"{rows[0]['n']} generated samples per row from the same x_T (seed {a.seed}); held-out real pairs `{a.heldout}` "
            f"({j['n_real']}: the ceiling on all, the floors {j['frechet_count']} vs {j['frechet_count']}); judge `{a.judge}`.")
    L = [head, "", "| pairs | sampler | pairwise SSIM (OpenFWI) | Fréchet seismic | Fréchet velocity |" + (" physics rel L2 |" if a.physics else ""),
         "|---|---|---:|---:|---:|" + ("---:|" if a.physics else ""),
         f"| real (ceiling / floor) | – | {real[0]:.4f} | {real[1]:.4g} | {real[2]:.4g} |" + (" |" if a.physics else "")]
    for r in rows:
        L.append(f"| {r['bundle']} | {r['sampler']} | {r['pairwise_ssim']:.4f} | {r['frechet_seismic']:.4g} | {r['frechet_velocity']:.4g} |"
                 + (f" {r['physics_rel_l2']:.4g} |" if a.physics else ""))
    (a.out / "table.md").write_text("\n".join(L) + "\n")
    (a.out / "table.json").write_text(json.dumps({"real": {"pairwise_ssim": real[0], "frechet_seismic_floor": real[1], "frechet_velocity_floor": real[2]},
                                                  "rows": rows, "seconds": seconds, "judge": j["judge"]}, indent=2) + "\n")
    print("\n".join(L))


if __name__ == "__main__":
    main()
