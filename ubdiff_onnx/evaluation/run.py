"""``evaluate``: sample a bundle (and its FP32 reference) from the same x_T, then measure fidelity,
distribution and physics consistency, and write the report.

Flow: open data → pick real samples (seeded) → x_T for N samples → DDIM (eta 0) through the bundle
and the reference in lockstep, batch by batch: fidelity metrics, forward modelling of each generated
velocity map (physics), keep velocities (small) and a few seismic records for the panels → physics
of real pairs → encode real and generated velocity maps with the trained encoder → Fréchet
distances and velocity statistics → targets → report files. Only one batch of seismic data per
bundle is in memory at a time.
"""

from __future__ import annotations

import datetime as _dt
import importlib.metadata
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Protocol

import numpy as np

from ubdiff_onnx.errors import UserError
from ubdiff_onnx.evaluation.distribution import LatentEncoder, frechet_from_features, velocity_statistics, wasserstein_1d
from ubdiff_onnx.evaluation.fidelity import compare_samples, summarize
from ubdiff_onnx.evaluation.physics import physics_errors
from ubdiff_onnx.runtime.multistep import DEFAULT_SAMPLER

# Issue 7's quality targets (INT8 vs FP32 on the trained tiny model).
TARGET_SSIM = 0.95
TARGET_MAE = 50.0  # m/s
TARGET_RATIO = 1.10  # INT8's Fréchet distance / physics error at most 10 % above FP32's


@dataclass
class EvalOptions:
    num_samples: int = 64
    steps: Optional[int] = None      # None: the sampler's default (runtime.multistep.default_steps)
    sampler: Optional[str] = None    # None: the bundle's (a distilled student's own, else DEFAULT_SAMPLER)
    spacing: Optional[str] = None
    clip_x0: bool = True
    seed: int = 0
    batch_size: int = 8
    num_real: int = 256
    threads: int = 0
    panels: int = 4
    physics: bool = True  # forward-model every pair (the slowest part: ~0.07 s a pair); --no-physics skips it


@dataclass
class EvalInputs:
    bundle: Path
    data: Path
    reference: Optional[Path] = None
    checkpoint: Optional[Path] = None
    judge: Optional[Path] = None
    train_run: Optional[Path] = None


class ProgressHook(Protocol):
    def task(self, name: str, total: int) -> Callable[[int], None]: ...


class _NoProgress:
    def task(self, name: str, total: int) -> Callable[[int], None]:
        return lambda n: None


@dataclass
class _Side:
    """What one generating bundle accumulates while sampling."""

    label: str
    velocity: list = field(default_factory=list)
    physics: dict = field(default_factory=lambda: {"rel_l2": [], "corr": [], "rel_l2_log": []})
    panel_velocity: list = field(default_factory=list)
    panel_seismic: list = field(default_factory=list)
    pairwise_ssim: list = field(default_factory=list)      # judge(seismic) vs velocity, OpenFWI SSIM, per sample
    seismic_features: list = field(default_factory=list)   # judge bottleneck
    velocity_features: list = field(default_factory=list)  # judge's real-map auto-encoder bottleneck
    judge_panel: list = field(default_factory=list)        # (velocity, judge(seismic), shot) of the first few pairs, m/s
    physics_panel: Optional[tuple[np.ndarray, np.ndarray]] = None  # (generated, simulated) of sample 0

    def add_physics(self, vel: np.ndarray, seis: np.ndarray) -> None:
        errs, sim = physics_errors(vel, seis)
        for k, v in errs.items():
            self.physics[k].extend(v.tolist())
        if self.physics_panel is None:
            self.physics_panel = (seis[0].copy(), sim[0].copy())

    def add_judge(self, judge, vel: np.ndarray, seis: np.ndarray) -> None:
        """Pairwise SSIM and both feature sets of one batch of pairs (velocity m/s, seismic amplitudes)."""
        from ubdiff_onnx.evaluation.fidelity import velocity_ssim_openfwi

        pred, sfeat = judge.invert(seis)
        lo, hi = judge.constants.label_min, judge.constants.label_max
        pred_ms = judge.to_ms(pred)
        self.pairwise_ssim.extend(velocity_ssim_openfwi(pred_ms, vel, lo, hi).tolist())
        for i in range(min(len(vel), 4 - len(self.judge_panel))):
            self.judge_panel.append((np.asarray(vel[i]).reshape(70, 70).copy(), pred_ms[i].reshape(70, 70).copy(), np.asarray(seis[i, 2]).copy()))
        self.seismic_features.append(sfeat)
        self.velocity_features.append(judge.velocity_features(vel))


