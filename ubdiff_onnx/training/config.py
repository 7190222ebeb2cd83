"""Per-stage training settings as data, with defaults per preset.

A *stage* is what the CLI names (``autoencoder`` … ``qat-diffusion``); a *phase* is one optimisation
problem inside it (``qat-decoders`` has two: the velocity path, then the seismic path). Each phase
has its own :class:`PhaseConfig`; ``paper``/``refactor`` follow the original UB-Diff scripts,
``tiny`` is sized so that ``--stage all`` finishes in a few minutes on two CPU cores.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any

from ubdiff_onnx.data.openfwi import SplitConfig
from ubdiff_onnx.errors import UserError

STAGES: tuple[str, ...] = ("autoencoder", "seismic", "diffusion", "qat-decoders", "qat-diffusion")
"""What ``--stage all`` runs, in order; each starts from the one before it."""
DISTILL = "distill"
STAGE_CHOICES: tuple[str, ...] = (*STAGES, DISTILL, "all")
PHASES: dict[str, tuple[str, ...]] = {
    "autoencoder": ("autoencoder",),
    "seismic": ("seismic",),
    "diffusion": ("diffusion",),
    "qat-decoders": ("qat-velocity", "qat-seismic"),
    "qat-diffusion": ("qat-diffusion",),
}
DISTILL_SOURCE = "qat-decoders"
"""The checkpoint a distillation starts from: its EMA U-Net is the diffusion stage's (the teacher),
its decoders are already quantization-aware, so the student's bundle is INT8 end to end."""
DEFAULT_STUDENT_STEPS = 4


@dataclass(frozen=True)
class PhaseConfig:
    """Optimisation settings of one phase. An epoch is one pass over the training set unless
    ``steps_per_epoch`` is set (diffusion: the data is small, so epochs are step blocks)."""

    epochs: int
    batch_size: int
    lr: float
    steps_per_epoch: int | None = None
    step_cap: int | None = None
    """At most this many optimizer steps per epoch (``--steps``, for quick runs)."""
    optimizer: str = "adamw"
    betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: float = 0.0
    lr_schedule: str = "step"
    """``step``: lr·gamma^(epoch // lr_step_epochs) (the original's); ``cosine``: to 5 % at the end."""
    lr_gamma: float = 1.0
    lr_step_epochs: int = 10
    grad_clip: float | None = None
    grad_accum: int = 1
    val_every: int = 1
    checkpoint_every: int = 1
    calibration_batches: int = 0
    """QAT phases: batches the observers see before the scales become learnable."""
    ema_decay: float | None = None
    ema_every: int = 1
    sample_steps: int = 50
    """DDIM steps of the end-of-stage sample check (and the trajectory QAT observers see)."""
    sample_count: int = 32

    def __post_init__(self) -> None:
        checks = [
            (self.epochs >= 1, f"epochs must be >= 1, got {self.epochs}"),
            (self.batch_size >= 1, f"batch size must be >= 1, got {self.batch_size}"),
            (self.lr > 0, f"learning rate must be > 0, got {self.lr}"),
            (self.steps_per_epoch is None or self.steps_per_epoch >= 1, f"steps must be >= 1, got {self.steps_per_epoch}"),
            (self.step_cap is None or self.step_cap >= 1, f"--steps must be >= 1, got {self.step_cap}"),
            (self.optimizer in ("adam", "adamw"), f"optimizer must be adam or adamw, got {self.optimizer!r}"),
            (self.lr_schedule in ("step", "cosine"), f"lr_schedule must be step or cosine, got {self.lr_schedule!r}"),
            (self.grad_accum >= 1, "grad_accum must be >= 1"),
            (self.val_every >= 1 and self.checkpoint_every >= 1, "val_every and checkpoint_every must be >= 1"),
        ]
        bad = [msg for ok, msg in checks if not ok]
        if bad:
            raise UserError("; ".join(bad))

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


@dataclass(frozen=True)
class Overrides:
    """Command-line overrides, applied to every phase of the stages being run."""

    epochs: int | None = None
    steps: int | None = None
    """Cap on optimizer steps per epoch, calibration batches and the sample check's DDIM steps:
    for quick runs and tests."""
    batch_size: int | None = None
    lr: float | None = None

    def apply(self, cfg: PhaseConfig) -> PhaseConfig:
        changes: dict[str, Any] = {}
        if self.epochs is not None:
            changes["epochs"] = self.epochs
        if self.steps is not None:
            changes["step_cap"] = self.steps
            changes["calibration_batches"] = min(cfg.calibration_batches, self.steps)
            changes["sample_steps"] = min(cfg.sample_steps, self.steps)
        if self.batch_size is not None:
            changes["batch_size"] = self.batch_size
        if self.lr is not None:
            changes["lr"] = self.lr
        return replace(cfg, **changes) if changes else cfg


