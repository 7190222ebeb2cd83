"""``ubdiff-onnx bench``: latency, load time, size, peak RSS and arithmetic efficiency of bundles."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from ubdiff_onnx.cli._errors import user_errors
from ubdiff_onnx.cli.app import app
from ubdiff_onnx.runtime.multistep import DEFAULT_SAMPLER, DEFAULT_STEPS


@app.command("bench")
@user_errors
def bench(
    bundles: Annotated[list[Path], typer.Argument(help="Bundle folders (ONNX fp32/qdq/int4 or TorchScript), measured side by side.")],
    threads: Annotated[str, typer.Option("--threads", help="Comma-separated intra-op thread counts, each measured separately; 0 is `sample`'s default per-component rule.")] = "1,2",
    steps: Annotated[int, typer.Option("--steps", help="DDIM steps of the end-to-end sample.")] = 50,
    samplers: Annotated[str, typer.Option("--samplers", help="Also time end-to-end samples of these NAME:STEPS settings (comma-separated; '' for none), e.g. unipc:10,dpmpp3m:8.")] = f"{DEFAULT_SAMPLER}:{DEFAULT_STEPS}",
    repeat: Annotated[int, typer.Option("--repeat", help="Timed batch-1 calls per component per round (pooled over rounds).")] = 30,
    warmup: Annotated[int, typer.Option("--warmup", help="Untimed calls per component before timing.")] = 5,
    e2e_repeat: Annotated[int, typer.Option("--e2e-repeat", help="Timed DDIM samples per round.")] = 3,
    rounds: Annotated[int, typer.Option("--rounds", help="Interleaved rounds: each runs every (bundle, threads) pair once in a fresh process.")] = 3,
    baseline: Annotated[Optional[str], typer.Option("--baseline", help="Bundle (folder name, path or precision) that ratios are taken against; default: the first.")] = None,
    ddpm: Annotated[bool, typer.Option("--ddpm/--no-ddpm", help="Also time one full ancestral DDPM sample (all T steps) per round.")] = True,
    cli_sample: Annotated[bool, typer.Option("--cli-sample/--no-cli-sample", help="Also time the real `ubdiff-onnx sample` command (wall time, peak RSS) once per pair.")] = True,
    out: Annotated[Path, typer.Option("--out", help="Report folder: bench.json, bench.md, bench.png (+ raw/ worker outputs).")] = Path("bench-report"),
    timeout: Annotated[float, typer.Option("--timeout", help="Seconds one worker process may run.")] = 900.0,
) -> None:
    """Benchmark bundles, each runtime and thread count in its own fresh process, interleaved; write a JSON/Markdown/PNG report."""
    from rich.console import Console

    from ubdiff_onnx.bench.run import BenchOptions, parse_threads, run_bench
    from ubdiff_onnx.bench.worker import parse_samplers
    from ubdiff_onnx.errors import UserError

    console = Console(stderr=True)
    try:
        extra = parse_samplers(samplers)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    opts = BenchOptions(threads=parse_threads(threads), steps=steps, samplers=extra, repeat=repeat, warmup=warmup, e2e_repeat=e2e_repeat,
                        ddpm=ddpm, rounds=rounds, baseline=baseline, cli_sample=cli_sample, timeout_s=timeout)
    command = "ubdiff-onnx " + " ".join(shlex.quote(a) for a in sys.argv[1:]) if sys.argv[1:2] == ["bench"] else "ubdiff-onnx bench"
    report = run_bench(bundles, opts, out, command=command, console=console)
    for t in report["results"]["targets"]:
        if t["met"] is None:
            continue
        mark = "[green]met[/]" if t["met"] else "[red]missed[/]"
        console.print(f"  issue {t['issue']}: {t['what']}: {t['measured']:.3g}{t['unit']} (target {t['op']} {t['target']:g}) {mark}")
    console.print(f"wrote {out / 'bench.json'}, {out / 'bench.md'}, {out / 'bench.png'}")
