"""bench.json / bench.md / bench.png from the aggregated numbers."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from ubdiff_onnx.bench.run import COMPONENT_TITLES, COMPONENTS
from ubdiff_onnx.runtime.atomic import atomic_write_bytes


def write_json(report: dict[str, Any], path: Path) -> None:
    atomic_write_bytes(path, (json.dumps(report, indent=1) + "\n").encode())


# ---------------------------------------------------------------------------------------------
def _ms(x: float | None) -> str:
    if x is None:
        return "–"
    return f"{x:.1f}" if x >= 10 else f"{x:.2f}"


def _x(x: float | None) -> str:
    return "–" if x is None else f"{x:.2f}×"


def _mib(b: float | None) -> str:
    return "–" if not b else f"{b / 2**20:.0f}"


def _mb(b: float | None) -> str:
    return "–" if not b else f"{b / 1e6:.1f}"


def _pct(f: float | None) -> str:
    return "–" if f is None else f"{100 * f:.1f} %"


def markdown(report: dict[str, Any]) -> str:
    m, opts, agg = report["machine"], report["options"], report["results"]
    rows = agg["rows"]
    base = report["baseline"]
    steps = opts["steps"]
    has_ddpm = any("ddpm" in r["end_to_end"] for r in rows)
    T = report["bundles"][0]["timesteps"] if report["bundles"] else 256
    L: list[str] = []
    flags = ", ".join(k for k, v in m["flags_of_interest"].items() if v)
    L.append(f"# ubdiff-onnx bench — {m['cpu_model']}, {m['physical_cores']} cores")
    L.append("")
    board = f"{m['board']}, " if m.get("board") else ""
    L.append(f"Machine: {board}{m['architecture']}, {m.get('os_release') or m['os']}.  ")
    L.append(f"Command: `{report['command']}`  ")
    L.append(f"CPU flags: {flags}; clock {m['peak']['ghz']:.2f} GHz ({m['mhz_source']}); "
             f"onnxruntime {m['versions'].get('onnxruntime')}, numpy {m['versions'].get('numpy')}, torch {m['versions'].get('torch')} "
             f"(TorchScript bundles only); Python {m['python']}.  ")
    L.append(f"Each (bundle, threads) pair ran in its own fresh process, {opts['rounds']} interleaved round(s); per component "
             f"{opts['warmup']} warm-up + {opts['repeat']} timed batch-1 calls per round (pooled: median of {opts['rounds'] * opts['repeat']}); "
             f"end to end {opts['e2e_repeat']} DDIM-{steps} sample(s) per round"
             + (f" and 1 DDPM-{T} sample per round" if has_ddpm else "") + f". Speedups are against `{base}` at the same thread count "
             "(baseline median ÷ this median; > 1 is faster).")
    L.append("")
    L.append("## Latency (median; speedup vs baseline in parentheses)")
    L.append("")
    head = ["bundle", "precision", "threads", "U-Net step ms", "velocity dec. ms", "seismic dec. ms", f"DDIM-{steps} sample ms"]
    if has_ddpm:
        head.append(f"DDPM-{T} sample s")
    L.append("| " + " | ".join(head) + " |")
    L.append("|" + "---|" * len(head))
    for r in rows:
        vs = r["vs_baseline"]
        cells = [f"`{r['label']}`", r["precision"], str(r["threads"])]
        for c in COMPONENTS:
            cells.append(f"{_ms((r['components'][c] or {}).get('median_ms'))} ({_x(vs.get(c))})")
        cells.append(f"{_ms(r['end_to_end'].get('ddim', {}).get('median_ms'))} ({_x(vs.get('ddim'))})")
        if has_ddpm:
            d = r["end_to_end"].get("ddpm", {}).get("median_ms")
            cells.append(f"{d / 1000:.2f} ({_x(vs.get('ddpm'))})" if d else "–")
        L.append("| " + " | ".join(cells) + " |")
    L.append("")
    extra = [k for k in dict.fromkeys(k for r in rows for k in r["end_to_end"]) if k not in ("ddim", "ddpm")]
    if extra:
        L.append(f"## End-to-end sample per sampler (batch 1, median ms; speedup over DDIM-{steps} of the same bundle and threads)")
        L.append("")
        head = ["bundle", "threads", f"DDIM-{steps}", *extra]
        L.append("| " + " | ".join(head) + " |")
        L.append("|" + "---|" * len(head))
        for r in rows:
            d = r["end_to_end"].get("ddim", {}).get("median_ms")
            cells = [f"`{r['label']}`", str(r["threads"]), _ms(d)]
            for k in extra:
                e = r["end_to_end"].get(k, {}).get("median_ms")
                cells.append(f"{_ms(e)} ({_x(d / e if d and e else None)})")
            L.append("| " + " | ".join(cells) + " |")
        L.append("")
    L.append("## Size, load time, memory")
    L.append("")
    head = ["bundle", "threads", "U-Net MB", "velocity MB", "seismic MB", "total MB (vs baseline)", "load s",
            f"sample process: peak RSS MiB / one DDIM-{steps} sample s", "bench process peak RSS MiB"]
    L.append("| " + " | ".join(head) + " |")
    L.append("|" + "---|" * len(head))
    for r in rows:
        sp = r["sample_process"]
        cells = [f"`{r['label']}`", str(r["threads"]), *(_mb(r["bytes"][c]) for c in COMPONENTS),
                 f"{_mb(r['total_bytes'])} ({_pct(r['vs_baseline'].get('size_fraction'))})",
                 f"{r['load_s']['total_median']:.2f}" if r["load_s"]["total_median"] is not None else "–",
                 f"{_mib(r['peak_rss_bytes']['sample_process_max'])} / {sp['sample_s_median']:.3f}" if sp["sample_s_median"] else "–",
                 _mib(r["peak_rss_bytes"]["measure_process_max"])]
        L.append("| " + " | ".join(cells) + " |")
    cli_rows = [r for r in rows if "cli_sample" in r]
    if cli_rows:
        L.append("")
        n = cli_rows[0]["cli_sample"]["num_samples"]
        L.append(f"`ubdiff-onnx sample BUNDLE --num-samples {n} --batch-size 1 --steps {steps} --threads T` (whole command, "
                 "imports + load + sampling + writing the .npz):")
        L.append("")
        L.append("| bundle | threads | wall s | wall s per sample | peak RSS MiB |")
        L.append("|---|---|---|---|---|")
        for r in cli_rows:
            c = r["cli_sample"]
            L.append(f"| `{r['label']}` | {r['threads']} | {c['wall_s']:.2f} | {c['wall_per_sample_s']:.3f} | {_mib(c['peak_rss_bytes'])} |")
    L.append("")
    L.append("## Component latency detail (ms: min / median / p90, pooled over rounds; round-to-round spread of the median)")
    L.append("")
    L.append("| bundle | threads | " + " | ".join(COMPONENT_TITLES[c] for c in COMPONENTS) + f" | DDIM-{steps} sample | CPU/wall per thread | load avg (max) |")
    L.append("|---|---|" + "---|" * (len(COMPONENTS) + 3))
    for r in rows:
        cells = []
        for s in [r["components"][c] for c in COMPONENTS] + [r["end_to_end"].get("ddim")]:
            cells.append("–" if not s else f"{_ms(s['min_ms'])} / {_ms(s['median_ms'])} / {_ms(s['p90_ms'])} (±{100 * s['round_spread']:.0f} %)")
        ml = r.get("machine_load") or {}
        cells.append("–" if ml.get("cpu_per_wall_per_thread") is None else f"{ml['cpu_per_wall_per_thread']:.2f}")
        cells.append("–" if ml.get("loadavg_max") is None else f"{ml['loadavg_median']:.1f} ({ml['loadavg_max']:.1f})")
        L.append(f"| `{r['label']}` | {r['threads']} | " + " | ".join(cells) + " |")
    L.append("")
    L.append("CPU/wall per thread: CPU seconds the worker got per wall second while timing components, divided by its threads "
             "(≈ 1 when it had its cores to itself; onnxruntime's pool spins while waiting).")
    busy = [r for r in rows if (r.get("machine_load") or {}).get("loadavg_median") is not None
            and r["machine_load"]["loadavg_median"] > m["physical_cores"] + 0.5]
    if busy:
        L.append("")
        L.append(f"**Warning: the machine was busy** — the 1-minute load average during the workers was above its {m['physical_cores']} cores "
                 f"(up to {max(r['machine_load']['loadavg_max'] for r in busy):.1f}): other processes competed for the CPUs. "
                 "Interleaving spreads that over all bundles, but runs with as many threads as cores suffer most "
                 "(a busy core stalls every parallel section); treat those numbers as lower bounds.")
    L.append("")
    pk = m["peak"]
    L.append("## Achieved fraction of peak arithmetic")
    L.append("")
    L.append(f"Peak per core = MACs/cycle × {pk['ghz']:.2f} GHz: FP32 {pk['fp32_macs_per_cycle_per_core']} MACs/cycle "
             f"({pk['fp32_how']}) = {pk['fp32_gmacs_per_core']:.0f} GMAC/s; INT8 {pk['int8_macs_per_cycle_per_core']} MACs/cycle "
             f"({pk['int8_how']}) = {pk['int8_gmacs_per_core']:.0f} GMAC/s; × min(threads, {pk['physical_cores']} cores). "
             "FP32/TorchScript bundles are compared with the FP32 peak, QDQ/int4/TorchScript-INT8 with the INT8 peak. "
             "MACs are the model's Conv/ConvTranspose/Gemm/MatMul multiply-accumulates at batch 1, counted from the FP32 graph "
             "(ONNX shape inference; see benchmarks/README.md).")
    L.append("")
    ref = next((v for v in agg["reference_macs"].values() if v), None)
    if ref:
        L.append("MACs per call: " + ", ".join(f"{COMPONENT_TITLES[c]} {ref[c] / 1e9:.3f} G" for c in COMPONENTS)
                 + f"; one DDIM-{steps} sample {(steps * ref['unet'] + ref['velocity_decoder'] + ref['seismic_decoder']) / 1e9:.2f} GMAC.")
        L.append("")
    head = ["bundle", "threads", "peak GMAC/s"] + [f"{COMPONENT_TITLES[c]} GMAC/s (% peak)" for c in COMPONENTS] + [f"DDIM-{steps} GMAC/s (% peak)"]
    L.append("| " + " | ".join(head) + " |")
    L.append("|" + "---|" * len(head))
    for r in rows:
        a = r["arithmetic"]
        if "components" not in a:
            L.append(f"| `{r['label']}` | {r['threads']} | " + " | ".join(["–"] * (len(head) - 2)) + " |")
            continue
        cells = [f"`{r['label']}`", str(r["threads"]), f"{a['peak_gmacs']:.0f} ({a['peak_kind']})" if a["peak_gmacs"] else "–"]
        for c in COMPONENTS:
            x = a["components"].get(c)
            cells.append(f"{x['gmacs']:.1f} ({_pct(x['fraction_of_peak'])})" if x else "–")
        d = a.get("ddim")
        cells.append(f"{d['gmacs']:.1f} ({_pct(d['fraction_of_peak'])})" if d and "gmacs" in d else "–")
        L.append("| " + " | ".join(cells) + " |")
    if agg["targets"]:
        L.append("")
        L.append("## Targets (issues 5, 6, 7 and SPEC §7)")
        L.append("")
        L.append("| issue | what | measured | target | met | detail |")
        L.append("|---|---|---|---|---|---|")
        for t in agg["targets"]:
            unit = {"x": "×", "": ""}.get(t["unit"], " " + t["unit"])
            if t["measured"] is None:
                meas = "–"
            elif t["unit"] == "x":
                meas = f"{t['measured']:.2f}{unit}"
            elif t["unit"] == "":
                meas = f"{t['measured']:.3f}"
            else:
                meas = f"{t['measured']:.3g}{unit}"
            goal = f"{t['op'].replace('>=', '≥').replace('<=', '≤')} {t['target']:g}{unit}"
            met = "–" if t["met"] is None else ("**met**" if t["met"] else "**missed**")
            L.append(f"| {t['issue']} | {t['what']} | {meas} | {goal} | {met} | {t['detail']} |")
    torch_in_ort = [r["label"] for r in rows if r["runtime"] == "onnxruntime" and r["torch_imported"]]
    L.append("")
    L.append("ONNX bundles ran in processes without torch." if not torch_in_ort else f"WARNING: torch was imported in the ORT runs of {', '.join(torch_in_ort)}.")
    L.append("")
    return "\n".join(L)


def write_markdown(report: dict[str, Any], path: Path) -> None:
    atomic_write_bytes(path, markdown(report).encode())


# ---------------------------------------------------------------------------------------------
def write_png(report: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    rows = report["results"]["rows"]
    opts = report["options"]
    labels = [b["label"] for b in report["bundles"]]
    threads = opts["threads"]
    steps = opts["steps"]
    T = report["bundles"][0]["timesteps"] if report["bundles"] else 256
    panels: list[tuple[str, Any, float, str]] = [(f"{COMPONENT_TITLES[c]} (batch 1)", ("c", c), 1.0, "ms") for c in COMPONENTS]
    panels.append((f"one sample, DDIM {steps} steps", ("e", "ddim"), 1.0, "ms"))
    if any("ddpm" in r["end_to_end"] for r in rows):
        panels.append((f"one sample, DDPM {T} steps", ("e", "ddpm"), 1e-3, "s"))
    panels.append((f"peak RSS: load + one DDIM-{steps} sample", ("m", None), 1 / 2**20, "MiB"))

    def stat(r, key):
        kind, name = key
        if kind == "m":
            v = r["peak_rss_bytes"]["sample_process_max"]
            return (v, v, v) if v else None
        s = r["components"].get(name) if kind == "c" else r["end_to_end"].get(name)
        return (s["min_ms"], s["median_ms"], s["p90_ms"]) if s else None

    ncols = 3
    nrows = (len(panels) + ncols - 1) // ncols
    fig, axes = plt.subplots(nrows, ncols, figsize=(5.2 * ncols, 3.9 * nrows), squeeze=False)
    width = 0.8 / max(1, len(threads))
    colors = plt.get_cmap("tab10").colors
    x = np.arange(len(labels))
    for ax, (title, key, scale, unit) in zip(axes.flat, panels):
        for j, t in enumerate(threads):
            med, lo, hi = [], [], []
            for lab in labels:
                r = next((r for r in rows if r["label"] == lab and r["threads"] == t), None)
                s = stat(r, key) if r else None
                if s is None:
                    med.append(np.nan), lo.append(0), hi.append(0)
                    continue
                mn, md, p90 = (v * scale for v in s)
                med.append(md), lo.append(md - mn), hi.append(p90 - md)
            pos = x - 0.4 + width * (j + 0.5)
            bars = ax.bar(pos, med, width, yerr=[lo, hi] if key[0] != "m" else None, capsize=2, color=colors[j % 10],
                          label=f"{t} thread{'s' if t > 1 else ''}", error_kw={"elinewidth": 0.8})
            for bar, v in zip(bars, med):
                if np.isfinite(v):
                    ax.annotate(f"{v:.0f}" if v >= 100 else f"{v:.3g}", (bar.get_x() + bar.get_width() / 2, v), ha="center", va="bottom", fontsize=6.5,
                                xytext=(0, 1), textcoords="offset points")
        tops = [p.get_height() for p in ax.patches if np.isfinite(p.get_height())]
        if tops:  # scale to the medians: a few outliers' p90 must not flatten the bars (their whiskers are clipped)
            ax.set_ylim(0, 1.3 * max(tops))
        ax.set_title(title, fontsize=10)
        ax.set_ylabel(unit)
        ax.set_xticks(x)
        ax.set_xticklabels(labels, rotation=25, ha="right", fontsize=8)
        ax.grid(axis="y", alpha=0.3)
        if key[0] == "m":
            for target in report.get("rss_target_mib", []):
                ax.axhline(target, color="red", lw=0.8, ls="--")
                ax.annotate("600 MB target", (ax.get_xlim()[0], target), xytext=(2, 2), textcoords="offset points", fontsize=7, color="red")
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=8)
    m = report["machine"]
    fig.suptitle(f"ubdiff-onnx bench: median latency (whiskers: min–p90, clipped), {m['cpu_model']}, onnxruntime {m['versions'].get('onnxruntime')}",
                 fontsize=11)
    fig.tight_layout()
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> int:
    """Re-render bench.md and bench.png from a report folder's bench.json: python -m ubdiff_onnx.bench.report DIR"""
    import sys

    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m ubdiff_onnx.bench.report REPORT_DIR", file=sys.stderr)
        return 2
    out = Path(args[0])
    if not (out / "bench.json").is_file():
        print(f"error: {out / 'bench.json'}: not found (run `ubdiff-onnx bench ... --out {out}` first)", file=sys.stderr)
        return 1
    report = json.loads((out / "bench.json").read_text())
    write_markdown(report, out / "bench.md")
    write_png(report, out / "bench.png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