# ---------------------------------------------------------------------------------------------
# inputs


def runtime_for(precision: str) -> str:
    return "torchscript" if precision.startswith("torchscript") else "onnxruntime"


def open_sampler(path: Path, flag: str, threads: int):
    from ubdiff_onnx.runtime.manifest import BundleError, read_manifest
    from ubdiff_onnx.runtime.sampler import BundleSampler

    try:
        man = read_manifest(path)
        return BundleSampler(path, threads=threads, runtime=runtime_for(man.precision))
    except BundleError as exc:
        raise UserError(f"{flag} {exc}") from None


def bundle_info(path: Path, smp) -> dict[str, Any]:
    m = smp.manifest
    return {
        "path": str(path),
        "precision": m.precision,
        "preset": m.data.get("preset"),
        "latent_dim": smp.latent_dim,
        "runtime": runtime_for(m.precision),
        "dataset": m.normalization.get("name"),
        "weights_source": (m.data.get("weights") or {}).get("source"),
    }


def find_encoder_checkpoint(checkpoint: Optional[Path], manifest) -> tuple[Optional[Path], str]:
    """The checkpoint holding the trained encoder, and how it was found (or why there is none)."""
    if checkpoint is not None:
        if not Path(checkpoint).is_file():
            raise UserError(f"--checkpoint {checkpoint}: file not found")
        return Path(checkpoint), "--checkpoint"
    source = (manifest.data.get("weights") or {}).get("source")
    if source:
        run_dir = Path(str(source)).expanduser()
        if run_dir.is_dir() and (run_dir / "last.pt").is_file():
            return run_dir / "last.pt", f"the training run recorded in the bundle manifest ({run_dir})"
    return None, "no --checkpoint given and the bundle manifest names no training run folder with last.pt"


def pick_real(n_data: int, opts: EvalOptions) -> tuple[np.ndarray, np.ndarray]:
    """Seeded random real samples: (for the distribution, for physics — a prefix of the first)."""
    perm = np.random.default_rng([opts.seed, 7]).permutation(n_data)
    dist = perm[: min(opts.num_real, n_data)]
    phys = perm[: min(opts.num_samples, n_data)] if opts.physics else perm[:0]
    return dist, phys


def pick_real_for_judge(n_data: int, opts: EvalOptions) -> np.ndarray:
    """Up to 2N real pairs for the judge: two disjoint halves A and B of m = min(N, n/2) pairs each
    give the real-vs-real Fréchet floor at the generated sample count; all of them give the ceiling."""
    perm = np.random.default_rng([opts.seed, 7]).permutation(n_data)
    return perm[: min(2 * opts.num_samples, n_data)]


def _versions() -> dict[str, Optional[str]]:
    out = {}
    for name in ("ubdiff-onnx", "onnxruntime", "numpy", "torch", "deepwave"):
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    return out


# ---------------------------------------------------------------------------------------------
# the run


@dataclass
class Prepared:
    """Everything checked and loaded before the long part starts (so bad input fails in seconds)."""

    inputs: EvalInputs
    opts: EvalOptions
    smp: Any
    ref: Any
    folder: Any
    dist_idx: np.ndarray
    phys_idx: np.ndarray
    encoder: Optional[LatentEncoder]
    encoder_info: Optional[dict[str, Any]]
    notes: list[str]
    judge: Any = None
    judge_idx: Optional[np.ndarray] = None
    train_maps: Optional[np.ndarray] = None
    train_info: Optional[dict[str, Any]] = None


