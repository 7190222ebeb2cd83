"""``ubdiff-onnx quickstart``: the whole mission on the embedded dataset, as seven resumable steps.

Each step runs one ``ubdiff-onnx`` command in its own process — exactly what a user would type —
with its output in ``OUT/logs/<step>.log``. Separate processes keep the torch-free steps torch-free
(sampling, the onnxruntime benchmark workers) and make every step restartable. A finished step is
recorded in ``OUT/quickstart.json`` with its artefacts; re-running skips it (and says so) unless
``force``. ``OUT/report.md`` is written at the end from the steps' own JSON outputs.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

from ubdiff_onnx._source_tree import python_module_command
from ubdiff_onnx.errors import UserError
from ubdiff_onnx.runtime.multistep import DEFAULT_SAMPLER, DEFAULT_STEPS

STATE_FILE = "quickstart.json"


@dataclass(frozen=True)
class QuickstartConfig:
    """Sizes of the run; ``smoke`` is the even smaller configuration the tests use."""

    data_samples: int = 256
    preset: str = "small"                   # the quickstart's model (docs/training.md, "The small preset"); tests use tiny
    train_steps: int | None = None          # None: the preset's defaults (the full training)
    train_epochs: int | None = None
    sample_count: int = 8
    sampler: str = DEFAULT_SAMPLER         # sample and evaluate use the default sampler; bench compares it with DDIM
    sample_steps: int = DEFAULT_STEPS
    ddim_steps: int = 50                   # bench's DDIM baseline
    bench_repeat: int = 20                 # 2 rounds × 20 timed calls per component: ~2 min (was 3 × 30, 4.5 min) for the 30-minute budget
    bench_rounds: int = 2
    bench_threads: str = "1,2"
    eval_samples: int = 512                # issue 21's acceptance counts: 512 samples of the INT8 (QAT) bundle and its FP32 twin
    ptq_eval_samples: int = 128            # the PTQ baseline, only compared with QAT: fewer, to keep the quickstart's budget
    judge_samples: int = 1024              # fresh pairs for the judge (not the diffusion model's training set)
    heldout_samples: int = 512             # pairs no training saw: the judge's ceiling, the Fréchet floors (256 vs 256), physics of real pairs
    judge_epochs: int = 16                 # measured (docs/evaluate.md): 1,000 pairs × 16 epochs, batch 16, lr 1e-3 cosine →
    judge_batch: int = 16                  # held-out SSIM 0.75 vs the mean map's 0.63; OpenFWI's lr 1e-4 was still below
    judge_lr: float = 1e-3                 # the mean map after 4 epochs
    judge_steps: int | None = None
    seed: int = 0

    @classmethod
    def smoke(cls) -> "QuickstartConfig":
        return cls(data_samples=16, preset="tiny", train_steps=3, train_epochs=1, sample_count=2, sample_steps=4, ddim_steps=4, bench_repeat=2, bench_rounds=1,
                   bench_threads="1", eval_samples=3, ptq_eval_samples=3, judge_samples=12, heldout_samples=6, judge_epochs=1, judge_steps=2)


@dataclass
class Step:
    name: str
    title: str
    expected_s: float                       # rough duration on 2 cores, for the time-left display
    run: Callable[["Quickstart"], list[str] | None]
    outputs: Callable[["Quickstart"], list[Path]] = field(default=lambda q: [])


class Quickstart:
    def __init__(self, out_dir: Path, cfg: QuickstartConfig, force: bool = False, data: Path | None = None) -> None:
        self.out = Path(out_dir)
        self.cfg = cfg
        self.force = force
        self.user_data = data
        self.out.mkdir(parents=True, exist_ok=True)
        (self.out / "logs").mkdir(exist_ok=True)
        self.state_path = self.out / STATE_FILE
        self.state: dict[str, Any] = self._load_state()

    # -- paths ---------------------------------------------------------------------------------
    @property
    def run_dir(self) -> Path:
        return self.out / "run"

    def bundle(self, kind: str) -> Path:
        return self.out / "bundles" / kind

    @property
    def data_dir(self) -> Path:
        return Path(self.state["data"]["data_dir"])

    # -- state ---------------------------------------------------------------------------------
    def _load_state(self) -> dict[str, Any]:
        if self.state_path.exists():
            try:
                state = json.loads(self.state_path.read_text())
            except json.JSONDecodeError:
                raise UserError(f"{self.state_path}: corrupt quickstart state; delete it or pass --force") from None
            if state.get("config") != asdict(self.cfg) and not self.force:
                raise UserError(f"{self.out}: made with another quickstart configuration; pass --force to redo it or choose another OUT_DIR")
            return state
        return {"config": asdict(self.cfg)}

    def _save_state(self) -> None:
        self.state["config"] = asdict(self.cfg)
        tmp = self.state_path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(self.state, indent=2) + "\n")
        os.replace(tmp, self.state_path)

    def done(self, step: Step) -> bool:
        entry = self.state.get(step.name)
        return bool(entry and entry.get("done") and all(Path(p).exists() for p in entry.get("outputs", [])))

    # -- running commands ----------------------------------------------------------------------
    def cli(self, step: str, *args: str | Path) -> None:
        """Run ``ubdiff-onnx ARGS`` in a fresh process; its output goes to logs/<step>.log."""
        cmd = python_module_command("ubdiff_onnx", *args)
        log = self.out / "logs" / f"{step}.log"
        with open(log, "a", encoding="utf-8") as fh:
            fh.write(f"$ ubdiff-onnx {' '.join(map(str, args))}\n")
            fh.flush()
            proc = subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"})
        if proc.returncode != 0:
            last = [ln for ln in log.read_text(encoding="utf-8", errors="replace").splitlines() if ln.strip()][-1:] or ["no output"]
            raise UserError(f"quickstart step {step!r} failed (`ubdiff-onnx {args[0]}` exit {proc.returncode}): {last[0].strip()} — full log: {log}")


# -- the seven steps -------------------------------------------------------------------------
def _data(q: Quickstart) -> list[str]:
    if q.user_data is not None:
        path = q.user_data
    else:
        from ubdiff_onnx.data.embedded import embedded_dataset

        path = embedded_dataset(q.cfg.data_samples, progress=False)
    q.state["data"] = {"data_dir": str(path)}
    return [str(path)]


def _train(q: Quickstart) -> list[str]:
    args: list[str | Path] = ["train", q.run_dir, "--data", q.data_dir, "--preset", q.cfg.preset, "--stage", "all", "--seed", str(q.cfg.seed), "--no-progress"]
    if q.force:
        args.append("--overwrite")
    elif (q.run_dir / "run.json").exists():
        args.append("--resume")  # an interrupted training continues from its last checkpoint
    if q.cfg.train_steps:
        args += ["--steps", str(q.cfg.train_steps)]
    if q.cfg.train_epochs:
        args += ["--epochs", str(q.cfg.train_epochs)]
    q.cli("train", *args)
    return [str(q.run_dir / "last.pt")]


def _float_checkpoint(q: Quickstart) -> Path:
    return q.run_dir / "diffusion.pt"


def _qat_checkpoint(q: Quickstart) -> Path:
    """The last QAT stage: it carries the scales of all three components (qat-diffusion starts
    from qat-decoders)."""
    return q.run_dir / "qat-diffusion.pt"


BUNDLES = ("fp32", "qdq", "fp32-qat", "qdq-ptq", "torchscript")
"""fp32 and torchscript from the float model (run/diffusion.pt); qdq from the QAT checkpoint's
scales and fp32-qat from its float weights (QAT fine-tunes the weights too, so the INT8 bundle is
judged against the float model *of the same checkpoint*); qdq-ptq is post-training quantization of
the float model — the baseline QAT has to beat, judged against fp32."""


def _export(q: Quickstart) -> list[str]:
    ckpt = _float_checkpoint(q)
    (q.out / "bundles").mkdir(exist_ok=True)
    q.cli("export", "export", ckpt, q.bundle("fp32"), "--format", "fp32", "--overwrite")
    q.cli("export", "export", _qat_checkpoint(q), q.bundle("qdq"), "--format", "qdq", "--overwrite")
    q.cli("export", "export", _qat_checkpoint(q), q.bundle("fp32-qat"), "--format", "fp32", "--overwrite")
    q.cli("export", "export", ckpt, q.bundle("qdq-ptq"), "--format", "qdq", "--calibrate", q.data_dir, "--overwrite")
    q.cli("export", "export", ckpt, q.bundle("torchscript"), "--format", "torchscript", "--overwrite")
    return [str(q.bundle(k) / "manifest.json") for k in BUNDLES]


def _sample(q: Quickstart) -> list[str]:
    out = q.out / "samples"
    out.mkdir(exist_ok=True)
    q.cli("sample", "sample", q.bundle("qdq"), "--num-samples", str(q.cfg.sample_count), "--sampler", q.cfg.sampler, "--steps", str(q.cfg.sample_steps),
          "--seed", str(q.cfg.seed), "--out", out / "samples.npz", "--png", out / "png")
    return [str(out / "samples.npz")]


def _bench(q: Quickstart) -> list[str]:
    q.cli("bench", "bench", q.bundle("fp32"), q.bundle("qdq"), q.bundle("torchscript"), "--threads", q.cfg.bench_threads,
          "--steps", str(q.cfg.ddim_steps), "--samplers", f"{q.cfg.sampler}:{q.cfg.sample_steps}", "--repeat", str(q.cfg.bench_repeat),
          "--rounds", str(q.cfg.bench_rounds), "--no-ddpm", "--out", q.out / "bench")
    return [str(q.out / "bench" / "bench.json")]


JUDGE_DATA_SEED = 20250302   # seeds no other data of the quickstart uses (the embedded set is 20250301)
HELDOUT_SEED = 20250303


def _judge(q: Quickstart) -> list[str]:
    """Fresh synthetic pairs → the judge (OpenFWI's InversionNet, CPU size) → tested on held-out pairs."""
    family = "curvefault-a"
    if q.user_data is not None:
        from ubdiff_onnx.data.synth import read_metadata

        family = (read_metadata(q.user_data) or {}).get("family") or family
    jdata, held, judge = q.out / "judge-data", q.out / "heldout-data", q.out / "judge"
    for folder, n, seed in ((jdata, q.cfg.judge_samples, JUDGE_DATA_SEED), (held, q.cfg.heldout_samples, HELDOUT_SEED)):
        if not (folder / "synth.json").exists():
            q.cli("judge", "data", "synth", folder, "--family", family, "--samples", str(n), "--seed", str(seed), "--overwrite")
    args: list[str | Path] = ["inversion", "train", jdata, judge, "--epochs", str(q.cfg.judge_epochs), "--batch-size", str(q.cfg.judge_batch),
                              "--lr", str(q.cfg.judge_lr), "--seed", str(q.cfg.seed), "--no-progress",
                              "--threads", str(min(4, os.cpu_count() or 1))]  # nothing else runs beside this step: all cores (measured 33 → ~20 ms a pair on 2)
    if q.cfg.judge_steps:
        args += ["--steps", str(q.cfg.judge_steps)]
    args.append("--resume" if (judge / "judge.pt").exists() and not q.force else "--overwrite")
    q.cli("judge", *args)
    q.cli("judge", "inversion", "test", judge, held, "--out", judge / "heldout-test.json")
    q.state["judge_data"] = {"judge_data": str(jdata), "heldout": str(held)}
    return [str(judge / "judge.pt"), str(judge / "heldout-test.json")]


def _evaluate(q: Quickstart) -> list[str]:
    outputs = []
    held = q.out / "heldout-data"
    for bundle, reference, out, n in (("qdq", "fp32-qat", "evaluation", q.cfg.eval_samples), ("qdq-ptq", "fp32", "evaluation-ptq", q.cfg.ptq_eval_samples)):
        q.cli("evaluate", "evaluate", "--bundle", q.bundle(bundle), "--reference", q.bundle(reference), "--checkpoint", _float_checkpoint(q),
              "--judge", q.out / "judge", "--data", held, "--num-samples", str(n), "--sampler", q.cfg.sampler, "--steps", str(q.cfg.sample_steps), "--seed", str(q.cfg.seed),
              "--train-run", q.run_dir, "--out", q.out / out)
        outputs.append(str(q.out / out / "evaluate.json"))
    return outputs


STEPS = [
    Step("data", "make or reuse the embedded OpenFWI-like dataset", 30, _data),
    Step("train", "train the model: autoencoder → seismic → diffusion → QAT decoders → QAT diffusion", 720, _train),
    Step("export", "export FP32, INT8 QDQ (QAT scales, and PTQ) and TorchScript bundles", 110, _export),
    Step("sample", "sample from the INT8 bundle with the pure onnxruntime runtime", 20, _sample),
    Step("bench", "benchmark onnxruntime vs TorchScript, FP32 vs INT8", 120, _bench),
    Step("judge", "make fresh and held-out pairs, train the judge (InversionNet) on the fresh ones, test it on the held-out ones", 540, _judge),
    Step("evaluate", "evaluate INT8 (QAT and PTQ) against FP32 and against held-out real pairs (judge, distribution, physics)", 60, _evaluate),
]


def run_quickstart(q: Quickstart, on_step: Callable[[int, Step, str, float], None] | None = None) -> Path:
    """Run the steps not done yet, then write report.md; ``on_step(i, step, status, seconds_left)``."""
    from ubdiff_onnx.quickstart_report import write_report

    for i, step in enumerate(STEPS):
        left = sum(s.expected_s for s in STEPS[i:] if not q.done(s) or q.force)
        if q.done(step) and not q.force:
            if on_step:
                on_step(i, step, "skipped (already done)", left)
            continue
        if on_step:
            on_step(i, step, "running", left)
        t0 = time.perf_counter()
        outputs = step.run(q) or []
        q.state[step.name] = {**q.state.get(step.name, {}), "done": True, "seconds": round(time.perf_counter() - t0, 1), "outputs": outputs}
        q._save_state()
    return write_report(q)
