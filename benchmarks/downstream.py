"""Train on generated, test on real: does an inversion network trained with generated pairs do well
on real ones? Everything runs through the CLI, as a user would.

Arms (every arm trains the same InversionNet for the same number of optimizer steps, one run per
seed, and is tested on the same held-out real pairs made by ``data synth`` with a seed no training
saw):
  (a) real      N real pairs
  (b) gen       M generated pairs only
  (c) real+gen  N real + M generated
  (d) real+real N real + M more real pairs (the bound: what M more *real* pairs would buy)

Usage:
  python benchmarks/downstream.py BUNDLE WORK [--n-real 256] [--m-extra 1024] [--heldout 512]
         [--steps 600] [--seeds 0,1,2] [--width 0.25] [--time-decimation 4] [--batch-size 16] [--lr 1e-3]
         [--jobs 2]   (training runs in parallel, one torch thread each)
         [--family curvefault-a] [--sampler unipc] [--sample-steps 10]
         [--real-dir DIR] [--extra-dir DIR] [--heldout-dir DIR]   (existing OpenFWI folders instead of new `data synth` ones;
                                                                  their sizes then set N, M and the held-out count)
Writes WORK/downstream.json, WORK/downstream.md and WORK/downstream.png; data and runs are kept in
WORK and reused by a rerun (delete WORK/runs to train again).

Reading: a difference between two arms smaller than their seed spread (the larger of the two
standard deviations, or overlapping min–max ranges) is reported as *no evidence*, not as a gain.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

SEEDS = {"real": 61_001, "extra": 61_002, "heldout": 61_003}  # data seeds used by nothing else in the project
ARMS = ("real", "gen", "real+gen", "real+real")
METRICS = (("ssim_openfwi", "SSIM (OpenFWI)", True), ("mae_ms", "MAE m/s", False), ("rmse", "RMSE [-1,1]", False))


def cli(*args: object, log: Path) -> None:
    from ubdiff_onnx._source_tree import python_module_command

    cmd = python_module_command("ubdiff_onnx", *map(str, args))
    with open(log, "a", encoding="utf-8") as fh:
        fh.write("$ ubdiff-onnx " + " ".join(map(str, args)) + "\n")
        fh.flush()
        rc = subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"}).returncode
    if rc != 0:
        sys.exit(f"error: `ubdiff-onnx {args[0]} {args[1] if len(args) > 1 else ''}` failed (exit {rc}); see {log}")


def prepare_data(a: argparse.Namespace, work: Path, log: Path) -> dict[str, Path]:
    from ubdiff_onnx.data.openfwi import open_folder

    d = {"real": work / "data" / "real", "extra": work / "data" / "extra", "heldout": work / "data" / "heldout", "gen": work / "data" / "generated"}
    for key, given, attr in (("real", a.real_dir, "n_real"), ("extra", a.extra_dir, "m_extra"), ("heldout", a.heldout_dir, "heldout")):
        if given is not None:
            d[key] = given
            setattr(a, attr, len(open_folder(given)))
    for key, n in (("real", a.n_real), ("extra", a.m_extra), ("heldout", a.heldout)):
        if not (d[key] / "synth.json").exists() and not (d[key] / "seismic_data").is_dir():
            print(f"data synth {key}: {n} pairs (seed {SEEDS[key]})", flush=True)
            cli("data", "synth", d[key], "--family", a.family, "--samples", n, "--seed", SEEDS[key], "--overwrite", log=log)
    if not (d["gen"] / "generation.json").exists() or not any((d["gen"] / "velocity_map").glob("*.npy")):
        print(f"sample: {a.m_extra} generated pairs from {a.bundle}", flush=True)
        cli("sample", a.bundle, "--layout", "openfwi", "--out", d["gen"], "--num-samples", a.m_extra, "--seed", 0,
            "--sampler", a.sampler, "--steps", a.sample_steps, log=log)
    return d


def arm_data(arm: str, d: dict[str, Path]) -> list[Path]:
    return {"real": [d["real"]], "gen": [d["gen"]], "real+gen": [d["real"], d["gen"]], "real+real": [d["real"], d["extra"]]}[arm]


def run_arm(a: argparse.Namespace, arm: str, seed: int, d: dict[str, Path], work: Path, log: Path) -> dict:
    out = work / "runs" / f"{arm}-seed{seed}"
    result = out / "heldout-test.json"
    if not result.exists():
        t0 = time.perf_counter()
        print(f"train {arm} seed {seed} ({a.steps} steps)", flush=True)
        cli("inversion", "train", *arm_data(arm, d), out, "--dataset", a.family, "--width", a.width, "--time-decimation", a.time_decimation,
            "--steps", a.steps, "--epochs", 100_000, "--batch-size", a.batch_size, "--lr", a.lr, "--seed", seed, "--val-fraction", 0.05,
            "--threads", 1,
            "--no-progress", "--overwrite", log=log)
        cli("inversion", "test", out, d["heldout"], "--out", result, log=log)
        print(f"  {time.perf_counter() - t0:.0f} s", flush=True)
    return json.loads(result.read_text())


def verdict(x: list[float], y: list[float], higher_is_better: bool) -> str:
    """'gain' / 'loss' only when the difference of means exceeds the seed spread of both arms."""
    diff = float(np.mean(y) - np.mean(x))
    spread = max(float(np.std(x)), float(np.std(y)))
    overlap = min(max(x), max(y)) >= max(min(x), min(y))
    if abs(diff) <= spread or overlap:
        return f"no evidence (Δ {diff:+.4g}, seed spread {spread:.3g})"
    better = diff > 0 if higher_is_better else diff < 0
    return f"{'gain' if better else 'loss'} (Δ {diff:+.4g}, seed spread {spread:.3g})"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("bundle", type=Path)
    p.add_argument("work", type=Path)
    p.add_argument("--n-real", type=int, default=256)
    p.add_argument("--m-extra", type=int, default=1024)
    p.add_argument("--heldout", type=int, default=512)
    p.add_argument("--steps", type=int, default=600)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--width", type=float, default=0.25)
    p.add_argument("--time-decimation", type=int, default=4)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--family", default="curvefault-a")
    p.add_argument("--sampler", default="unipc")
    p.add_argument("--sample-steps", type=int, default=10)
    p.add_argument("--real-dir", type=Path)
    p.add_argument("--extra-dir", type=Path)
    p.add_argument("--heldout-dir", type=Path)
    a = p.parse_args()
    seeds = [int(s) for s in a.seeds.split(",")]
    if len(seeds) < 3:
        sys.exit("error: --seeds: give at least 3 seeds (the spread is what tells a gain from noise)")
    work = a.work
    work.mkdir(parents=True, exist_ok=True)
    log = work / "downstream.log"
    d = prepare_data(a, work, log)

    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=max(1, a.jobs)) as pool:
        futures = {(arm, s): pool.submit(run_arm, a, arm, s, d, work, work / f"downstream-{arm}-{s}.log") for arm in ARMS for s in seeds}
        results = {arm: [futures[(arm, s)].result() for s in seeds] for arm in ARMS}
    table = {arm: {m: [r["metrics"][m] for r in rs] for m, _, _ in METRICS} for arm, rs in results.items()}
    baseline = results["real"][0]["baseline"]
    comparisons = {
        f"{y} vs {x}": {m: verdict(table[x][m], table[y][m], hib) for m, _, hib in METRICS}
        for x, y in (("real", "real+gen"), ("real", "real+real"), ("real+gen", "real+real"), ("real", "gen"))
    }
    doc = {"bundle": str(a.bundle), "options": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(a).items()}, "seeds": seeds,
           "data": {k: str(v) for k, v in d.items()}, "data_seeds": SEEDS, "per_seed": table, "mean_map_baseline_on_heldout": baseline,
           "comparisons": comparisons}
    (work / "downstream.json").write_text(json.dumps(doc, indent=2) + "\n")

    L = [f"# Train on generated, test on real ({a.heldout} held-out pairs, `{d['heldout']}`)", "",
         f"Bundle `{a.bundle}` ({a.sampler} {a.sample_steps} steps); InversionNet width {a.width:g}, every {a.time_decimation} time sample(s), "
         f"{a.steps} optimizer steps of batch {a.batch_size} per run, seeds {', '.join(map(str, seeds))}; N = {a.n_real} real, M = {a.m_extra}.", "",
         "| arm | training pairs | " + " | ".join(f"{t} mean ± std (min–max)" for _, t, _ in METRICS) + " |", "|---|---|" + "---|" * len(METRICS)]
    sizes = {"real": f"{a.n_real} real", "gen": f"{a.m_extra} generated", "real+gen": f"{a.n_real} real + {a.m_extra} generated", "real+real": f"{a.n_real + a.m_extra} real"}
    for arm in ARMS:
        cells = [f"{np.mean(v):.4g} ± {np.std(v):.2g} ({min(v):.4g}–{max(v):.4g})" for v in (table[arm][m] for m, _, _ in METRICS)]
        L.append(f"| ({'abcd'[ARMS.index(arm)]}) {arm} | {sizes[arm]} | " + " | ".join(cells) + " |")
    L.append(f"| mean velocity map | – | {baseline['ssim_openfwi']:.4g} | {baseline['mae_ms']:.4g} | {baseline['rmse']:.4g} |")
    L += ["", "| comparison | " + " | ".join(t for _, t, _ in METRICS) + " |", "|---|" + "---|" * len(METRICS)]
    for name, v in comparisons.items():
        L.append(f"| {name} | " + " | ".join(v[m] for m, _, _ in METRICS) + " |")
    (work / "downstream.md").write_text("\n".join(L) + "\n")
    print("\n".join(L))
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, axes = plt.subplots(1, len(METRICS), figsize=(4.2 * len(METRICS), 3.6))
        for ax, (m, title, _) in zip(axes, METRICS):
            for i, arm in enumerate(ARMS):
                vals = table[arm][m]
                ax.bar(i, np.mean(vals), color="C%d" % i, alpha=0.7)
                ax.scatter([i] * len(vals), vals, color="k", s=12, zorder=3)
            ax.axhline(baseline[m], color="grey", ls="--", lw=1, label="mean map")
            ax.set_xticks(range(len(ARMS)), [f"({'abcd'[i]})\n{arm}" for i, arm in enumerate(ARMS)], fontsize=8)
            ax.set_title(title)
        axes[0].legend(fontsize=8)
        fig.suptitle("InversionNet tested on held-out real pairs (dots: seeds)")
        fig.tight_layout()
        fig.savefig(work / "downstream.png", dpi=100)
    except ImportError:
        pass


if __name__ == "__main__":
    main()