def prepare(inputs: EvalInputs, opts: EvalOptions) -> Prepared:
    """Validate flags, open the bundles and the data, load the encoder; raises UserError on bad input."""
    from ubdiff_onnx.data.openfwi import open_folder

    if opts.num_samples < 2:
        raise UserError(f"--num-samples: expected >= 2 (a covariance needs two samples), got {opts.num_samples}")
    if opts.batch_size < 1:
        raise UserError(f"--batch-size: expected >= 1, got {opts.batch_size}")
    if opts.num_real < 2:
        raise UserError(f"--num-real: expected >= 2, got {opts.num_real}")

    notes: list[str] = []
    smp = open_sampler(inputs.bundle, "--bundle", opts.threads)
    try:  # the sampler settings are checked (and --steps resolved) on the bundle's schedule, once
        opts.steps = len(smp.make_scheduler(opts.sampler, opts.steps, 0.0, opts.spacing, opts.clip_x0).timesteps)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    opts.sampler = opts.sampler or smp.default_sampler
    ref = None
    if inputs.reference is not None:
        ref = open_sampler(inputs.reference, "--reference", opts.threads)
        if ref.latent_dim != smp.latent_dim:
            raise UserError(f"--reference {inputs.reference}: latent size {ref.latent_dim} differs from --bundle's {smp.latent_dim}; the comparison needs the same x_T")
        if ref.manifest.data.get("config") != smp.manifest.data.get("config"):
            notes.append("the reference bundle's model config differs from the bundle's; are they exports of the same checkpoint?")
        if ref.norm != smp.norm:
            notes.append("the reference bundle's normalisation constants differ from the bundle's")
    else:
        notes.append("no --reference: the fidelity section and the FP32 columns are skipped (pass the FP32 bundle of the same checkpoint)")

    folder = open_folder(inputs.data)
    if len(folder) < 2:
        raise UserError(f"--data {inputs.data}: needs at least 2 samples, has {len(folder)}")
    dist_idx, phys_idx = pick_real(len(folder), opts)

    ckpt_path, how = find_encoder_checkpoint(inputs.checkpoint, smp.manifest)
    encoder, encoder_info = None, None
    if ckpt_path is None:
        notes.append(f"Fréchet distance skipped: {how}; pass --checkpoint CKPT (the training checkpoint: the encoder is not in the bundle)")
    else:
        encoder = LatentEncoder(ckpt_path)
        encoder_info = {"checkpoint": str(ckpt_path), "found_via": how, "latent_dim": encoder.latent_dim,
                        "config_matches_bundle": encoder.config.to_dict() == smp.manifest.data.get("config")}
        if not encoder_info["config_matches_bundle"]:
            notes.append(f"the encoder checkpoint's config differs from the bundle's ({ckpt_path}); distances are still in that encoder's latent space")
    judge, judge_idx = None, None
    if inputs.judge is None:
        notes.append("no --judge: pairwise SSIM and the independent per-modality Fréchet distances are skipped; train a judge on real pairs "
                     "the diffusion model did not see with `ubdiff-onnx inversion train DATA JUDGE_DIR` and pass --judge JUDGE_DIR (docs/evaluate.md)")
    else:
        from ubdiff_onnx.evaluation.judge import Judge, data_fingerprint, same_data

        judge = Judge(inputs.judge, threads=opts.threads or 1)  # one torch thread beside the onnxruntime sessions, as the encoder
        constants = {"name": smp.manifest.normalization.get("name"), **smp.norm.to_dict()}
        judge.check_compatible(constants, (5, 1000, 70), (1, 70, 70), f"--bundle {inputs.bundle}")
        if not judge.complete:
            notes.append(f"--judge {judge.path}: its training did not finish (resume it with `ubdiff-onnx inversion train ... --resume`)")
        fp = data_fingerprint(Path(inputs.data), len(folder))
        if any(same_data(fp, d) for d in judge.data):
            notes.append(f"--data {inputs.data} is data the judge was trained on: the real-pair ceiling is optimistic; pass held-out pairs (`data synth` with another seed)")
        judge_idx = pick_real_for_judge(len(folder), opts)
        if len(judge_idx) < 2 * opts.num_samples:
            notes.append(f"--data has {len(folder)} pairs: the real-vs-real Fréchet floors compare {len(judge_idx) // 2} vs {len(judge_idx) // 2} pairs and "
                         f"the generated side uses its first {len(judge_idx) // 2} samples (equal counts need {2 * opts.num_samples} real pairs)")
    train_maps, train_info = None, None
    if inputs.train_run is not None:
        from ubdiff_onnx.evaluation.memorisation import run_training_maps

        train_maps, train_info = run_training_maps(inputs.train_run)
        if Path(train_info["data"]).resolve() == Path(inputs.data).resolve():
            notes.append(f"--data {inputs.data} is the run's own training folder: the held-out side of the memorisation check "
                         "includes training maps (distance 0); pass pairs made with another seed")
    else:
        notes.append("no --train-run: the memorisation check (nearest training map, generated vs held-out) is skipped")
    return Prepared(inputs, opts, smp, ref, folder, dist_idx, phys_idx, encoder, encoder_info, notes, judge, judge_idx, train_maps, train_info)


