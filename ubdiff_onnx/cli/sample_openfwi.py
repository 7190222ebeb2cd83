"""``sample --layout openfwi``: write an OpenFWI folder in files, by shard, resumable, optionally on Ray.

The command module (``sample_cmd.py``) only parses options and dispatches here; the file plan, the
writer and the Ray runner live in ``ubdiff_onnx.runtime`` (``shards``, ``openfwi_writer``, ``cluster``).
"""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from pathlib import Path
from typing import Any, Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, ProgressColumn, TextColumn, TimeRemainingColumn
from rich.text import Text

from ubdiff_onnx.errors import UserError


class RateColumn(ProgressColumn):
    def render(self, task) -> Text:
        return Text(f"{task.speed:.2f} samples/s" if task.speed else "… samples/s")


@contextlib.contextmanager
def _sigterm_as_interrupt():
    """SIGTERM raises KeyboardInterrupt (main thread only), so the file in progress is removed, not left as a temporary."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def sample_openfwi(
    bundle_dir: Path,
    out: Path,
    *,
    num_samples: int,
    steps: Optional[int],
    sampler: Optional[str],
    seed: int,
    eta: float,
    batch_size: int,
    threads: int,
    per_file: int,
    dtype: str,
    shard: Optional[str],
    ray: Optional[str],
    ray_actors: int = 0,
    options: Optional[dict[str, Any]] = None,
    console: Optional[Console] = None,
) -> None:
    from ubdiff_onnx.runtime import openfwi_writer as ow
    from ubdiff_onnx.runtime.manifest import BundleError
    from ubdiff_onnx.runtime.sampler import BundleSampler
    from ubdiff_onnx.runtime.shards import parse_shard, plan_files, shard_files

    console = console or Console(stderr=True)
    np_dtype = ow.parse_dtype(dtype)
    shard_kn = parse_shard(shard) if shard is not None else None
    files = plan_files(num_samples, per_file)
    mine = shard_files(files, shard_kn)

    try:
        # With --ray the actors make their own samplers; this one only checks the bundle here, where
        # a problem is one clear line rather than an error from inside a remote actor.
        smp = BundleSampler(bundle_dir, threads=threads if ray is None else 1)
        manifest = smp.manifest
    except BundleError as exc:
        raise UserError(str(exc)) from None
    opts = dict(options or {})
    try:  # the sampler's own checks and default step count (``runtime.multistep``)
        steps = len(smp.make_scheduler(sampler, steps, eta, opts.get("spacing"), opts.get("clip_x0", True)).timesteps)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    sampler = sampler or smp.default_sampler  # recorded in generation.json, so a resumed run must match

    recipe = ow.Recipe(sampler=sampler, steps=steps, seed=seed, eta=eta, batch_size=batch_size, options=opts)
    record = ow.generation_record(manifest, recipe, num_samples, per_file, np_dtype, files)
    # Every refusal (a foreign folder, too little disk space) comes before anything is written: a
    # refused run leaves --out as it was, and does not create it.
    ow.check_output(out, record)
    todo = ow.pending(out, mine, np_dtype)
    where = f"shard {shard_kn[0]}/{shard_kn[1]}: " if shard_kn else ""
    need = sum(ow.file_bytes(f, np_dtype) for f in todo)
    whole = sum(ow.file_bytes(f, np_dtype) for f in files)
    free = ow.check_free_space(out, need)
    ow.open_output(out, record)
    ow.remove_stale_temporaries(out, mine)
    console.print(
        f"{where}{len(todo)} of {len(mine)} file(s) to write ({len(mine) - len(todo)} complete), "
        f"{ow.format_bytes(need)} of {ow.format_bytes(whole)} for the whole run; {ow.format_bytes(free)} free on {out}"
    )
    if not todo:
        console.print(f"{out}: nothing to do, every file of this {'shard' if shard_kn else 'run'} is complete")
        return

    written: list = []
    t0 = time.perf_counter()
    try:  # SIGTERM (SLURM's scancel or time limit) stops as cleanly as Ctrl-C
        with _sigterm_as_interrupt(), Progress(TextColumn("[bold]generating[/]"), BarColumn(), MofNCompleteColumn(), TextColumn("samples"),
                                               RateColumn(), TimeRemainingColumn(), console=console) as bar:
            task = bar.add_task("samples", total=sum(f.samples for f in todo))
            if ray is None:
                ow.generate(smp, out, todo, recipe, np_dtype, progress=lambda n: bar.advance(task, n), on_file=written.append)
            else:
                from ubdiff_onnx.runtime.cluster import run_on_ray

                del smp

                run_on_ray(ray, bundle_dir, out, todo, recipe, np_dtype.name, threads=threads or 1, actors=ray_actors, on_file=written.append,
                           progress=lambda n: bar.advance(task, n), say=console.print)
    except KeyboardInterrupt:
        console.print(f"interrupted: {len(written)} file(s) written in this run are complete and kept; run the same command again to resume")
        raise typer.Exit(code=130) from None
    n = sum(f.samples for f in written)
    elapsed = time.perf_counter() - t0
    console.print(f"wrote {len(written)} file pair(s), {n} samples to {out} in {elapsed:.1f} s ({n / elapsed:.2f} samples/s; {sampler}, {steps} steps, seed {seed})")
