"""The judge: an InversionNet and a velocity feature network trained on real pairs only.

A judge file (``JUDGE_DIR/judge.pt``, written by ``ubdiff-onnx inversion train``) holds both
networks, the normalisation constants and shapes it was trained with, the mean training velocity
map (the trivial baseline every inversion must beat) and where its data came from. This module
loads it and answers three questions, each from networks that never saw the diffusion model:

- **pairwise SSIM** (the DAC 2025 contest's metric): the judge inverts a *generated* seismic record
  and the result is compared, SSIM in OpenFWI's convention, with the *generated* velocity of the
  same pair. On held-out real pairs the same number is the judge's ceiling.
- **seismic features**: InversionNet's bottleneck, for a Fréchet distance on seismic data.
- **velocity features**: the bottleneck of the velocity auto-encoder, for one on velocity maps.

torch is imported here (as for the UB-Diff encoder of the existing Fréchet distance); the sampling
runtime never imports this module.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

from ubdiff_onnx.errors import UserError
from ubdiff_onnx.evaluation.fidelity import mae, velocity_ssim, velocity_ssim_openfwi
from ubdiff_onnx.runtime.normalization import NormConstants

JUDGE_FORMAT = "ubdiff-onnx-judge"
JUDGE_VERSION = 1
JUDGE_FILE = "judge.pt"


def judge_path(path: Path) -> Path:
    """A judge folder or its judge.pt → the file."""
    path = Path(path)
    return path / JUDGE_FILE if path.is_dir() else path


def data_fingerprint(root: Path, n: int) -> dict[str, Any]:
    """What identifies a data folder for 'did the judge train on this?': its real path, size and
    the generator record of synthetic data (family, seed), if any."""
    from ubdiff_onnx.data.synth import read_metadata

    try:
        meta = read_metadata(root) or {}
    except Exception:
        meta = {}
    out: dict[str, Any] = {"path": str(Path(root).resolve()), "samples": int(n)}
    if meta:
        out["synth"] = {k: meta.get(k) for k in ("family", "seed", "samples", "generator_version")}
    return out


def same_data(a: dict[str, Any], b: dict[str, Any]) -> bool:
    if a.get("path") == b.get("path"):
        return True
    sa, sb = a.get("synth"), b.get("synth")
    return bool(sa and sb and sa.get("family") == sb.get("family") and sa.get("seed") == sb.get("seed"))


def describe_constants(c: dict[str, Any]) -> str:
    name = c.get("name") or "custom constants"
    return f"{name} (seismic {c['data_min']:g}..{c['data_max']:g}, velocity {c['label_min']:g}..{c['label_max']:g} m/s)"


class Judge:
    """A loaded judge: ``invert`` seismic (OpenFWI amplitude units) → velocity in m/s, plus features."""

    def __init__(self, path: Path, threads: int = 0, flag: str = "--judge") -> None:
        import torch

        from ubdiff_onnx.models.inversionnet import InversionNet, JudgeConfig, VelocityFeatureNet

        self.path = judge_path(path)
        if not self.path.is_file():
            raise UserError(f"{flag} {path}: no judge here (expected a judge folder with {JUDGE_FILE} or the file itself; make one with `ubdiff-onnx inversion train`)")
        try:
            doc = torch.load(self.path, map_location="cpu", weights_only=False)
        except Exception as exc:  # noqa: BLE001 - any unreadable file is the user's input problem
            raise UserError(f"{flag} {self.path}: not a readable judge file ({type(exc).__name__})") from None
        if not isinstance(doc, dict) or doc.get("format") != JUDGE_FORMAT:
            raise UserError(f"{flag} {self.path}: not an ubdiff-onnx judge (made by `ubdiff-onnx inversion train`)")
        if doc.get("version", 0) > JUDGE_VERSION:
            raise UserError(f"{flag} {self.path}: judge format {doc.get('version')} is newer than this ubdiff-onnx reads ({JUDGE_VERSION}); upgrade")
        self.doc = doc
        self.config = JudgeConfig.from_dict(doc["config"])
        self.constants_doc: dict[str, Any] = dict(doc["constants"])
        self.constants = NormConstants.from_dict(self.constants_doc, source=str(self.path))
        self.shapes = {k: tuple(v) for k, v in doc["shapes"].items()}
        self.complete = bool(doc.get("complete"))
        self.inversion = InversionNet(self.config)
        self.inversion.load_state_dict(doc["inversion"])
        self.inversion.eval()
        self.features_net = VelocityFeatureNet(self.config)
        self.features_net.load_state_dict(doc["velocity_features"])
        self.features_net.eval()
        self.mean_velocity = np.asarray(doc["mean_velocity"], dtype=np.float32)  # (1,70,70), normalised
        self.threads = threads
        self._torch = torch

    # -- identity --------------------------------------------------------------------------------
    @property
    def data(self) -> list[dict[str, Any]]:
        return list(self.doc.get("data", []))

    def summary(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "config": self.config.to_dict(),
            "constants": self.constants_doc,
            "shapes": {k: list(v) for k, v in self.shapes.items()},
            "trained_on": self.data,
            "complete": self.complete,
            "parameters": int(sum(p.numel() for p in self.inversion.parameters())),
            "val": self.doc.get("val_metrics"),
            "sha256": file_sha256(self.path),
        }

    def check_compatible(self, constants: dict[str, Any], seismic_shape: Sequence[int], velocity_shape: Sequence[int], what: str) -> None:
        """Refuse, in one line naming both, a judge trained on other constants or shapes than ``what``."""
        keys = ("data_min", "data_max", "label_min", "label_max")
        if any(abs(float(constants[k]) - float(self.constants_doc[k])) > 1e-6 * max(1.0, abs(float(constants[k]))) for k in keys):
            raise UserError(f"--judge {self.path} was trained on {describe_constants(self.constants_doc)} but {what} uses {describe_constants(constants)}; "
                            "train a judge on that dataset (`ubdiff-onnx inversion train DATA OUT --dataset NAME`)")
        mine = (tuple(self.shapes["seismic"]), tuple(self.shapes["velocity"]))
        theirs = (tuple(int(s) for s in seismic_shape), tuple(int(s) for s in velocity_shape))
        if mine != theirs:
            raise UserError(f"--judge {self.path} was trained on seismic {mine[0]} / velocity {mine[1]} but {what} has seismic {theirs[0]} / velocity {theirs[1]}")

    # -- inference ---------------------------------------------------------------------------------
    def _run(self, fn, batch_size: int = 32):
        torch = self._torch
        before = torch.get_num_threads()
        if self.threads:
            torch.set_num_threads(self.threads)
        try:
            with torch.inference_mode():
                return fn(torch)
        finally:
            torch.set_num_threads(before)

    def invert(self, seismic: np.ndarray, batch_size: int = 32) -> tuple[np.ndarray, np.ndarray]:
        """Seismic (N,5,1000,70) in OpenFWI amplitude units → (velocity (N,1,70,70) in [-1,1], seismic features (N,D))."""
        from ubdiff_onnx.runtime.normalization import normalize_seismic

        d = self.config.time_decimation

        def go(torch):
            vel, feats = [], []
            for start in range(0, len(seismic), batch_size):
                s = np.asarray(seismic[start : start + batch_size])[:, :, ::d, :]
                x = torch.from_numpy(np.ascontiguousarray(normalize_seismic(s, self.constants), dtype=np.float32))
                y, z = self.inversion.forward_with_features(x)
                vel.append(y.numpy())
                feats.append(z.double().numpy())
            return np.concatenate(vel), np.concatenate(feats)

        return self._run(go)

    def velocity_features(self, velocity_ms: np.ndarray, batch_size: int = 64) -> np.ndarray:
        """Velocity (N,1,70,70) in m/s → (N, feature_dim) features of the real-map auto-encoder."""
        from ubdiff_onnx.runtime.normalization import normalize_velocity

        def go(torch):
            out = []
            for start in range(0, len(velocity_ms), batch_size):
                v = normalize_velocity(np.asarray(velocity_ms[start : start + batch_size], dtype=np.float32), self.constants)
                out.append(self.features_net.features(torch.from_numpy(np.ascontiguousarray(v))).double().numpy())
            return np.concatenate(out)

        return self._run(go)

    def to_ms(self, normalised: np.ndarray) -> np.ndarray:
        from ubdiff_onnx.runtime.normalization import denormalize_velocity

        return denormalize_velocity(normalised, self.constants)


def inversion_metrics(pred_norm: np.ndarray, true_norm: np.ndarray, label_min: float, label_max: float) -> dict[str, np.ndarray]:
    """Per-sample metrics of predicted against true velocity maps given in [-1, 1]: OpenFWI's MAE and
    MSE on [-1, 1], MAE in m/s, SSIM (OpenFWI convention) and SSIM (valid region)."""
    p = np.asarray(pred_norm, dtype=np.float64)
    t = np.asarray(true_norm, dtype=np.float64)
    half = (label_max - label_min) / 2.0
    p_ms, t_ms = (p + 1.0) * half + label_min, (t + 1.0) * half + label_min
    diff = (p - t).reshape(len(p), -1)
    return {
        "mae": np.abs(diff).mean(axis=1),
        "mse": (diff**2).mean(axis=1),
        "mae_ms": mae(p_ms, t_ms),
        "ssim_openfwi": velocity_ssim_openfwi(p_ms, t_ms, label_min, label_max),
        "ssim_valid": velocity_ssim(p_ms, t_ms, label_min, label_max),
    }


def pool_metrics(per_sample: dict[str, list]) -> dict[str, float]:
    """Set-level numbers as OpenFWI's test.py prints them: means over the set, RMSE = sqrt(mean MSE)."""
    out = {k: float(np.mean(v)) for k, v in per_sample.items()}
    if "mse" in out:
        out["rmse"] = float(np.sqrt(out["mse"]))
    return out


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


