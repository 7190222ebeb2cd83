"""The distillation evidence table (issue 22): few-step students against the teacher's samplers.

    python benchmarks/distill_table.py RUN JUDGE HELDOUT OUT [--students 1,2,4,8] [--samples 512] [--seed 0]
        [--teacher-samplers unipc:10,unipc:25,ddim:50] [--no-physics] [--threads 0]

RUN is a training run with ``diffusion.pt``, ``qat-diffusion.pt`` and ``distill-N.pt`` for every N of
``--students`` (``ubdiff-onnx train RUN --stage distill --student-steps N``); JUDGE a judge folder
(``ubdiff-onnx inversion train``), HELDOUT held-out real pairs (docs/evaluate.md). It

1. exports (once; reused by a rerun) OUT/bundles/: the teacher FP32 (``diffusion.pt --use-ema``: the
   weights the students were distilled from) and INT8 (``qat-diffusion.pt``, QAT QDQ), and for every
   student FP32 (``distill-N.pt --use-ema``: the float student) and INT8 (``distill-N.pt``: its QAT);
2. trajectory error: every row starts from the same x_T (``--samples`` of them, seed ``--seed``) and
   is compared with the teacher FP32's DDIM over all T steps (η = 0, x̂0 clipped; the reference of
   docs/sampling.md): latent RMSE, and velocity MAE in m/s with every row's latents decoded by the
   FP32 teacher's velocity decoder (the sampler's error alone) and by the row's own decoder (what a
   user gets, INT8 decoders included);
3. distribution and physics: ``ubdiff-onnx evaluate`` of every row against HELDOUT with the judge
   (pairwise SSIM, per-modality Fréchet distances with the real ceiling/floors) and, unless
   ``--no-physics``, the forward-model check (relative L2), the same x_T as step 2.
Writes OUT/table.md and OUT/table.json (and OUT/eval/<row>/evaluate.json, reused by a rerun).
Sampling uses onnxruntime + numpy only.
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

import numpy as np


def _cli(*args: str) -> list[str]:
    from ubdiff_onnx._source_tree import python_module_command

    return python_module_command("ubdiff_onnx", *args)


def _run(cmd: list[str], what: str) -> None:
    r = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    if r.returncode != 0:
        sys.exit(f"error: {what} failed: {(r.stderr.strip().splitlines() or ['no output'])[-1]}")


def export_all(run: Path, out: Path, students: list[int]) -> dict[str, Path]:
    """name → bundle folder; an export whose manifest exists is kept."""
    plan = {"teacher FP32": (run / "diffusion.pt", "fp32", True), "teacher INT8": (run / "qat-diffusion.pt", "qdq", False)}
    for n in students:
        plan[f"student-{n} FP32"] = (run / f"distill-{n}.pt", "fp32", True)
        plan[f"student-{n} INT8"] = (run / f"distill-{n}.pt", "qdq", False)
    bundles = {}
    (out / "bundles").mkdir(parents=True, exist_ok=True)
    for name, (ckpt, fmt, ema) in plan.items():
        if not ckpt.exists():
            hint = f"ubdiff-onnx train {run} --stage distill --student-steps {ckpt.stem.split('-')[1]}" if "distill" in ckpt.stem else "ubdiff-onnx train"
            sys.exit(f"error: {ckpt} not found; make it with `{hint}`")
        dst = out / "bundles" / _slug(name)
        if not (dst / "manifest.json").exists():
            print(f"export {name} ← {ckpt.name}", flush=True)
            _run(_cli("export", str(ckpt), str(dst), "--format", fmt, "--overwrite", *(["--use-ema"] if ema else [])), f"export {name}")
        bundles[name] = dst
    return bundles


def _slug(s: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", s.lower()).strip("-")


def rows_for(bundles: dict[str, Path], teacher_samplers: list[tuple[str, int]]) -> list[dict]:
    rows = []
    for prec in ("FP32", "INT8"):
        for sampler, steps in teacher_samplers:
            rows.append({"row": f"teacher {sampler}-{steps}", "precision": prec, "bundle": bundles[f"teacher {prec}"],
                         "sampler": sampler, "steps": steps})
        for name, b in bundles.items():
            if name.startswith("student-") and name.endswith(prec):
                n = int(name.split()[0].split("-")[1])
                rows.append({"row": f"student-{n}", "precision": prec, "bundle": b, "sampler": None, "steps": n})
    return rows


def trajectories(rows: list[dict], teacher: Path, samples: int, seed: int, threads: int) -> dict:
    from ubdiff_onnx.runtime.normalization import denormalize_velocity
    from ubdiff_onnx.runtime.sampler import BundleSampler

    ref_smp = BundleSampler(teacher, threads=threads)
    x_T, _ = ref_smp.initial_noise(seed, np.arange(samples))
    T = ref_smp.tables.num_timesteps

    def velocity(smp, lat):
        out = [smp.components["velocity_decoder"].run({"latent": np.ascontiguousarray(lat[i:i + 128])}) for i in range(0, len(lat), 128)]
        return denormalize_velocity(np.concatenate(out), smp.norm)

    ref = ref_smp.denoise(x_T, ref_smp.make_scheduler("ddim", T)).reshape(samples, -1)
    ref_v = velocity(ref_smp, ref)
    res = {"reference": f"teacher FP32 ddim-{T}", "samples": samples, "seed": seed, "rows": {}}
    for r in rows:
        smp = BundleSampler(r["bundle"], threads=threads)
        t0 = time.perf_counter()
        lat = smp.denoise(x_T, smp.make_scheduler(r["sampler"], None if r["sampler"] is None else r["steps"])).reshape(samples, -1)
        key = f"{r['row']} {r['precision']}"
        res["rows"][key] = {
            "latent_rmse": float(np.sqrt(np.mean((lat - ref) ** 2))),
            "velocity_mae": float(np.mean(np.abs(velocity(ref_smp, lat) - ref_v))),
            "velocity_mae_own_decoder": float(np.mean(np.abs(velocity(smp, lat) - ref_v))),
            "unet_calls": len(smp.make_scheduler(r["sampler"], None if r["sampler"] is None else r["steps"]).timesteps),
            "seconds": round(time.perf_counter() - t0, 2),
        }
        print(f"trajectory {key}: {res['rows'][key]['velocity_mae']:.2f} m/s", flush=True)
    return res


def evaluate(rows: list[dict], a) -> dict:
    out = {}
    for r in rows:
        key = f"{r['row']} {r['precision']}"
        dst = a.out / "eval" / _slug(key)
        if not (dst / "evaluate.json").exists():
            flags = [] if r["sampler"] is None else ["--sampler", r["sampler"], "--steps", str(r["steps"])]
            print(f"evaluate {key}", flush=True)
            _run(_cli("evaluate", "--bundle", str(r["bundle"]), "--judge", str(a.judge), "--data", str(a.heldout), "-n", str(a.samples),
                      "--seed", str(a.seed), "--batch-size", "16", "--num-real", str(min(a.samples, 256)), "--out", str(dst),
                      *flags, *(["--no-physics"] if a.no_physics else [])), f"evaluate {key}")
        rep = json.loads((dst / "evaluate.json").read_text())
        jd = rep["judge"]
        out[key] = {"pairwise_ssim": jd["pairwise_ssim"]["bundle"]["mean"], "frechet_seismic": jd["frechet"]["seismic"]["bundle"],
                    "frechet_velocity": jd["frechet"]["velocity"]["bundle"],
                    "physics_rel_l2": ((rep.get("physics") or {}).get("bundle", {}).get("rel_l2", {}) or {}).get("mean"),
                    "real": {"pairwise_ssim": jd["pairwise_ssim"]["real_ceiling"]["mean"], "frechet_seismic": jd["frechet"]["seismic"]["real_floor"],
                             "frechet_velocity": jd["frechet"]["velocity"]["real_floor"]}}
    return out


def markdown(traj: dict, judged: dict, a) -> str:
    real = next(iter(judged.values()))["real"] if judged else None
    L = [f"{traj['samples']} samples per row from the same x_T (seed {traj['seed']}); trajectory reference: {traj['reference']}; "
         f"run `{a.run}`, judge `{a.judge}`, held-out pairs `{a.heldout}`.", "",
         "| row | precision | U-Net calls | latent RMSE | velocity MAE m/s (FP32 decoder) | velocity MAE m/s (own decoder) "
         "| pairwise SSIM | Fréchet seismic | Fréchet velocity | physics rel L2 |", "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    if real:
        L.append(f"| real (ceiling / floors) | – | – | – | – | – | {real['pairwise_ssim']:.4f} | {real['frechet_seismic']:.4g} | "
                 f"{real['frechet_velocity']:.4g} | – |")
    for key, t in traj["rows"].items():
        row, prec = key.rsplit(" ", 1)
        j = judged.get(key, {})
        f = lambda k, fmt: format(j[k], fmt) if j.get(k) is not None else "–"  # noqa: E731
        L.append(f"| {row} | {prec} | {t['unet_calls']} | {t['latent_rmse']:.2e} | {t['velocity_mae']:.2f} | {t['velocity_mae_own_decoder']:.2f} "
                 f"| {f('pairwise_ssim', '.4f')} | {f('frechet_seismic', '.4g')} | {f('frechet_velocity', '.4g')} | {f('physics_rel_l2', '.4g')} |")
    return "\n".join(L) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("run", type=Path)
    p.add_argument("judge", type=Path)
    p.add_argument("heldout", type=Path)
    p.add_argument("out", type=Path)
    p.add_argument("--students", default="1,2,4,8")
    p.add_argument("--teacher-samplers", default="unipc:10,unipc:25,ddim:50")
    p.add_argument("--samples", type=int, default=512)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--no-physics", action="store_true", help="skip the forward-model check (~0.07 s a pair and row)")
    p.add_argument("--no-judge", action="store_true", help="trajectory errors only (no JUDGE/HELDOUT evaluation)")
    a = p.parse_args()
    a.out.mkdir(parents=True, exist_ok=True)
    students = [int(s) for s in a.students.split(",") if s]
    samplers = [(s.split(":")[0], int(s.split(":")[1])) for s in a.teacher_samplers.split(",") if s]
    bundles = export_all(a.run, a.out, students)
    rows = rows_for(bundles, samplers)
    traj = trajectories(rows, bundles["teacher FP32"], a.samples, a.seed, a.threads)
    judged = {} if a.no_judge else evaluate(rows, a)
    (a.out / "table.json").write_text(json.dumps({"trajectory": traj, "judge": judged}, indent=2) + "\n")
    md = markdown(traj, judged, a)
    (a.out / "table.md").write_text(md)
    print(md)


if __name__ == "__main__":
    main()
