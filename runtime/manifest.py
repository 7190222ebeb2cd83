"""The bundle manifest: everything the Pi runtime needs, without torch.

A bundle is ``OUT_DIR/manifest.json`` + ``unet/``, ``velocity_decoder/``, ``seismic_decoder/``
(one ONNX or TorchScript file each). This module reads, validates and writes manifests; the
export side writes them through :func:`write_manifest` so both sides share one schema.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ubdiff_onnx.runtime.atomic import atomic_write_text

BUNDLE_FORMAT = "ubdiff-onnx-bundle"
BUNDLE_FORMAT_VERSION = 2
"""Newest format this runtime reads. 2 = a distilled student's ``student`` block: only such bundles
are written as version 2, so older runtimes refuse them instead of sampling them with a sampler the
student was not trained for; every other bundle stays version 1."""
COMPONENTS = ("unet", "velocity_decoder", "seismic_decoder")
PRECISIONS = ("fp32", "qdq", "int4", "torchscript", "torchscript-int8")

# The onnxruntime range the runtime runs FP32 and INT8 bundles on, measured on the emulated Pi 4 and
# Pi 5 (docs/runtime.md, "Python and onnxruntime versions"). The floor is the newest onnxruntime
# with a CPython 3.9 aarch64 wheel, so Raspberry Pi OS Bullseye (Python 3.9) can sample. Export
# records both in every manifest; pyproject.toml's dependency says the same (a test keeps them equal).
MIN_ONNXRUNTIME = "1.19.2"
EXCLUDED_ONNXRUNTIME = {
    "1.21.0": 'its aarch64 wheel dies with "Illegal instruction" at import on a Raspberry Pi 4 (Cortex-A72; '
              "microsoft/onnxruntime#23957; 1.21.1 runs there)",
}


class BundleError(Exception):
    """A bundle that cannot be used; the message is one line naming the file and the problem."""


def version_tuple(v: str) -> tuple[int, ...]:
    """``"1.19.2"`` → (1, 19, 2); local/dev suffixes ignored ("1.22.0+cpu" → (1, 22, 0))."""
    return tuple(int("".join(ch for ch in part if ch.isdigit()) or 0) for part in v.split("+")[0].split(".")[:3])


def onnxruntime_problem(version: str, data: dict[str, Any]) -> str | None:
    """Why onnxruntime ``version`` cannot run the bundle whose manifest is ``data``, or None.

    Refused: a version below the bundle's ``min_onnxruntime``, and the versions the bundle's
    ``excluded_onnxruntime`` or this runtime's :data:`EXCLUDED_ONNXRUNTIME` name (bundles exported
    before the exclusion list existed record a floor above them). Nothing else."""
    need = data.get("min_onnxruntime")
    if need and version_tuple(version) < version_tuple(need):
        return f"needs onnxruntime >= {need}, this is {version}; pip install -U onnxruntime"
    excluded = {**{v: "the bundle excludes it" for v in data.get("excluded_onnxruntime", ())}, **EXCLUDED_ONNXRUNTIME}
    for bad, why in excluded.items():
        if version_tuple(version) == version_tuple(bad):
            return f"onnxruntime {version} is excluded ({why}); pip install -U onnxruntime"
    return None


def sha256_file(path: Path, chunk: int = 1 << 22) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


@dataclass(frozen=True)
class Manifest:
    root: Path
    data: dict[str, Any]

    @property
    def precision(self) -> str:
        return self.data["precision"]

    @property
    def latent_dim(self) -> int:
        return int(self.data["latent_dim"])

    @property
    def schedule(self) -> dict[str, Any]:
        return self.data["schedule"]

    @property
    def student(self):
        """The distilled student's :class:`~ubdiff_onnx.runtime.student.Student`, or None."""
        from ubdiff_onnx.runtime.student import Student

        block = self.data.get("student")
        if block is None:
            return None
        try:
            return Student.from_manifest(block, int(self.schedule["timesteps"]), str(self.root / "manifest.json"))
        except ValueError as exc:
            raise BundleError(str(exc)) from None

    @property
    def normalization(self) -> dict[str, Any]:
        return self.data["dataset"]

    def component_path(self, name: str) -> Path:
        return self.root / self.data["components"][name]["path"]

    def component(self, name: str) -> dict[str, Any]:
        return self.data["components"][name]

    def graph_optimization(self, name: str) -> str:
        """The onnxruntime graph optimisation level component ``name`` runs at ("all" unless the
        export asked otherwise, e.g. the QDQ U-Net: ``conversion/export_qdq.py``)."""
        from ubdiff_onnx.runtime.sessions import OPTIMIZATION_LEVELS

        level = self.component(name).get("graph_optimization", "all")
        if level not in OPTIMIZATION_LEVELS:
            raise BundleError(f"{self.root / 'manifest.json'}: component {name} asks for graph optimisation {level!r}; "
                              f"expected one of {', '.join(OPTIMIZATION_LEVELS)}")
        return level

    def verify_files(self) -> None:
        """Check every component file exists and has the sha256 the manifest records."""
        for name in COMPONENTS:
            comp = self.component(name)
            path = self.component_path(name)
            if not path.is_file():
                raise BundleError(f"{path}: missing bundle file (component {name})")
            digest = sha256_file(path)
            if digest != comp["sha256"]:
                raise BundleError(f"{path}: sha256 mismatch (file modified or corrupt): expected {comp['sha256'][:12]}…, got {digest[:12]}…")