def run_evaluation(prep: Prepared, progress: Optional[ProgressHook] = None, command: str = "ubdiff-onnx evaluate") -> dict[str, Any]:
    """Compute every section; returns the report (JSON-ready) plus ``_panels`` arrays for the PNGs."""
    progress = progress or _NoProgress()
    inputs, opts, smp, ref, folder = prep.inputs, prep.opts, prep.smp, prep.ref, prep.folder
    dist_idx, phys_idx, notes, enc, encoder_info = prep.dist_idx, prep.phys_idx, list(prep.notes), prep.encoder, prep.encoder_info
    norm = smp.norm

    n = opts.num_samples
    x_T, _ = smp.initial_noise(opts.seed, np.arange(n))
    main = _Side(smp.manifest.precision)
    other = _Side(ref.manifest.precision) if ref is not None else None
    fidelity: dict[str, list] = {}

    # -- generate, fidelity, physics of generated pairs ------------------------------------------
    step_tick = progress.task("sampling (U-Net steps)", opts.steps * n * (2 if ref is not None else 1))
    phys_tick = progress.task("forward modelling", n * (2 if ref is not None else 1) + len(phys_idx)) if opts.physics else (lambda k: None)
    kw = dict(steps=opts.steps, sampler=opts.sampler, seed=opts.seed, eta=0.0, batch_size=opts.batch_size, init_noise=x_T,
              spacing=opts.spacing, clip_x0=opts.clip_x0)
    gen_main = smp.sample(n, progress=step_tick, **kw)
    gen_ref = ref.sample(n, progress=step_tick, **kw) if ref is not None else None
    for batch in gen_main:
        rbatch = next(gen_ref) if gen_ref is not None else None
        main.velocity.append(batch.velocity)
        keep = max(0, opts.panels - sum(len(p) for p in main.panel_velocity))
        if keep:
            main.panel_velocity.append(batch.velocity[:keep])
            main.panel_seismic.append(batch.seismic[:keep])
        if opts.physics:
            main.add_physics(batch.velocity, batch.seismic)
        if prep.judge is not None:
            main.add_judge(prep.judge, batch.velocity, batch.seismic)
        phys_tick(len(batch.indices))
        if rbatch is not None:
            for k, v in compare_samples(batch.velocity, batch.seismic, rbatch.velocity, rbatch.seismic, norm.label_min, norm.label_max).items():
                fidelity.setdefault(k, []).extend(v.tolist())
            other.velocity.append(rbatch.velocity)
            if keep:
                other.panel_velocity.append(rbatch.velocity[:keep])
                other.panel_seismic.append(rbatch.seismic[:keep])
            if opts.physics:
                other.add_physics(rbatch.velocity, rbatch.seismic)
            if prep.judge is not None:
                other.add_judge(prep.judge, rbatch.velocity, rbatch.seismic)
            phys_tick(len(rbatch.indices))

    # -- physics of real pairs ---------------------------------------------------------------
    real = _Side("real")
    for start in range(0, len(phys_idx), opts.batch_size):
        idx = phys_idx[start : start + opts.batch_size]
        vel = np.stack([folder.velocity(int(i)) for i in idx])
        seis = np.stack([folder.seismic(int(i)) for i in idx])
        real.add_physics(vel, seis)
        phys_tick(len(idx))

    # -- the judge: real ceiling, floors, per-modality Fréchet distances -----------------------------
    judged = judge_section(prep, main, other, progress) if prep.judge is not None else None

    # -- distribution ------------------------------------------------------------------------
    real_vel = np.stack([folder.velocity(int(i)) for i in dist_idx])
    gen_vel = np.concatenate(main.velocity)
    ref_vel = np.concatenate(other.velocity) if other is not None else None
    frechet: Optional[dict[str, Any]] = None
    real_through_ae = None
    latents: dict[str, np.ndarray] = {}
    if enc is not None:
        enc_tick = progress.task("encoding", len(real_vel) + len(gen_vel) + (len(ref_vel) if ref_vel is not None else 0))
        latents["real"] = enc.encode(real_vel, norm, progress=enc_tick)
        latents["bundle"] = enc.encode(gen_vel, norm, progress=enc_tick)
        if ref_vel is not None:
            latents["reference"] = enc.encode(ref_vel, norm, progress=enc_tick)
        half = len(latents["real"]) // 2
        frechet = {
            "bundle_vs_real": frechet_from_features(latents["bundle"], latents["real"]),
            "reference_vs_real": frechet_from_features(latents["reference"], latents["real"]) if "reference" in latents else None,
            "bundle_vs_reference": frechet_from_features(latents["bundle"], latents["reference"]) if "reference" in latents else None,
            "real_half_vs_half": frechet_from_features(latents["real"][:half], latents["real"][half:]) if half >= 2 else None,
            "n_generated": len(gen_vel),
            "n_real": len(real_vel),
            "real_half_size": half,
        }
        if frechet["reference_vs_real"]:
            frechet["ratio_bundle_to_reference"] = frechet["bundle_vs_real"] / frechet["reference_vs_real"]
        frechet["real_latent_total_variance"] = float(np.trace(np.atleast_2d(np.cov(latents["real"], rowvar=False))))
        if frechet["real_latent_total_variance"] < 1e-6:
            notes.append(f"the encoder's latents of real maps hardly vary (total variance {frechet['real_latent_total_variance']:.3g}): "
                         "the encoder looks untrained or collapsed, so its Fréchet distances say little")
        roundtrip = {"bundle": autoencoder_roundtrip(smp, latents["real"], real_vel, folder, dist_idx)}
        if ref is not None:
            roundtrip["reference"] = autoencoder_roundtrip(ref, latents["real"], real_vel, folder, dist_idx)
        real_through_ae = roundtrip["bundle"].pop("_velocity")
        roundtrip.get("reference", {}).pop("_velocity", None)
        frechet["autoencoder_roundtrip"] = roundtrip
        if len(gen_vel) <= enc.latent_dim:
            notes.append(f"{len(gen_vel)} generated samples for a {enc.latent_dim}-dim latent: covariances are rank-deficient and the Fréchet distance is biased up; compare only runs with the same counts")

    lo, hi = norm.label_min, norm.label_max
    velocity_stats = {"real": velocity_statistics(real_vel, lo, hi), "bundle": velocity_statistics(gen_vel, lo, hi)}
    w1 = {"bundle": wasserstein_1d(gen_vel, real_vel)}
    if ref_vel is not None:
        velocity_stats["reference"] = velocity_statistics(ref_vel, lo, hi)
        w1["reference"] = wasserstein_1d(ref_vel, real_vel)

    memo = None
    if prep.train_maps is not None:
        from ubdiff_onnx.evaluation.memorisation import memorisation_report

        memo = {**memorisation_report(gen_vel, real_vel, prep.train_maps, real_through_ae), "train_run": prep.train_info}

    # -- assemble ------------------------------------------------------------------------------
    physics: Optional[dict[str, Any]] = None
    if opts.physics:
        physics = {"bundle": {k: summarize(v) for k, v in main.physics.items()}, "real": {k: summarize(v) for k, v in real.physics.items()}}
        if other is not None:
            physics["reference"] = {k: summarize(v) for k, v in other.physics.items()}
    else:
        notes.append("--no-physics: the physics-consistency section is skipped")
    report: dict[str, Any] = {
        "format": "ubdiff-onnx-evaluation",
        "version": 1,
        "command": command,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "versions": _versions(),
        "options": {**asdict(opts), "eta": 0.0, "velocity_ssim_range_ms": [norm.label_min, norm.label_max]},
        "bundle": bundle_info(inputs.bundle, smp),
        "reference": bundle_info(inputs.reference, ref) if ref is not None else None,
        "data": {"path": str(inputs.data), "samples": len(folder), "distribution_samples": [int(i) for i in dist_idx],
                 "physics_samples": [int(i) for i in phys_idx]},
        "encoder": encoder_info,
        "fidelity": {k: summarize(v) for k, v in fidelity.items()} if fidelity else None,
        "distribution": {"frechet": frechet, "velocity": velocity_stats, "velocity_w1_to_real_ms": w1},
        "physics": physics,
        "judge": {k: v for k, v in judged.items() if k != "_panels"} if judged else None,
        "memorisation": {k: v for k, v in memo.items() if not k.startswith("_")} if memo else None,
        "notes": notes,
    }
    report["targets"] = targets(report)
    report["_panels"] = {
        "bundle": (np.concatenate(main.panel_velocity), np.concatenate(main.panel_seismic)),
        "reference": (np.concatenate(other.panel_velocity), np.concatenate(other.panel_seismic)) if other is not None else None,
        "physics": {"bundle": main.physics_panel, "reference": other.physics_panel if other is not None else None, "real": real.physics_panel},
        "velocity": {"real": real_vel, "bundle": gen_vel, "reference": ref_vel},
        "latents": latents,
        "judge": judged["_panels"] if judged else None,
        "memorisation": memo["_distances"] if memo else None,
    }
    return report


