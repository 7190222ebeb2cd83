"""Which few-step sampler and step count should `ubdiff-onnx sample` use? Evidence on a trained model.

    python benchmarks/few_step_sampling.py --fp32 Q/bundles/fp32 --qdq Q/bundles/qdq --qdq-twin Q/bundles/fp32-qat \
        --checkpoint Q/run/diffusion.pt --out OUT [--samples 512] [--physics 128]

All settings start from the same x_T (``--samples`` of them, seed ``--seed``):
1. convergence: latent RMSE and velocity MAE (m/s) against the reference ODE solution, DDIM eta 0
   over all T steps (DPM-Solver++ 2M at 100 steps as a cross-check of that reference), for
   ddim / dpmpp2m / dpmpp3m / unipc at 5..50 steps, with and without x̂0 clipping, and the three
   timestep spacings of the ODE solvers at the candidate step counts;
2. distribution: Fréchet distance (encoder latents of the velocity maps, as `evaluate`) to fresh
   real maps of the same family, for DDPM-T, DDIM-50 and the candidates, with the metric's noise
   floor (real vs other real maps, same counts); physics consistency (relative L2 of the generated
   seismic against the forward model of the generated velocity) on ``--physics`` samples;
3. INT8: the QDQ bundle vs its FP32 twin with each candidate and DDIM-50 (velocity SSIM, MAE).
Writes OUT/few_step.json and OUT/few_step.md. Sampling uses onnxruntime + numpy; torch is imported
only at the end, for the encoder and the forward model.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from ubdiff_onnx.runtime.normalization import denormalize_seismic, denormalize_velocity
from ubdiff_onnx.runtime.sampler import BundleSampler

STEPS = (5, 8, 10, 12, 15, 20, 25, 50)
SAMPLERS = ("ddim", "dpmpp2m", "dpmpp3m", "unipc")
ODE = ("dpmpp2m", "dpmpp3m", "unipc")
CANDIDATE_STEPS = (5, 8, 10)
NOCLIP_STEPS = (8, 10)
SPACING_STEPS = (8, 10)


def latents(smp: BundleSampler, x_T: np.ndarray, sampler: str, steps: int | None, clip: bool = True, spacing: str | None = None,
            seed: int = 0) -> np.ndarray:
    sch = smp.make_scheduler(sampler, steps, 0.0, spacing, clip)
    rngs = [np.random.default_rng([seed, i]) for i in range(len(x_T))] if sampler == "ddpm" else None
    if rngs is not None:  # the sampler's own streams: x_T first, then the step noises
        for r in rngs:
            r.standard_normal((1, smp.latent_dim), dtype=np.float32)
    return smp.denoise(x_T, sch, rngs).reshape(len(x_T), -1)


def velocity(smp: BundleSampler, lat: np.ndarray, chunk: int = 128) -> np.ndarray:
    out = [smp.components["velocity_decoder"].run({"latent": np.ascontiguousarray(lat[i:i + chunk])}) for i in range(0, len(lat), chunk)]
    return denormalize_velocity(np.concatenate(out), smp.norm)


def seismic(smp: BundleSampler, lat: np.ndarray, chunk: int = 16) -> np.ndarray:
    out = [smp.components["seismic_decoder"].run({"latent": np.ascontiguousarray(lat[i:i + chunk])}) for i in range(0, len(lat), chunk)]
    return denormalize_seismic(np.concatenate(out), smp.norm)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--fp32", type=Path, required=True, help="FP32 bundle of the trained model")
    ap.add_argument("--qdq", type=Path, help="INT8 QDQ bundle (QAT)")
    ap.add_argument("--qdq-twin", type=Path, help="FP32 bundle of the same QAT checkpoint")
    ap.add_argument("--checkpoint", type=Path, help="training checkpoint (encoder for the Fréchet distance)")
    ap.add_argument("--family", default="curvefault-a")
    ap.add_argument("--samples", type=int, default=512)
    ap.add_argument("--physics", type=int, default=64, help="samples per setting that are forward-modelled (slow: ~0.1-0.3 s each)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--parts", default="convergence,distribution,int8", help="which sections to run (comma-separated)")
    ap.add_argument("--out", type=Path, default=Path("few-step-report"))
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    smp = BundleSampler(args.fp32, threads=args.threads)
    T = smp.tables.num_timesteps
    x_T, _ = smp.initial_noise(args.seed, np.arange(args.samples))
    parts = set(args.parts.split(","))
    res: dict = {"samples": args.samples, "seed": args.seed, "bundle": str(args.fp32), "T": T, "convergence": [], "spacing": []}
    if "convergence" not in parts:
        return int8_only(args, x_T, res, t0)

    # -- 1. convergence -----------------------------------------------------------------------
    lat_cache: dict[tuple, np.ndarray] = {}
    vel_cache: dict[tuple, np.ndarray] = {}

    def measure(key: tuple, lat: np.ndarray, ref_v: np.ndarray, ref: np.ndarray) -> dict:
        v = velocity(smp, lat)
        if key[-1] is True:  # clipped runs are reused by the distribution section
            lat_cache[key[:2]], vel_cache[key[:2]] = lat, v
        return {"latent_rmse": float(np.sqrt(np.mean((lat - ref) ** 2))), "velocity_mae": float(np.mean(np.abs(v - ref_v)))}

    for clip in (True, False):
        ref = latents(smp, x_T, "ddim", T, clip)
        ref_v = velocity(smp, ref)
        if clip:
            cross = latents(smp, x_T, "dpmpp2m", 100, clip)
            res["reference_cross_check_dpmpp2m_100"] = measure(("dpmpp2m", 100, None), cross, ref_v, ref)
            lat_cache[("ddim", T)], vel_cache[("ddim", T)], clip_ref = ref, ref_v, (ref, ref_v)
        grid = [(s, k) for s in SAMPLERS for k in (STEPS if clip else NOCLIP_STEPS)] + ([] if clip else [("ddim", 50)])
        for sampler, steps in grid:
            m = measure((sampler, steps, clip), latents(smp, x_T, sampler, steps, clip), ref_v, ref)
            res["convergence"].append({"sampler": sampler, "steps": steps, "clip_x0": clip, **m})
        print(f"convergence clip={clip} done ({time.time() - t0:.0f} s)", flush=True)
    ref, ref_v = clip_ref
    for sampler in ODE:
        for steps in SPACING_STEPS:
            for spacing in ("leading", "trailing"):  # linspace is in the grid above
                m = measure((sampler, steps, spacing), latents(smp, x_T, sampler, steps, True, spacing), ref_v, ref)
                res["spacing"].append({"sampler": sampler, "steps": steps, "spacing": spacing, **m})
            lin = next(r for r in res["convergence"] if r["sampler"] == sampler and r["steps"] == steps and r["clip_x0"])
            res["spacing"].append({"sampler": sampler, "steps": steps, "spacing": "linspace",
                                   "latent_rmse": lin["latent_rmse"], "velocity_mae": lin["velocity_mae"]})
    print(f"spacing done ({time.time() - t0:.0f} s)", flush=True)

    # -- 2. distribution + physics --------------------------------------------------------------
    lat_cache[("ddpm", T)] = latents(smp, x_T, "ddpm", None, True, seed=args.seed)
    dist_settings = [("ddpm", T), ("ddim", 50), ("ddim", 10)] + [(s, k) for s in ODE for k in CANDIDATE_STEPS]
    for k in dist_settings:
        if k not in lat_cache:
            lat_cache[k] = latents(smp, x_T, k[0], k[1])
    gen_v = {k: vel_cache[k] if k in vel_cache else velocity(smp, lat_cache[k]) for k in dist_settings}
    n_phys = min(args.physics, args.samples)
    gen_s = {k: seismic(smp, lat_cache[k][:n_phys]) for k in dist_settings if k[1] != 5}
    res["int8"] = int8(args, x_T) if "int8" in parts and args.qdq and args.qdq_twin else {}
    print(f"INT8 done ({time.time() - t0:.0f} s)", flush=True)


    from ubdiff_onnx.data.velocity_models import velocity_batch
    from ubdiff_onnx.evaluation.distribution import LatentEncoder, frechet_from_features
    from ubdiff_onnx.evaluation.physics import physics_errors
    from ubdiff_onnx.runtime.manifest import read_manifest
    from ubdiff_onnx.runtime.normalization import NormConstants

    man = read_manifest(args.fp32)
    norm = NormConstants.from_dict(man.normalization)
    n = args.samples
    real = velocity_batch(args.family, 777, 0, 2 * n)  # fresh maps: not the training set's seed
    dist = {}
    if args.checkpoint:
        enc = LatentEncoder(args.checkpoint)
        fa, fb = enc.encode(real[:n], norm), enc.encode(real[n:], norm)
        dist["noise_floor_real_vs_real"] = frechet_from_features(fa, fb)
        for k, v in gen_v.items():
            fg = enc.encode(v, norm)
            dist[f"{k[0]}-{k[1]}"] = {"frechet_vs_real_a": frechet_from_features(fg, fa), "frechet_vs_real_b": frechet_from_features(fg, fb)}
        print(f"distribution done ({time.time() - t0:.0f} s)", flush=True)
    phys = {}
    for k in [k for k in dist_settings if k[1] != 5]:
        errs, _ = physics_errors(gen_v[k][:n_phys], gen_s[k])
        r = errs["rel_l2"]
        phys[f"{k[0]}-{k[1]}"] = {"rel_l2_mean": float(r.mean()), "rel_l2_sem": float(r.std(ddof=1) / np.sqrt(len(r))), "n": int(len(r))}
    print(f"physics done ({time.time() - t0:.0f} s)", flush=True)
    res["distribution"], res["physics"] = dist, phys
    res["seconds"] = time.time() - t0
    (args.out / "few_step.json").write_text(json.dumps(res, indent=2))
    (args.out / "few_step.md").write_text(markdown(res))
    print(markdown(res))


def int8(args, x_T: np.ndarray) -> dict:
    from ubdiff_onnx.evaluation.fidelity import mae, velocity_ssim

    q, f = BundleSampler(args.qdq, threads=args.threads), BundleSampler(args.qdq_twin, threads=args.threads)
    out = {}
    for sampler, steps in [("ddim", 50)] + [(s, k) for s in ODE for k in CANDIDATE_STEPS]:
        vq, vf = velocity(q, latents(q, x_T, sampler, steps)), velocity(f, latents(f, x_T, sampler, steps))
        out[f"{sampler}-{steps}"] = {"velocity_ssim": float(np.mean(velocity_ssim(vq, vf, q.norm.label_min, q.norm.label_max))),
                                     "velocity_mae": float(np.mean(mae(vq, vf)))}
    return out


def int8_only(args, x_T: np.ndarray, res: dict, t0: float) -> None:
    res["int8"] = int8(args, x_T)
    res["seconds"] = time.time() - t0
    (args.out / "few_step_int8.json").write_text(json.dumps(res, indent=2))
    md = int8_markdown(res)
    (args.out / "few_step_int8.md").write_text(md)
    print(md)


def markdown(res: dict) -> str:
    L = [f"{res['samples']} samples sharing x_T (seed {res['seed']}); reference: DDIM eta 0, all {res['T']} steps.", ""]
    cc = res["reference_cross_check_dpmpp2m_100"]
    L.append(f"Reference cross-check (clip_x0): DPM-Solver++ 2M 100 steps vs DDIM-{res['T']}: "
             f"latent RMSE {cc['latent_rmse']:.2e}, velocity MAE {cc['velocity_mae']:.3g} m/s")
    for clip in (True, False):
        cols = sorted({r["steps"] for r in res["convergence"] if r["clip_x0"] == clip})
        L += ["", f"Velocity MAE (m/s) / latent RMSE vs the reference (DDIM-{res['T']} with the same clip_x0={clip}); "
              "linspace spacing for the ODE solvers:", "",
              "| sampler | " + " | ".join(str(s) for s in cols) + " |", "|---|" + "---:|" * len(cols)]
        for s in SAMPLERS:
            cells = [next((f"{r['velocity_mae']:.3g} / {r['latent_rmse']:.1e}" for r in res["convergence"]
                           if r["sampler"] == s and r["steps"] == k and r["clip_x0"] == clip), "–") for k in cols]
            L.append(f"| {s} | " + " | ".join(cells) + " |")
    L += ["", "Timestep spacing (clip_x0, velocity MAE m/s):", "", "| sampler | steps | linspace | leading | trailing |", "|---|---:|---:|---:|---:|"]
    for s in ODE:
        for k in SPACING_STEPS:
            v = {r["spacing"]: r["velocity_mae"] for r in res["spacing"] if r["sampler"] == s and r["steps"] == k}
            L.append(f"| {s} | {k} | {v['linspace']:.3g} | {v['leading']:.3g} | {v['trailing']:.3g} |")
    d, p = res.get("distribution", {}), res.get("physics", {})
    if d or p:
        L += ["", f"Distribution (Fréchet distance of encoder latents to {res['samples']} fresh real maps, two disjoint real sets A/B; "
              f"noise floor = real A vs real B: {d.get('noise_floor_real_vs_real', float('nan')):.4g}) and physics (rel. L2 of generated "
              "seismic vs the forward model of generated velocity, mean ± s.e.):", "",
              "| setting | U-Net calls | FD vs A | FD vs B | physics rel L2 |", "|---|---:|---:|---:|---:|"]
        for k, ph in p.items():
            fd = d.get(k, {})
            L.append(f"| {k} | {k.rsplit('-', 1)[1]} | {fd.get('frechet_vs_real_a', float('nan')):.4g} | {fd.get('frechet_vs_real_b', float('nan')):.4g} | "
                     f"{ph['rel_l2_mean']:.4f} ± {ph['rel_l2_sem']:.4f} (n={ph['n']}) |")
    return "\n".join(L) + "\n" + int8_markdown(res)


def int8_markdown(res: dict) -> str:
    L = []
    if res.get("int8"):
        L += ["", "INT8 (QAT QDQ bundle vs its FP32 twin, same x_T and setting; targets SSIM ≥ 0.95, MAE ≤ 50 m/s):", "",
              "| setting | velocity SSIM | velocity MAE m/s |", "|---|---:|---:|"]
        for k, v in res["int8"].items():
            L.append(f"| {k} | {v['velocity_ssim']:.4f} | {v['velocity_mae']:.2f} |")
    return "\n".join(L) + "\n"


if __name__ == "__main__":
    main()