def _paper() -> dict[str, PhaseConfig]:
    # train_EncDec.py / fine_tune_Dec_S.py: AdamW 1e-4, wd 1e-4, batch 64, lr ×0.98 every 10 epochs,
    # 500 and 1000 epochs, validation every 20. train_diff.py: Adam 8e-5 (0.9, 0.99), batch 16 with
    # 2 accumulation steps, 150k steps, EMA 0.995 every 10 steps, grad-norm clip 1.
    encdec = dict(batch_size=64, lr=1e-4, optimizer="adamw", weight_decay=1e-4, lr_gamma=0.98, lr_step_epochs=10, val_every=20,
                  checkpoint_every=5)
    diff = dict(batch_size=16, lr=8e-5, optimizer="adam", betas=(0.9, 0.99), grad_accum=2, grad_clip=1.0, steps_per_epoch=1000)
    qat = dict(optimizer="adamw", weight_decay=0.0, val_every=1, calibration_batches=32)
    return {
        "autoencoder": PhaseConfig(epochs=500, **encdec),
        "seismic": PhaseConfig(epochs=1000, **encdec),
        "diffusion": PhaseConfig(epochs=150, ema_decay=0.995, ema_every=10, **diff),
        "qat-velocity": PhaseConfig(epochs=20, batch_size=64, lr=1e-5, **qat),
        "qat-seismic": PhaseConfig(epochs=20, batch_size=64, lr=1e-5, **qat),
        "qat-diffusion": PhaseConfig(epochs=10, batch_size=16, lr=8e-6, optimizer="adam", betas=(0.9, 0.99), grad_clip=1.0,
                                     steps_per_epoch=1000, calibration_batches=64),
        # Progressive distillation (Salimans & Ho 2022 trained every round alike, Adam, lr annealed
        # within the round): 4000 steps per round, so a 4-step student is 6 rounds = 24k steps,
        # about 1/6 of the teacher's training; then the last round again with fake-quant.
        "distill": PhaseConfig(epochs=4, batch_size=64, lr=5e-5, optimizer="adam", betas=(0.9, 0.99), grad_clip=1.0,
                               steps_per_epoch=1000, lr_schedule="cosine", ema_decay=0.995, ema_every=10),
        "qat-distill": PhaseConfig(epochs=2, batch_size=64, lr=8e-6, optimizer="adam", betas=(0.9, 0.99), grad_clip=1.0,
                                   steps_per_epoch=1000, calibration_batches=64),
    }


def _tiny() -> dict[str, PhaseConfig]:
    # Sized for `--stage all` in under 10 minutes on 2 quiet CPU cores with the 256-sample embedded
    # dataset (about 1000 autoencoder steps, 350 seismic, 1000 diffusion, 440 QAT steps).
    return {
        "autoencoder": PhaseConfig(epochs=140, batch_size=32, lr=5e-3, weight_decay=1e-4, lr_schedule="cosine",
                                   val_every=10, checkpoint_every=5),
        "seismic": PhaseConfig(epochs=25, batch_size=16, lr=3e-3, weight_decay=1e-4, lr_schedule="cosine", val_every=5,
                               checkpoint_every=5),
        "diffusion": PhaseConfig(epochs=4, batch_size=64, lr=1e-3, optimizer="adam", betas=(0.9, 0.99), grad_clip=1.0,
                                 steps_per_epoch=250, lr_schedule="cosine", ema_decay=0.995),
        "qat-velocity": PhaseConfig(epochs=10, batch_size=32, lr=1e-4, calibration_batches=4, val_every=5, checkpoint_every=5),
        "qat-seismic": PhaseConfig(epochs=3, batch_size=16, lr=1e-4, calibration_batches=4),
        "qat-diffusion": PhaseConfig(epochs=2, batch_size=64, lr=2e-5, optimizer="adam", betas=(0.9, 0.99), grad_clip=1.0,
                                     steps_per_epoch=150, calibration_batches=16),
        "distill": PhaseConfig(epochs=1, batch_size=64, lr=3e-4, optimizer="adam", betas=(0.9, 0.99), grad_clip=1.0,
                               steps_per_epoch=150, lr_schedule="cosine", ema_decay=0.995),
        "qat-distill": PhaseConfig(epochs=1, batch_size=64, lr=2e-5, optimizer="adam", betas=(0.9, 0.99), grad_clip=1.0,
                                   steps_per_epoch=100, calibration_batches=16),
    }


def _small() -> dict[str, PhaseConfig]:
    # The quickstart's recipe (docs/training.md, "The small preset"): tiny's phases, with the
    # autoencoder drawing from the embedded maps plus SMALL_EXTRA_MAPS generator maps (an epoch keeps
    # the folder's length, so 140 epochs are still ~1000 steps) and the wider seismic decoder trained
    # longer at a lower rate (its big Linear is 4x tiny's).
    t = _tiny()
    return {
        **t,
        "seismic": PhaseConfig(epochs=80, batch_size=32, lr=1e-3, weight_decay=1e-4, lr_schedule="cosine", val_every=10,
                               checkpoint_every=10),
        "qat-seismic": PhaseConfig(epochs=3, batch_size=16, lr=5e-5, calibration_batches=4),
    }