ROUNDTRIP_SEISMIC = 64


def autoencoder_roundtrip(smp: Any, latents: np.ndarray, real_vel: np.ndarray, folder: Any, idx: np.ndarray) -> dict[str, Any]:
    """The checkpoint's encoder, then the *bundle's* decoders, on real held-out maps: how much of the
    data the latent space can express at all (velocity SSIM in the OpenFWI convention, MAE) and how
    close the seismic decoder gets to the real gathers from it (rel. L2, first ROUNDTRIP_SEISMIC)."""
    from ubdiff_onnx.evaluation.fidelity import seismic_errors, velocity_ssim_openfwi
    from ubdiff_onnx.runtime.normalization import denormalize_seismic, denormalize_velocity

    z = np.ascontiguousarray(latents, dtype=np.float32)
    dec = smp.components["velocity_decoder"]
    v = np.concatenate([dec.run({"latent": z[i:i + 16]}) for i in range(0, len(z), 16)])
    v = denormalize_velocity(v, smp.norm)
    ssim = velocity_ssim_openfwi(v, real_vel, smp.norm.label_min, smp.norm.label_max)
    k = min(ROUNDTRIP_SEISMIC, len(z))
    sdec = smp.components["seismic_decoder"]
    s = np.concatenate([sdec.run({"latent": z[i:min(i + 8, k)]}) for i in range(0, k, 8)])
    real_s = np.stack([folder.seismic(int(i)) for i in idx[:k]])
    err = seismic_errors(denormalize_seismic(s, smp.norm), real_s)
    return {"_velocity": v, "velocity_ssim_openfwi": float(np.mean(ssim)), "velocity_mae_ms": float(np.abs(v - real_vel).mean()), "n": int(len(z)),
            "seismic_rel_l2": float(err["rel_l2"].mean()), "seismic_n": int(k)}


