"""Measure ONE bundle at ONE thread count in this (fresh) process and write the numbers as JSON.

    python -m ubdiff_onnx.bench.worker BUNDLE --threads T --mode measure|sample|cli --out FILE.json [...]

Modes:
* ``measure``: load the three components (timed one by one), then per component ``--warmup`` +
  ``--repeat`` batch-1 calls (U-Net step, velocity decoder, seismic decoder), then ``--e2e-repeat``
  DDIM-``--steps`` samples, ``--e2e-repeat`` samples of each ``--samplers`` NAME:STEPS setting (keyed
  ``NAME-STEPS``) and ``--ddpm-repeat`` full DDPM samples through ``BundleSampler.sample``
  (initial noise, scheduler, decode and denormalisation included). Peak RSS is read after each phase.
* ``sample``: what a Raspberry Pi does — verify + load the bundle and make ONE DDIM-``--steps``
  sample, nothing else; its peak RSS is the memory figure of the bundle.
* ``cli``: run ``ubdiff-onnx sample`` (the real command, in this process) with the arguments after
  ``--``, then report its wall time and peak RSS.

An ONNX bundle's process imports numpy, onnxruntime and ``ubdiff_onnx.runtime`` only (``measure`` and
``sample``; importing torch slows onnxruntime, SPEC §5); the JSON records whether torch ended up in
``sys.modules``. TorchScript bundles import torch through the runtime's TorchScript backend.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from pathlib import Path
from typing import Any


def _status_kb(key: str) -> int | None:
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def memory() -> dict[str, int | None]:
    """Current and peak resident set size of this process, in bytes."""
    ru = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    rss, hwm = _status_kb("VmRSS"), _status_kb("VmHWM")
    return {
        "rss_bytes": rss * 1024 if rss is not None else None,
        "vmhwm_bytes": hwm * 1024 if hwm is not None else None,
        "ru_maxrss_bytes": int(ru) * (1 if sys.platform == "darwin" else 1024),
    }


def _stats(ns: list[int]) -> dict[str, Any]:
    import numpy as np

    a = np.asarray(ns, dtype=np.float64) / 1e6
    return {"n": int(a.size), "min_ms": float(a.min()), "median_ms": float(np.median(a)), "p90_ms": float(np.percentile(a, 90)),
            "mean_ms": float(a.mean()), "samples_ms": [round(float(x), 4) for x in a]}


def _load(bundle: Path, threads: int, runtime: str, verify: bool):
    """BundleSampler with each component's load timed on its own."""
    from ubdiff_onnx.runtime import sampler as sampler_mod
    from ubdiff_onnx.runtime.backends import OrtComponent, TorchScriptComponent
    from ubdiff_onnx.runtime.manifest import COMPONENTS

    times: dict[str, float] = {}
    original = sampler_mod.load_components

    def timed_load(manifest, runtime_, threads_):
        is_ts = manifest.precision.startswith("torchscript")
        if is_ts != (runtime_ == "torchscript"):
            return original(manifest, runtime_, threads_)  # raises the runtime's own clear error
        out = {}
        for name in COMPONENTS:
            comp, path = manifest.component(name), manifest.component_path(name)
            t0 = time.perf_counter()
            if is_ts:
                out[name] = TorchScriptComponent(path, list(comp["inputs"]), threads_)
            else:
                out[name] = OrtComponent(path, list(comp["inputs"]), list(comp["outputs"]), threads_, manifest.graph_optimization(name), name)
            times[name] = time.perf_counter() - t0
        return out

    sampler_mod.load_components = timed_load
    try:
        t0 = time.perf_counter()
        smp = sampler_mod.BundleSampler(bundle, threads=threads, verify=verify, runtime=runtime)
        total = time.perf_counter() - t0
    finally:
        sampler_mod.load_components = original
    return smp, {"total_s": total, "per_component_s": times}


def _time_calls(fn, warmup: int, repeat: int) -> dict[str, Any]:
    for _ in range(warmup):
        fn()
    ns = []
    c0, w0 = time.process_time(), time.perf_counter()
    for _ in range(repeat):
        t0 = time.perf_counter_ns()
        fn()
        ns.append(time.perf_counter_ns() - t0)
    out = _stats(ns)
    wall = time.perf_counter() - w0
    # CPU seconds this process got per wall second while timing: ~threads when it had its cores to
    # itself (onnxruntime's pool spins), lower when other processes took the CPUs.
    out["cpu_per_wall"] = (time.process_time() - c0) / wall if wall > 0 else None
    return out


def _one_sample(smp, sampler: str, steps: int | None, seed: int) -> None:
    for _batch in smp.sample(1, steps=steps, sampler=sampler, seed=seed, batch_size=1):
        pass


def parse_samplers(text: str) -> list[tuple[str, int]]:
    """"unipc:10,dpmpp3m:8" → [("unipc", 10), ("dpmpp3m", 8)] (ValueError on a malformed entry)."""
    from ubdiff_onnx.runtime.multistep import SAMPLERS, check_sampler_options

    out = []
    for item in filter(None, (x.strip() for x in (text or "").split(","))):
        name, _, steps = item.partition(":")
        if name not in SAMPLERS or not steps.isdigit() or int(steps) < 1:
            raise ValueError(f"--samplers: expected NAME:STEPS entries with NAME in {', '.join(SAMPLERS)}, got {item!r}")
        try:
            check_sampler_options(name, int(steps), 0.0, None)  # e.g. too few steps for the solver's order
        except ValueError as exc:
            raise ValueError(f"--samplers {item}: {exc}") from None
        out.append((name, int(steps)))
    return list(dict.fromkeys(out))


