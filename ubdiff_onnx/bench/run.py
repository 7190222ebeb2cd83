"""The bench orchestrator: plan interleaved worker processes, run them, aggregate, compare.

Every measurement runs in a fresh ``python -m ubdiff_onnx.bench.worker`` process (one bundle, one
thread count), so no runtime sees another's imports, allocator state or thread pools. Rounds are
interleaved: round r runs every (bundle, threads) pair once, in an order rotated by r, so slow
drift of a shared machine (other jobs, thermal, frequency) lands on all bundles alike; the per-call
samples of all rounds are pooled before taking min/median/p90.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ubdiff_onnx.bench.machine import PRECISION_ARITHMETIC, peak_gmacs
from ubdiff_onnx._source_tree import python_module_command
from ubdiff_onnx.errors import UserError

COMPONENTS = ("unet", "velocity_decoder", "seismic_decoder")
COMPONENT_TITLES = {"unet": "U-Net step", "velocity_decoder": "velocity decoder", "seismic_decoder": "seismic decoder"}


@dataclass
class BenchBundle:
    label: str
    path: Path
    precision: str
    runtime: str
    preset: str | None
    config: dict[str, Any]
    latent_dim: int
    timesteps: int
    bytes: dict[str, int]

    @property
    def total_bytes(self) -> int:
        return sum(self.bytes.values())

    def as_dict(self) -> dict[str, Any]:
        return {"label": self.label, "path": str(self.path), "precision": self.precision, "runtime": self.runtime, "preset": self.preset,
                "latent_dim": self.latent_dim, "timesteps": self.timesteps, "bytes": self.bytes, "total_bytes": self.total_bytes}


@dataclass
class BenchOptions:
    threads: list[int] = field(default_factory=lambda: [1, 2])
    steps: int = 50
    repeat: int = 30
    warmup: int = 5
    e2e_repeat: int = 3
    ddpm: bool = True
    rounds: int = 3
    baseline: str | None = None
    cli_sample: bool = True
    cli_samples: int = 4
    timeout_s: float = 900.0
    samplers: list[tuple[str, int]] = field(default_factory=list)  # extra end-to-end settings besides DDIM-steps


@dataclass
class Job:
    kind: str          # measure | sample | cli
    bundle: BenchBundle
    threads: int
    round: int

    @property
    def name(self) -> str:
        return f"{self.kind}-{self.bundle.label}-t{self.threads}-r{self.round}"


def parse_threads(text: str) -> list[int]:
    try:
        vals = [int(x) for x in str(text).replace(" ", "").split(",") if x]
    except ValueError:
        raise UserError(f"--threads: expected a comma-separated list of thread counts like 0,1,2 (0: the default per-component rule), got {text!r}") from None
    if not vals or any(v < 0 for v in vals):
        raise UserError(f"--threads: expected a comma-separated list of thread counts like 0,1,2 (0: the default per-component rule), got {text!r}")
    return list(dict.fromkeys(vals))


def inspect_bundles(paths: list[Path]) -> list[BenchBundle]:
    """Read each manifest and verify every file's sha256 up front (so no worker starts on a bad
    bundle); one-line errors."""
    from ubdiff_onnx.runtime.manifest import BundleError, read_manifest

    if not paths:
        raise UserError("give at least one BUNDLE folder")
    out: list[BenchBundle] = []
    seen: dict[str, int] = {}
    for p in paths:
        try:
            man = read_manifest(Path(p))
            man.verify_files()
        except BundleError as exc:
            raise UserError(str(exc)) from None
        sizes = {name: man.component_path(name).stat().st_size for name in COMPONENTS}
        label = Path(p).resolve().name
        if label in seen:
            seen[label] += 1
            label = f"{label}#{seen[label]}"
        else:
            seen[label] = 1
        sched = man.schedule
        out.append(BenchBundle(
            label=label, path=Path(p), precision=man.precision,
            runtime="torchscript" if man.precision.startswith("torchscript") else "onnxruntime",
            preset=man.data.get("preset"), config=man.data.get("config") or {}, latent_dim=man.latent_dim,
            timesteps=int(sched.get("timesteps", 256)), bytes=sizes))
    return out


def pick_baseline(bundles: list[BenchBundle], name: str | None) -> BenchBundle:
    if name is None:
        return bundles[0]
    for b in bundles:
        if name in (b.label, str(b.path)) or Path(name).resolve() == b.path.resolve():
            return b
    matches = [b for b in bundles if b.precision == name]
    if len(matches) == 1:
        return matches[0]
    raise UserError(f"--baseline: {name!r} is none of the benchmarked bundles ({', '.join(b.label for b in bundles)})")


def plan(bundles: list[BenchBundle], opts: BenchOptions) -> list[Job]:
    pairs = [(b, t) for t in opts.threads for b in bundles]
    jobs: list[Job] = []
    for r in range(opts.rounds):
        k = r % len(pairs)
        order = pairs[k:] + pairs[:k]
        jobs += [Job("measure", b, t, r) for b, t in order]
        jobs += [Job("sample", b, t, r) for b, t in reversed(order)]
    if opts.cli_sample:
        jobs += [Job("cli", b, t, 0) for b, t in pairs]
    return jobs


def e2e_keys(opts: BenchOptions) -> list[str]:
    """End-to-end settings measured: "ddim" (DDIM-``steps``), "ddpm", and "NAME-STEPS" per --samplers entry."""
    return ["ddim", "ddpm", *(f"{n}-{k}" for n, k in opts.samplers)]


def _worker_cmd(job: Job, opts: BenchOptions, out_json: Path, scratch: Path) -> list[str]:
    b = job.bundle
    cmd = python_module_command("ubdiff_onnx.bench.worker", b.path) + ["--threads", str(job.threads), "--mode", job.kind,
           "--runtime", b.runtime, "--steps", str(opts.steps), "--seed", str(job.round), "--out", str(out_json)]
    if job.kind == "measure":
        cmd += ["--warmup", str(opts.warmup), "--repeat", str(opts.repeat), "--e2e-repeat", str(opts.e2e_repeat),
                "--ddpm-repeat", "1" if opts.ddpm else "0", "--samplers", ",".join(f"{n}:{k}" for n, k in opts.samplers)]
    if job.kind == "cli":
        cmd += ["--", "sample", str(b.path), "--num-samples", str(opts.cli_samples), "--batch-size", "1", "--steps", str(opts.steps),
                "--sampler", "ddim", "--seed", "0", "--threads", str(job.threads), "--runtime", b.runtime,
                "--out", str(scratch / f"{job.name}.npz")]
    return cmd


def _worker_env(threads: int) -> dict[str, str]:
    env = dict(os.environ)
    env.update(OPENBLAS_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    if threads > 0:  # 0: the runtime's per-component rule chooses
        env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    return env


def run_job(job: Job, opts: BenchOptions, raw_dir: Path, scratch: Path) -> dict[str, Any]:
    out_json = raw_dir / f"{job.name}.json"
    cmd = _worker_cmd(job, opts, out_json, scratch)
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=opts.timeout_s, env=_worker_env(job.threads))
    except subprocess.TimeoutExpired:
        raise UserError(f"{job.bundle.path}: {job.kind} worker ({job.threads} thread(s)) ran past {opts.timeout_s:.0f} s") from None
    result = None
    if out_json.is_file():
        result = json.loads(out_json.read_text())
    if proc.returncode != 0 or not result or not result.get("ok"):
        why = (result or {}).get("error") or next((ln for ln in reversed(proc.stderr.strip().splitlines()) if ln.strip()), f"exit status {proc.returncode}")
        why = why.removeprefix("error: ")
        raise UserError(f"{job.bundle.path}: {job.kind} worker ({job.threads} thread(s)) failed: {why}")
    for f in scratch.glob(f"{job.name}*"):
        f.unlink(missing_ok=True)
    result["round"] = job.round
    result["label"] = job.bundle.label
    return result


def count_macs(bundles: list[BenchBundle], timeout_s: float) -> dict[str, dict[str, Any]]:
    """Per-bundle MAC counts (subprocess each); TorchScript bundles borrow an ONNX bundle's count of
    the same configuration when one is benchmarked (torch's INT8 Linear is invisible to its counter)."""
    counts: dict[str, dict[str, Any]] = {}
    for b in sorted(bundles, key=lambda b: b.runtime == "torchscript"):
        donor = next((o for o in bundles if o.runtime == "onnxruntime" and o.config == b.config and o.label in counts), None)
        if b.runtime == "torchscript" and donor is not None:
            counts[b.label] = {**counts[donor.label], "source": f"ONNX graph of {donor.label} (same config)"}
            continue
        try:
            proc = subprocess.run(python_module_command("ubdiff_onnx.bench.macs", b.path), capture_output=True, text=True, timeout=timeout_s)
            data = json.loads(proc.stdout) if proc.returncode == 0 else None
        except (subprocess.SubprocessError, json.JSONDecodeError):
            data = None
        if data is None:
            counts[b.label] = {"source": "unavailable"}
            continue
        data["source"] = "torch.utils.flop_counter on the TorchScript modules" if b.runtime == "torchscript" else "ONNX graph (shape inference)"
        counts[b.label] = data
    return counts


def reference_macs(bundles: list[BenchBundle], counts: dict[str, dict[str, Any]]) -> dict[str, dict[str, int] | None]:
    """The model's useful MACs per component for each bundle: from an FP32 bundle of the same config
    when one is present (a rewritten graph may execute more MACs than the model needs), else own count."""
    out = {}
    for b in bundles:
        ref = next((o for o in bundles if o.precision in ("fp32", "torchscript") and o.config == b.config
                    and all(isinstance(counts.get(o.label, {}).get(c), dict) for c in COMPONENTS)), b)
        c = counts.get(ref.label, {})
        out[b.label] = {n: int(c[n]["macs"]) for n in COMPONENTS} if all(isinstance(c.get(n), dict) for n in COMPONENTS) else None
    return out


# ---------------------------------------------------------------------------------------------
def _pool(samples: list[list[float]]) -> dict[str, Any] | None:
    import numpy as np

    flat = [x for s in samples for x in s]
    if not flat:
        return None
    a = np.asarray(flat, dtype=np.float64)
    round_medians = [float(np.median(s)) for s in samples if s]
    return {"n": int(a.size), "min_ms": float(a.min()), "median_ms": float(np.median(a)), "p90_ms": float(np.percentile(a, 90)),
            "round_medians_ms": round_medians,
            "round_spread": (max(round_medians) / min(round_medians) - 1.0) if len(round_medians) > 1 and min(round_medians) > 0 else 0.0}


def aggregate(bundles: list[BenchBundle], results: list[dict[str, Any]], opts: BenchOptions, machine: dict[str, Any],
              counts: dict[str, dict[str, Any]], baseline: BenchBundle) -> dict[str, Any]:
    ref_macs = reference_macs(bundles, counts)
    rows: list[dict[str, Any]] = []
    for t in opts.threads:
        for b in bundles:
            mine = [r for r in results if r["label"] == b.label and r["threads"] == t]
            meas = [r for r in mine if r["mode"] == "measure"]
            samp = [r for r in mine if r["mode"] == "sample"]
            cli = [r for r in mine if r["mode"] == "cli"]
            row: dict[str, Any] = {"label": b.label, "precision": b.precision, "runtime": b.runtime, "threads": t,
                                   "bytes": b.bytes, "total_bytes": b.total_bytes}
            row["components"] = {c: _pool([r["components"][c]["samples_ms"] for r in meas]) for c in COMPONENTS}
            row["end_to_end"] = {}
            for kind in e2e_keys(opts):
                got = [r["end_to_end"][kind]["samples_ms"] for r in meas if kind in r.get("end_to_end", {})]
                if got:
                    first = next(r["end_to_end"][kind] for r in meas if kind in r.get("end_to_end", {}))
                    row["end_to_end"][kind] = {**_pool(got), "steps": first["steps"], "sampler": first.get("sampler", kind)}
            row["load_s"] = {
                "total_median": statistics.median(r["load"]["total_s"] for r in meas) if meas else None,
                "per_component_median": {c: statistics.median(r["load"]["per_component_s"][c] for r in meas) for c in COMPONENTS} if meas else {},
            }
            row["peak_rss_bytes"] = {
                "measure_process_max": max((r["peak_rss_bytes"] for r in meas), default=None),
                "sample_process_max": max((r["peak_rss_bytes"] for r in samp), default=None),
                "sample_process_median": statistics.median(r["peak_rss_bytes"] for r in samp) if samp else None,
                "ru_maxrss_sample_process_max": max((r["memory"]["end"]["ru_maxrss_bytes"] for r in samp), default=None),
            }
            row["sample_process"] = {
                "steps": opts.steps,
                "sample_s_median": statistics.median(r["sample_s"] for r in samp) if samp else None,
                "sample_s_min": min((r["sample_s"] for r in samp), default=None),
                "load_with_verify_s_median": statistics.median(r["load"]["total_with_verify_s"] for r in samp) if samp else None,
            }
            if cli:
                c0 = cli[0]
                row["cli_sample"] = {"argv": c0["argv"], "num_samples": opts.cli_samples, "wall_s": c0["wall_s"],
                                     "wall_per_sample_s": c0["wall_s"] / opts.cli_samples, "peak_rss_bytes": c0["peak_rss_bytes"],
                                     "torch_imported": c0["torch_imported"]}
            row["torch_imported"] = any(r["torch_imported"] for r in meas + samp)
            loads = [x for r in meas + samp for x in (r.get("loadavg_start"), r.get("loadavg_end")) if x is not None]
            shares = [r["components"][c].get("cpu_per_wall") for r in meas for c in COMPONENTS]
            shares = [x for x in shares if x is not None]
            row["machine_load"] = {"loadavg_max": max(loads, default=None), "loadavg_median": statistics.median(loads) if loads else None,
                                   "cpu_per_wall_median": statistics.median(shares) if shares else None,
                                   "cpu_per_wall_per_thread": statistics.median(shares) / (t or 1) if shares else None}
            row["arithmetic"] = _arith(b, t, row, ref_macs.get(b.label), counts.get(b.label, {}), machine, opts)
            rows.append(row)
    _ratios(rows, baseline)
    return {"rows": rows, "targets": targets(bundles, rows, opts), "macs": counts, "reference_macs": ref_macs}


def _arith(b: BenchBundle, threads: int, row: dict[str, Any], macs: dict[str, int] | None, own: dict[str, Any],
           machine: dict[str, Any], opts: BenchOptions) -> dict[str, Any]:
    kind = PRECISION_ARITHMETIC.get(b.precision, "fp32")
    threads = threads or 1  # 0: the default rule (one thread per component)
    peak = peak_gmacs(machine.get("peak", {}), kind, threads)
    out: dict[str, Any] = {"peak_kind": kind, "peak_gmacs": peak, "fp32_peak_gmacs": peak_gmacs(machine.get("peak", {}), "fp32", threads),
                           "macs_per_call": macs, "executed_macs_per_call": {c: own[c]["macs"] for c in COMPONENTS if isinstance(own.get(c), dict)},
                           "source": own.get("source")}
    if not macs:
        return out

    def rate(m: int, ms: float | None) -> dict[str, Any] | None:
        if not ms:
            return None
        g = m / (ms * 1e-3) / 1e9
        return {"gmacs": g, "fraction_of_peak": g / peak if peak else None}

    out["components"] = {c: rate(macs[c], (row["components"][c] or {}).get("median_ms")) for c in COMPONENTS}
    for kind_e2e in e2e_keys(opts):
        e = row["end_to_end"].get(kind_e2e)
        if e:
            per_sample = e["steps"] * macs["unet"] + macs["velocity_decoder"] + macs["seismic_decoder"]
            out[kind_e2e] = {"macs_per_sample": per_sample, **(rate(per_sample, e["median_ms"]) or {})}
    return out


def _ratios(rows: list[dict[str, Any]], baseline: BenchBundle) -> None:
    """speedup = baseline median / this median at the same thread count (> 1: faster than baseline)."""
    for row in rows:
        base = next(r for r in rows if r["label"] == baseline.label and r["threads"] == row["threads"])
        sp: dict[str, Any] = {"baseline": baseline.label}
        for c in COMPONENTS:
            a, b = (base["components"][c] or {}).get("median_ms"), (row["components"][c] or {}).get("median_ms")
            sp[c] = a / b if a and b else None
        for k in row["end_to_end"]:
            a, b = base["end_to_end"].get(k, {}).get("median_ms"), row["end_to_end"].get(k, {}).get("median_ms")
            sp[k] = a / b if a and b else None
        sp["size_fraction"] = row["total_bytes"] / base["total_bytes"] if base["total_bytes"] else None
        a, b = base["peak_rss_bytes"]["sample_process_max"], row["peak_rss_bytes"]["sample_process_max"]
        sp["sample_rss_fraction"] = b / a if a and b else None
        row["vs_baseline"] = sp


def targets(bundles: list[BenchBundle], rows: list[dict[str, Any]], opts: BenchOptions) -> list[dict[str, Any]]:
    """The project's acceptance targets (issues 5, 6, 7; SPEC §7), checked where the bundles allow.

    They were set for the ``paper`` preset, so only ``paper`` bundles are checked against them."""
    def first(prec: str) -> BenchBundle | None:
        return next((b for b in bundles if b.precision == prec and b.preset == "paper"), None)

    def row(b: BenchBundle, t: int) -> dict[str, Any] | None:
        return next((r for r in rows if r["label"] == b.label and r["threads"] == t), None)

    def med(r, comp=None, e2e=None):
        if r is None:
            return None
        return ((r["components"].get(comp) or {}) if comp else r["end_to_end"].get(e2e, {})).get("median_ms")

    out: list[dict[str, Any]] = []

    def add(issue: str, what: str, measured: float | None, target: float, higher_is_better: bool, unit: str, detail: str) -> None:
        met = None if measured is None else (measured >= target if higher_is_better else measured <= target)
        out.append({"issue": issue, "what": what, "measured": measured, "target": target, "op": ">=" if higher_is_better else "<=",
                    "unit": unit, "met": met, "detail": detail})

    fp32, qdq, ts, int4 = first("fp32"), first("qdq"), first("torchscript"), first("int4")
    if fp32 and qdq:
        for t in [t for t in opts.threads if t in (1, 2)]:
            rf, rq = row(fp32, t), row(qdq, t)
            for comp, goal in (("unet", 1.8), ("velocity_decoder", 1.3), ("seismic_decoder", 3.0)):
                a, b = med(rf, comp), med(rq, comp)
                add("5", f"{COMPONENT_TITLES[comp]}: QDQ speedup over ORT FP32, {t} thread(s)", a / b if a and b else None, goal, True, "x",
                    f"{qdq.label} {b:.2f} ms vs {fp32.label} {a:.2f} ms (median)" if a and b else "not measured")
        fq = qdq.total_bytes / fp32.total_bytes
        add("5", "QDQ bundle size / FP32 bundle size", fq, 0.26, False, "", f"{qdq.total_bytes:,} / {fp32.total_bytes:,} bytes")
        if int4:
            add("5", "int4 bundle size / FP32 bundle size", int4.total_bytes / fp32.total_bytes, 0.15, False, "",
                f"{int4.total_bytes:,} / {fp32.total_bytes:,} bytes")
    if qdq and 1 in opts.threads:
        rq = row(qdq, 1)
        bq = med(rq, e2e="ddim")
        if ts:
            a = med(row(ts, 1), e2e="ddim")
            add("7", f"DDIM-{opts.steps} sample, 1 thread: QDQ speedup over TorchScript FP32", a / bq if a and bq else None, 3.0, True, "x",
                f"{qdq.label} {bq:.0f} ms vs {ts.label} {a:.0f} ms" if a and bq else "not measured")
        if fp32:
            a = med(row(fp32, 1), e2e="ddim")
            add("7", f"DDIM-{opts.steps} sample, 1 thread: QDQ speedup over ORT FP32", a / bq if a and bq else None, 1.7, True, "x",
                f"{qdq.label} {bq:.0f} ms vs {fp32.label} {a:.0f} ms" if a and bq else "not measured")
        if opts.steps == 50:
            add("SPEC §7", "QDQ DDIM-50 sample, 1 thread, end to end", bq / 1000 if bq else None, 0.25, False, "s",
                f"median of {rq['end_to_end'].get('ddim', {}).get('n', 0)} samples in the bench process; "
                f"pure sample process: {rq['sample_process']['sample_s_median']:.3f} s" if bq else "not measured")
        for t in opts.threads:
            r = row(qdq, t)
            ddim50 = med(r, e2e="ddim") if opts.steps == 50 else None
            for name, k in opts.samplers:
                fast = med(r, e2e=f"{name}-{k}")
                add("14", f"{name}-{k} sample vs DDIM-50, QDQ, {t} thread(s): speedup", ddim50 / fast if ddim50 and fast else None, 2.5, True, "x",
                    f"{fast:.0f} ms vs {ddim50:.0f} ms (median, batch 1)" if ddim50 and fast else "needs --steps 50")
        rss = rq["peak_rss_bytes"]["sample_process_max"]
        add("6 / SPEC §7", f"QDQ sampling peak RSS (process that loads the bundle and makes one DDIM-{opts.steps} sample, 1 thread)",
            rss / 1e6 if rss else None, 600.0, False, "MB", f"{rss / 2**20:.0f} MiB (VmHWM)" if rss else "not measured")
    return out


# ---------------------------------------------------------------------------------------------
def run_bench(paths: list[Path], opts: BenchOptions, out_dir: Path, command: str = "ubdiff-onnx bench",
              console=None, keep_raw: bool = True) -> dict[str, Any]:
    """Plan, run every worker (rich progress), aggregate, write bench.json / bench.md / bench.png."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from ubdiff_onnx.bench.machine import machine_info
    from ubdiff_onnx.bench.report import write_json, write_markdown, write_png

    console = console or Console(stderr=True)
    for name, v in (("--steps", opts.steps), ("--repeat", opts.repeat), ("--rounds", opts.rounds)):
        if v < 1:
            raise UserError(f"{name}: expected >= 1, got {v}")
    if opts.warmup < 0 or opts.e2e_repeat < 0:
        raise UserError("--warmup and --e2e-repeat must be >= 0")
    bundles = inspect_bundles(paths)
    for b in bundles:
        if not 1 <= opts.steps <= b.timesteps:
            raise UserError(f"--steps: expected 1..{b.timesteps} for {b.label}, got {opts.steps}")
    baseline = pick_baseline(bundles, opts.baseline)
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise UserError(f"--out: {out_dir} exists and is not a folder")
    out_dir.mkdir(parents=True, exist_ok=True)
    raw_dir = out_dir / "raw"
    raw_dir.mkdir(exist_ok=True)
    machine = machine_info()
    many = [t for t in opts.threads if t > machine["physical_cores"]]
    if many:
        console.print(f"[yellow]note:[/] --threads {','.join(map(str, many))} exceeds the {machine['physical_cores']} physical cores")

    jobs = plan(bundles, opts)
    results: list[dict[str, Any]] = []
    t_start = time.time()
    with tempfile.TemporaryDirectory(prefix="ubdiff-bench-", dir=out_dir) as scratch, \
            Progress(TextColumn("[bold]bench[/]"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                     TextColumn("{task.description}"), console=console, refresh_per_second=2) as bar:
        task = bar.add_task("counting MACs", total=len(jobs) + 1)
        counts = count_macs(bundles, opts.timeout_s)
        bar.advance(task)
        for job in jobs:
            where = "after the rounds" if job.kind == "cli" else f"round {job.round + 1}/{opts.rounds}"
            bar.update(task, description=f"{where} · {job.bundle.label} · {job.threads} thr · {job.kind}")
            results.append(run_job(job, opts, raw_dir, Path(scratch)))
            bar.advance(task)
    agg = aggregate(bundles, results, opts, machine, counts, baseline)
    report = {
        "format": "ubdiff-onnx-bench", "format_version": 1,
        "command": command,
        "started_unix": t_start, "wall_s": time.time() - t_start,
        "machine": machine,
        "options": {"threads": opts.threads, "steps": opts.steps, "repeat": opts.repeat, "warmup": opts.warmup,
                    "e2e_repeat": opts.e2e_repeat, "ddpm": opts.ddpm, "rounds": opts.rounds, "cli_sample": opts.cli_sample,
                    "cli_samples": opts.cli_samples},
        "baseline": baseline.label,
        "bundles": [b.as_dict() for b in bundles],
        "results": agg,
        "raw": results,
        "rss_target_mib": [600e6 / 2**20] if any(b.preset == "paper" for b in bundles) else [],
    }
    if not keep_raw:
        for f in raw_dir.glob("*.json"):
            f.unlink()
        raw_dir.rmdir()
    write_json(report, out_dir / "bench.json")
    write_markdown(report, out_dir / "bench.md")
    try:
        write_png(report, out_dir / "bench.png")
    except ImportError:
        console.print("[yellow]note:[/] matplotlib is not installed; no bench.png (pip install 'ubdiff-onnx[plot]')")
    return report