def judge_section(prep: Prepared, main: _Side, other: Optional[_Side], progress: ProgressHook) -> dict[str, Any]:
    """Pairwise SSIM (generated and real), and per-modality Fréchet distances next to their floors."""
    from ubdiff_onnx.evaluation.fidelity import summarize as _summ

    judge, idx, folder, bs = prep.judge, prep.judge_idx, prep.folder, prep.opts.batch_size
    real = _Side("real")
    tick = progress.task("judge on real pairs", len(idx))
    for start in range(0, len(idx), bs):
        sel = idx[start : start + bs]
        real.add_judge(judge, np.stack([folder.velocity(int(i)) for i in sel]), np.stack([folder.seismic(int(i)) for i in sel]))
        tick(len(sel))
    m = len(idx) // 2
    panels = {"real": real.judge_panel, "bundle": main.judge_panel, "reference": other.judge_panel if other is not None else None}
    out: dict[str, Any] = {"_panels": panels, "judge": judge.summary(), "n_generated": len(main.pairwise_ssim), "n_real": int(len(idx)), "frechet_count": m,
                           "pairwise_ssim": {"real_ceiling": _summ(real.pairwise_ssim), "bundle": _summ(main.pairwise_ssim)}, "frechet": {}}
    if other is not None:
        out["pairwise_ssim"]["reference"] = _summ(other.pairwise_ssim)
    for modality, attr in (("seismic", "seismic_features"), ("velocity", "velocity_features")):
        r = np.concatenate(getattr(real, attr))
        a, b = r[:m], r[m : 2 * m]
        entry: dict[str, Any] = {"real_floor": frechet_from_features(b, a) if m >= 2 else None,
                                 "bundle": frechet_from_features(np.concatenate(getattr(main, attr))[:m], a) if m >= 2 else None}
        if other is not None:
            entry["reference"] = frechet_from_features(np.concatenate(getattr(other, attr))[:m], a) if m >= 2 else None
        entry["feature_dim"] = int(r.shape[1])
        if entry["real_floor"]:
            entry["bundle_over_floor"] = entry["bundle"] / entry["real_floor"]
            if other is not None:
                entry["reference_over_floor"] = entry["reference"] / entry["real_floor"]
        out["frechet"][modality] = entry
    ceiling = out["pairwise_ssim"]["real_ceiling"]["mean"]
    if ceiling:
        out["pairwise_ssim_over_ceiling"] = {k: v["mean"] / ceiling for k, v in out["pairwise_ssim"].items() if k != "real_ceiling" and v["mean"] is not None}
    return out


