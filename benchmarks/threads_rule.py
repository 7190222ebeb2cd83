"""Is the default `--threads 0` (per-component rule) within 5 % of the best fixed thread count?

    python benchmarks/threads_rule.py BUNDLE [--threads 0,1,2] [--samplers ddim:50,unipc:10] [--rounds 3] [--out FILE.json]

For every (threads, sampler) pair, a fresh process loads the bundle, makes one untimed sample, then
times ``--repeat`` end-to-end samples of batch 1 and one batch of 8 (`BundleSampler.sample`:
noise, U-Net loop, both decoders, denormalisation). Rounds are interleaved so that the drift of a
shared machine lands on all settings alike; the median over rounds is reported, per sample.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

CHILD = r"""
import json, sys, time
import numpy as np
from ubdiff_onnx.runtime.sampler import BundleSampler
bundle, threads, sampler, steps, repeat = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
smp = BundleSampler(bundle, threads=threads, verify=False)
def run(n, b, seed):
    t = time.perf_counter()
    for _ in smp.sample(n, steps=steps, sampler=sampler, seed=seed, batch_size=b):
        pass
    return time.perf_counter() - t
run(1, 1, 99); run(8, 8, 98)
b1 = [run(1, 1, i) for i in range(repeat)]
b8 = [run(8, 8, 100 + i) / 8 for i in range(max(1, repeat // 4))]
print(json.dumps({"batch1_ms": 1000 * float(np.median(b1)), "batch8_ms_per_sample": 1000 * float(np.median(b8))}))
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("bundle", type=Path)
    ap.add_argument("--threads", default="0,1,2")
    ap.add_argument("--samplers", default="ddim:50,unipc:10")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--repeat", type=int, default=8)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    threads = [int(t) for t in args.threads.split(",")]
    settings = [(s.split(":")[0], int(s.split(":")[1])) for s in args.samplers.split(",")]
    pairs = [(t, s) for s in settings for t in threads]
    raw: dict[str, list[dict]] = {}
    for r in range(args.rounds):
        k = r % len(pairs)
        for t, (name, steps) in pairs[k:] + pairs[:k]:
            out = subprocess.run([sys.executable, "-c", CHILD, str(args.bundle), str(t), name, str(steps), str(args.repeat)],
                                 capture_output=True, text=True, check=True)
            raw.setdefault(f"{name}-{steps}|{t}", []).append(json.loads(out.stdout.strip().splitlines()[-1]))
            print(f"round {r} threads {t} {name}-{steps}: {raw[f'{name}-{steps}|{t}'][-1]}", flush=True)
    table = {key: {m: statistics.median(v[m] for v in vals) for m in ("batch1_ms", "batch8_ms_per_sample")} for key, vals in raw.items()}
    lines = ["| setting | threads | batch 1 ms/sample | batch 8 ms/sample |", "|---|---:|---:|---:|"]
    verdict = {}
    for name, steps in settings:
        for t in threads:
            m = table[f"{name}-{steps}|{t}"]
            lines.append(f"| {name}-{steps} | {'0 (default rule)' if t == 0 else t} | {m['batch1_ms']:.1f} | {m['batch8_ms_per_sample']:.1f} |")
        if 0 in threads and len(threads) > 1:
            for metric in ("batch1_ms", "batch8_ms_per_sample"):
                best = min(table[f"{name}-{steps}|{t}"][metric] for t in threads if t > 0)
                verdict[f"{name}-{steps} {metric}"] = table[f"{name}-{steps}|0"][metric] / best
    lines.append("")
    lines += [f"- {k}: default / best fixed = {v:.3f} ({'within' if v <= 1.05 else 'NOT within'} 5 %)" for k, v in verdict.items()]
    text = "\n".join(lines)
    print(text)
    if args.out:
        args.out.write_text(json.dumps({"raw": raw, "median": table, "default_over_best": verdict, "markdown": text,
                                        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}, indent=2))


if __name__ == "__main__":
    main()
