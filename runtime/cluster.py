"""Write the files of a generation run as Ray tasks (``sample --layout openfwi --ray auto|ADDRESS``).

Each actor holds one ``BundleSampler`` (its onnxruntime sessions are created once per actor) and
writes whole files with :func:`ubdiff_onnx.runtime.openfwi_writer.write_file`, straight into the
output folder: the bundle and ``--out`` must be at a path every node sees (a shared file system).
Results are byte-identical to a single-process run because a file's bytes depend only on its
sample range and the recipe. Ray is an optional extra (``pip install 'ubdiff-onnx[cluster]'``) and
is imported only here, only when ``--ray`` is given.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from ubdiff_onnx.errors import UserError
from ubdiff_onnx.runtime.manifest import BundleError
from ubdiff_onnx.runtime.openfwi_writer import Recipe, write_file
from ubdiff_onnx.runtime.shards import FileSpec


class SamplerActor:
    """One sampler per actor process; ``write`` makes one file pair."""

    def __init__(self, bundle_dir: str, threads: int) -> None:
        from ubdiff_onnx.runtime.sampler import BundleSampler

        self.sampler = BundleSampler(Path(bundle_dir), threads=threads)

    def write(self, out: str, spec: FileSpec, recipe: Recipe, dtype_name: str, progress=None) -> FileSpec:
        """``progress``: a ``ray.util.queue.Queue`` that gets the size of every finished batch."""
        import numpy as np

        report = None if progress is None else progress.put_nowait
        return write_file(self.sampler, Path(out), spec, recipe, np.dtype(dtype_name), report)


def _import_ray():
    try:
        import ray
    except ImportError:
        raise UserError("--ray needs Ray: pip install 'ubdiff-onnx[cluster]'") from None
    return ray


def run_on_ray(address: str, bundle_dir: Path, out: Path, files: list[FileSpec], recipe: Recipe, dtype_name: str, *,
               threads: int = 1, actors: int = 0, on_file: Callable[[FileSpec], None] | None = None,
               progress: Callable[[int], None] | None = None, say: Callable[[str], None] = print) -> int:
    """Write ``files`` on a Ray cluster; returns the number of actors used.

    ``address``: ``auto`` joins the cluster in ``RAY_ADDRESS`` or the one ``ray start`` made on this
    machine and otherwise starts a local one; anything else is passed to ``ray.init(address=…)``.
    A Ray session that is already initialised (e.g. by a test or a notebook) is used as it is.
    ``actors`` = 0: one per ``threads`` CPUs of the cluster (at most one per file). ``progress`` gets
    the samples of every finished batch, ``on_file`` every finished file.
    """
    ray = _import_ray()
    from ray.util.queue import Queue

    started, pool, batches = False, [], None
    if not ray.is_initialized():
        try:
            ray.init(address=None if address == "auto" else address, logging_level="WARNING")
        except (ConnectionError, ValueError, RuntimeError) as exc:
            raise UserError(f"--ray {address}: cannot connect to a Ray cluster ({exc})") from None
        started = True
    try:
        threads = max(threads, 1)
        cpus = int(ray.cluster_resources().get("CPU", 1))
        n = min(actors or max(cpus // threads, 1), len(files)) or 1
        say(f"Ray: {n} actor(s) × {threads} thread(s) on {cpus} cluster CPUs")
        batches = Queue(actor_options={"num_cpus": 0}) if progress else None
        remote_actor = ray.remote(num_cpus=threads)(SamplerActor)
        pool = [remote_actor.remote(str(Path(bundle_dir).resolve()), threads) for _ in range(n)]
        todo, running = list(files), {}

        def submit(actor) -> None:
            if todo:
                running[actor.write.remote(str(Path(out).resolve()), todo.pop(0), recipe, dtype_name, batches)] = actor

        def drain() -> None:
            if batches is not None and (k := batches.qsize()):
                for size in batches.get_nowait_batch(k):
                    progress(size)

        for actor in pool:
            submit(actor)
        while running:
            ready, _ = ray.wait(list(running), num_returns=1, timeout=0.5)
            drain()
            if not ready:
                continue
            actor = running.pop(ready[0])
            try:
                spec = ray.get(ready[0])
            except ray.exceptions.RayTaskError as exc:
                cause = getattr(exc, "cause", None)
                if isinstance(cause, (UserError, OSError)):
                    raise cause from None
                if isinstance(cause, BundleError):  # e.g. a node whose onnxruntime is older than the bundle needs
                    raise UserError(f"on a Ray node: {cause}") from None
                raise
            drain()
            if on_file:
                on_file(spec)
            submit(actor)
        return n
    finally:
        for actor in pool:  # also on errors and Ctrl-C: no actor keeps writing after we return
            ray.kill(actor)
        if batches is not None:
            batches.shutdown()
        if started:
            ray.shutdown()