def targets(report: dict[str, Any]) -> list[dict[str, Any]]:
    """Issue 7's INT8-vs-FP32 quality targets; ``met`` is None where the inputs to measure one are missing."""
    fid, dist, phys = report["fidelity"], report["distribution"]["frechet"], report["physics"]
    out = []

    def add(what: str, measured: Optional[float], op: str, target: float, unit: str, why_missing: str) -> None:
        met = None if measured is None else (measured >= target if op == ">=" else measured <= target)
        out.append({"what": what, "measured": measured, "op": op, "target": target, "unit": unit, "met": met,
                    **({"missing": why_missing} if measured is None else {})})

    no_ref = "needs --reference"
    add("velocity SSIM, bundle vs reference (mean)", fid["velocity_ssim"]["mean"] if fid else None, ">=", TARGET_SSIM, "", no_ref)
    add("velocity MAE, bundle vs reference (mean)", fid["velocity_mae"]["mean"] if fid else None, "<=", TARGET_MAE, " m/s", no_ref)
    ratio = dist.get("ratio_bundle_to_reference") if dist else None
    add("Fréchet distance to real, bundle ÷ reference", ratio, "<=", TARGET_RATIO, "×",
        no_ref if report["reference"] is None else "needs --checkpoint (the encoder)")
    pr = None
    if phys and "reference" in phys and phys["reference"]["rel_l2"]["mean"]:
        pr = phys["bundle"]["rel_l2"]["mean"] / phys["reference"]["rel_l2"]["mean"]
    add("physics rel L2, bundle ÷ reference", pr, "<=", TARGET_RATIO, "×", no_ref if phys else "skipped (--no-physics)")
    return out