SMALL_EXTRA_MAPS = 16384


def extra_velocity_default(preset: str) -> int:
    """Generator maps added to the velocity-only stages when the data came from ``data synth``."""
    return SMALL_EXTRA_MAPS if preset == "small" else 0


def phase_defaults(preset: str) -> dict[str, PhaseConfig]:
    """Default :class:`PhaseConfig` of every phase for a preset (``refactor`` trains like ``paper``)."""
    if preset in ("paper", "refactor"):
        return _paper()
    if preset == "tiny":
        return _tiny()
    if preset == "small":
        return _small()
    raise UserError(f"--preset: unknown preset {preset!r}; expected one of paper, refactor, small, tiny")


def split_defaults(preset: str, seed: int) -> SplitConfig:
    """Held-out validation and UB-Diff's unbalanced paired subset.

    paper: the original kept 24k maps for training and 5k of them paired (≈20.8 %); tiny pairs all.
    """
    if preset in ("paper", "refactor"):
        return SplitConfig(val_fraction=0.2, paired_fraction=5000 / 24000, seed=seed)
    return SplitConfig(val_fraction=0.1, paired_fraction=1.0, seed=seed)


def stages_for(stage: str, student_steps: int | None = None, timesteps: int = 256) -> tuple[str, ...]:
    """Stage keys to run. A distillation's key names its student (``distill-4``), so students of
    several step counts live side by side in one run (``distill-4.pt``, ``distill-8.pt``)."""
    if student_steps is not None and stage != DISTILL:
        raise UserError(f"--student-steps applies to --stage {DISTILL}, not --stage {stage}")
    if stage == DISTILL:
        return (distill_stage(DEFAULT_STUDENT_STEPS if student_steps is None else student_steps, timesteps),)
    if stage == "all":
        return STAGES
    if stage not in STAGES:
        raise UserError(f"--stage: unknown stage {stage!r}; expected one of {', '.join(STAGE_CHOICES)}")
    return (stage,)


# -- distillation: stage and phase names carry the step counts --------------------------------
def distill_stage(student_steps: int, timesteps: int = 256) -> str:
    """``distill-N``, after checking that N halvings of T land on whole timesteps."""
    allowed = [2**k for k in range(timesteps.bit_length()) if 2**k < timesteps]
    if student_steps not in allowed or timesteps & (timesteps - 1):
        raise UserError(f"--student-steps: expected a power of two below T={timesteps} ({', '.join(map(str, allowed))}), "
                        f"got {student_steps}: each distillation round halves the teacher's steps")
    return f"{DISTILL}-{student_steps}"


def is_distill(stage: str) -> bool:
    return stage.startswith(f"{DISTILL}-")


def student_steps_of(name: str) -> int:
    """N of a distillation stage or phase name (``distill-4``, ``distill-16``, ``qat-distill-4``)."""
    return int(name.rsplit("-", 1)[1])


def distill_rounds(student_steps: int, timesteps: int = 256) -> tuple[int, ...]:
    """Student step counts of the rounds: T/2, T/4, …, N (each round halves its teacher's)."""
    rounds, n = [], timesteps // 2
    while n >= student_steps:
        rounds.append(n)
        n //= 2
    return tuple(rounds)


def phases_of(stage: str, timesteps: int = 256) -> tuple[str, ...]:
    """The phases of a stage; a distillation has one per halving round, then QAT of the student."""
    if not is_distill(stage):
        return PHASES[stage]
    n = student_steps_of(stage)
    return (*(f"{DISTILL}-{r}" for r in distill_rounds(n, timesteps)), f"qat-{DISTILL}-{n}")


def config_key(phase_name: str) -> str:
    """The :class:`PhaseConfig` a phase uses: every round shares ``distill``, QAT ``qat-distill``."""
    for base in (f"qat-{DISTILL}", DISTILL):
        if phase_name.startswith(f"{base}-"):
            return base
    return phase_name


def source_stage(stage: str) -> str | None:
    """The stage whose checkpoint ``stage`` starts from (None for the first)."""
    if is_distill(stage):
        return DISTILL_SOURCE
    i = STAGES.index(stage)
    return STAGES[i - 1] if i else None


def downstream(stage: str, existing: list[str]) -> list[str]:
    """Those of ``existing`` stage keys built (directly or not) on ``stage``'s weights."""
    out = []
    for s in existing:
        up = source_stage(s)
        while up is not None and up != stage:
            up = source_stage(up)
        if up == stage:
            out.append(s)
    return out