def read_manifest(bundle_dir: Path) -> Manifest:
    """Parse and validate ``manifest.json`` (format name, version, required keys)."""
    bundle_dir = Path(bundle_dir)
    path = bundle_dir / "manifest.json"
    if not bundle_dir.is_dir():
        raise BundleError(f"{bundle_dir}: bundle folder not found")
    if not path.is_file():
        raise BundleError(f"{path}: missing manifest.json (is {bundle_dir} an exported bundle?)")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BundleError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(data, dict) or data.get("format") != BUNDLE_FORMAT:
        raise BundleError(f"{path}: not an ubdiff-onnx bundle manifest (format {data.get('format') if isinstance(data, dict) else None!r})")
    version = data.get("format_version")
    if not isinstance(version, int):
        raise BundleError(f"{path}: format_version missing")
    if version > BUNDLE_FORMAT_VERSION:
        raise BundleError(f"{path}: bundle format version {version} is newer than this runtime supports ({BUNDLE_FORMAT_VERSION}); upgrade ubdiff-onnx")
    missing = [k for k in ("precision", "latent_dim", "schedule", "objective", "dataset", "components") if k not in data]
    if missing:
        raise BundleError(f"{path}: manifest lacks {', '.join(missing)}")
    comps = data["components"]
    absent = [c for c in COMPONENTS if c not in comps]
    if absent:
        raise BundleError(f"{path}: manifest has no component(s) {', '.join(absent)}")
    for name in COMPONENTS:
        for key in ("path", "sha256", "inputs", "outputs"):
            if key not in comps[name]:
                raise BundleError(f"{path}: component {name} lacks {key!r}")
    return Manifest(bundle_dir, data)


def write_manifest(bundle_dir: Path, data: dict[str, Any]) -> Path:
    """Fill sha256/bytes of each component file and write ``manifest.json`` atomically."""
    bundle_dir = Path(bundle_dir)
    for name in COMPONENTS:
        comp = data["components"][name]
        path = bundle_dir / comp["path"]
        comp["sha256"] = sha256_file(path)
        comp["bytes"] = path.stat().st_size
    data = {"format": BUNDLE_FORMAT, "format_version": 2 if data.get("student") else 1, **data}
    out = bundle_dir / "manifest.json"
    atomic_write_text(out, json.dumps(data, indent=2) + "\n")
    return out


def io_spec(latent_dim: int) -> dict[str, dict[str, Any]]:
    """The fixed ONNX input/output names and shapes of SPEC §4 ("batch" is the dynamic axis)."""
    return {
        "unet": {
            "inputs": {"x": {"dtype": "float32", "shape": ["batch", 1, latent_dim]}, "t": {"dtype": "int64", "shape": ["batch"]}},
            "outputs": {"model_output": {"dtype": "float32", "shape": ["batch", 1, latent_dim]}},
        },
        "velocity_decoder": {
            "inputs": {"latent": {"dtype": "float32", "shape": ["batch", latent_dim]}},
            "outputs": {"velocity": {"dtype": "float32", "shape": ["batch", 1, 70, 70]}},
        },
        "seismic_decoder": {
            "inputs": {"latent": {"dtype": "float32", "shape": ["batch", latent_dim]}},
            "outputs": {"seismic": {"dtype": "float32", "shape": ["batch", 5, 1000, 70]}},
        },
    }