@dataclass
class JudgeTestResult:
    judge: dict[str, Any]
    data: dict[str, Any]
    metrics: dict[str, float]
    baseline: dict[str, float]
    seen_in_training: bool
    notes: list[str]

    def to_json(self) -> str:
        return json.dumps(self.__dict__, indent=2) + "\n"


def score_judge(judge: Judge, data: Path, num: Optional[int] = None, seed: int = 0, batch_size: int = 32, progress=None) -> JudgeTestResult:
    """``inversion test``: the judge and the mean-map baseline on the pairs of ``data``."""
    from ubdiff_onnx.data.openfwi import open_folder
    from ubdiff_onnx.runtime.normalization import normalize_velocity

    folder = open_folder(data)
    n = len(folder)
    idx = np.arange(n) if num is None or num >= n else np.sort(np.random.default_rng([seed, 11]).permutation(n)[:num])
    fp = data_fingerprint(Path(data), n)
    seen = any(same_data(fp, d) for d in judge.data)
    notes = []
    if seen:
        notes.append(f"{data} is (a copy of) data the judge was trained on: these numbers are optimistic; test on pairs made with another seed")
    judge.check_compatible(judge.constants_doc, folder.seismic(0).shape, folder.velocity(0).shape, f"--data {data}")
    per: dict[str, list] = {}
    base: dict[str, list] = {}
    for start in range(0, len(idx), batch_size):
        sel = idx[start : start + batch_size]
        seis = np.stack([folder.seismic(int(i)) for i in sel])
        true = normalize_velocity(np.stack([folder.velocity(int(i)) for i in sel]), judge.constants)
        pred, _ = judge.invert(seis, batch_size)
        for k, v in inversion_metrics(pred, true, judge.constants.label_min, judge.constants.label_max).items():
            per.setdefault(k, []).extend(v.tolist())
        mean_map = np.broadcast_to(judge.mean_velocity, true.shape)
        for k, v in inversion_metrics(mean_map, true, judge.constants.label_min, judge.constants.label_max).items():
            base.setdefault(k, []).extend(v.tolist())
        if progress:
            progress(len(sel))
    return JudgeTestResult(judge.summary(), {**fp, "tested": int(len(idx))}, pool_metrics(per), pool_metrics(base), seen, notes)