def run_measure(args) -> dict[str, Any]:
    import numpy as np

    smp, load = _load(args.bundle, args.threads, args.runtime, verify=False)
    mem = {"after_load": memory()}
    L = smp.latent_dim
    rng = np.random.default_rng(args.seed)
    x = rng.standard_normal((1, 1, L), dtype=np.float32)
    latent = rng.standard_normal((1, L), dtype=np.float32)
    ddim_ts = [int(t) for t in smp.make_scheduler("ddim", args.steps).timesteps]
    state = {"i": 0}

    def unet_call():
        t = ddim_ts[state["i"] % len(ddim_ts)]  # walk the DDIM trajectory's timesteps
        state["i"] += 1
        smp.unet(x, t)

    vel = smp.components["velocity_decoder"]
    seis = smp.components["seismic_decoder"]
    comps = {
        "unet": _time_calls(unet_call, args.warmup, args.repeat),
        "velocity_decoder": _time_calls(lambda: vel.run({"latent": latent}), args.warmup, args.repeat),
        "seismic_decoder": _time_calls(lambda: seis.run({"latent": latent}), args.warmup, args.repeat),
    }
    mem["after_components"] = memory()
    e2e: dict[str, Any] = {}
    seeds = iter(range(args.seed, args.seed + 10_000))
    if args.e2e_repeat > 0:
        e2e["ddim"] = _time_calls(lambda: _one_sample(smp, "ddim", args.steps, next(seeds)), min(args.warmup, 1), args.e2e_repeat)
        e2e["ddim"]["steps"] = args.steps
        for name, steps in parse_samplers(args.samplers):
            key = f"{name}-{steps}"
            e2e[key] = _time_calls(lambda: _one_sample(smp, name, steps, next(seeds)), min(args.warmup, 1), args.e2e_repeat)
            e2e[key].update(steps=steps, sampler=name)
    if args.ddpm_repeat > 0:
        e2e["ddpm"] = _time_calls(lambda: _one_sample(smp, "ddpm", None, next(seeds)), 0, args.ddpm_repeat)
        e2e["ddpm"]["steps"] = smp.tables.num_timesteps
    mem["end"] = memory()
    return {"load": load, "components": comps, "end_to_end": e2e, "memory": mem}


def run_sample(args) -> dict[str, Any]:
    t0 = time.perf_counter()
    smp, load = _load(args.bundle, args.threads, args.runtime, verify=True)
    load["total_with_verify_s"] = time.perf_counter() - t0
    mem_load = memory()
    t1 = time.perf_counter()
    _one_sample(smp, "ddim", args.steps, args.seed)
    sample_s = time.perf_counter() - t1
    return {"load": load, "sample_s": sample_s, "steps": args.steps, "memory": {"after_load": mem_load, "end": memory()},
            "process_s": time.perf_counter() - t0}


def run_cli(args) -> dict[str, Any]:
    from ubdiff_onnx.cli.main import app

    t0 = time.perf_counter()
    try:
        code = app(args.cli_args, standalone_mode=False)  # click returns the exit code of typer.Exit
    except SystemExit as exc:
        code = exc.code
    if code not in (0, None):
        raise RuntimeError(f"`ubdiff-onnx {' '.join(args.cli_args)}` exited with status {code}")
    return {"wall_s": time.perf_counter() - t0, "argv": ["ubdiff-onnx", *args.cli_args], "memory": {"end": memory()}}


def parse(argv: list[str]) -> argparse.Namespace:
    cli_args: list[str] = []
    if "--" in argv:
        i = argv.index("--")
        argv, cli_args = argv[:i], argv[i + 1:]
    p = argparse.ArgumentParser(prog="python -m ubdiff_onnx.bench.worker", description=__doc__.split("\n\n")[0])
    p.add_argument("bundle", type=Path)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--mode", choices=("measure", "sample", "cli"), default="measure")
    p.add_argument("--runtime", choices=("auto", "onnxruntime", "torchscript"), default="auto")
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--repeat", type=int, default=30)
    p.add_argument("--e2e-repeat", type=int, default=3)
    p.add_argument("--ddpm-repeat", type=int, default=1)
    p.add_argument("--samplers", default="", help="extra end-to-end settings, NAME:STEPS,... (e.g. unipc:10)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=None, help="write the JSON here (default: stdout)")
    args = p.parse_args(argv)
    args.cli_args = cli_args
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse(sys.argv[1:] if argv is None else argv)
    t_start = time.perf_counter()
    result: dict[str, Any] = {"bundle": str(args.bundle), "threads": args.threads, "mode": args.mode, "pid": os.getpid(),
                              "loadavg_start": os.getloadavg()[0] if hasattr(os, "getloadavg") else None}
    try:
        if args.runtime == "auto":
            from ubdiff_onnx.runtime.manifest import read_manifest

            args.runtime = "torchscript" if read_manifest(args.bundle).precision.startswith("torchscript") else "onnxruntime"
        result["runtime"] = args.runtime
        result.update({"measure": run_measure, "sample": run_sample, "cli": run_cli}[args.mode](args))
        result["ok"] = True
    except Exception as exc:  # reported to the orchestrator as one line
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        result.update(ok=False, error=msg, error_type=type(exc).__name__)
    result["wall_s"] = time.perf_counter() - t_start
    result["loadavg_end"] = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    result["torch_imported"] = "torch" in sys.modules
    result["onnx_imported"] = "onnx" in sys.modules
    result["peak_rss_bytes"] = memory()["vmhwm_bytes"] or memory()["ru_maxrss_bytes"]
    text = json.dumps(result)
    if args.out:
        tmp = args.out.with_suffix(args.out.suffix + ".tmp")
        tmp.write_text(text)
        os.replace(tmp, args.out)
    else:
        print(text)
    if not result["ok"]:
        print(f"error: {result['error']}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
