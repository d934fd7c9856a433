"""Leave-one-domain-out on the synthetic domains: train on three, test on the fourth, per model.

    python benchmarks/lodo.py --models mmfas,mmdg,spoof_trace --jobs 4 --out runs/lodo
    python benchmarks/lodo.py --table-only --out runs/lodo      # just print the table again

Each run is `edge-fas train --config configs/lodo-MODEL.yaml` with the held-out domain as test set;
the threshold is fixed on the source domains' validation split and applied to the held-out domain.
Prints a Markdown table (HTER, AUC, APCER max, BPCER, BPCER@APCER=5%) and the training throughput
(samples/s, mean over epochs) per model; writes it to OUT/table.md too.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

DOMAINS = ("surf", "cefa", "wmca", "padisi")


def prepare(models, extra_sets, workers):
    """Render every sample the runs need once into the crop cache, in `workers` processes (the runs
    then read it: a sample's entry is the same whichever domains a run groups it with)."""
    from edge_fas.commands.cache import build_cache
    from edge_fas.training import load_train_config

    for m in models:
        cfg = load_train_config(ROOT / "configs" / f"lodo-{m}.yaml", extra_sets)
        cfg["data"].update(train_domains=list(DOMAINS), val_domains=None, test_domains=list(DOMAINS))
        t = build_cache(cfg, workers=workers)
        print(f"prepared crops for {m}: {t['samples']} samples ({t['built']} rendered) in {t['seconds']:.0f} s",
              flush=True)


def run_all(models, out: Path, jobs: int, extra: list[str]):
    exe = str(Path(sys.executable).parent / "edge-fas")
    queue = []
    for m in models:
        for held in DOMAINS:
            src = [d for d in DOMAINS if d != held]
            run_out = out / m / held
            cmd = [exe, "train", "--config", str(ROOT / "configs" / f"lodo-{m}.yaml"),
                   "--set", f"data.train_domains=[{','.join(src)}]", "--set", f"data.test_domains=[{held}]",
                   "--set", f"out={run_out}", "--set", "train.progress=false", *extra]
            queue.append((m, held, cmd, run_out))
    running = []
    env = dict(os.environ, OMP_NUM_THREADS="1")
    while queue or running:
        while queue and len(running) < jobs:
            m, held, cmd, run_out = queue.pop(0)
            run_out.mkdir(parents=True, exist_ok=True)
            log = open(run_out / "stdout.txt", "w")
            running.append((m, held, subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env), time.time()))
        for item in list(running):
            m, held, p, t0 = item
            if p.poll() is not None:
                running.remove(item)
                print(f"{m} held-out {held}: rc {p.returncode} in {time.time() - t0:.0f} s", flush=True)
        time.sleep(1)


def pct(v):
    return "n/a" if v is None else f"{100 * v:.1f}"


def table(models, out: Path) -> str:
    lines = ["| model | held-out | HTER % | AUC % | APCER max % | BPCER % | BPCER@APCER=5% % |",
             "|---|---|---|---|---|---|---|"]
    speed = {}
    for m in models:
        rates = []
        for held in DOMAINS:
            f = out / m / held / "metrics.json"
            if not f.exists():
                lines.append(f"| {m} | {held} | (missing) | | | | |")
                continue
            r = json.loads(f.read_text())
            t = r["test"]
            lines.append(f"| {m} | {held} | {pct(t['hter'])} | {pct(t['auc'])} | {pct(t['apcer_max'])} | "
                         f"{pct(t['bpcer'])} | {pct(t['bpcer_at_apcer'].get('0.05'))} |")
            rates += [h["samples_per_s"] for h in r["history"]]
        if rates:
            speed[m] = sum(rates) / len(rates)
    lines += ["", "| model | training throughput (samples/s, mean over epochs and folds) |", "|---|---|"]
    lines += [f"| {m} | {s:.1f} |" for m, s in speed.items()]
    return "\n".join(lines) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="mmfas,mmdg,spoof_trace")
    ap.add_argument("--out", default="runs/lodo")
    ap.add_argument("--jobs", type=int, default=1, help="runs in parallel")
    ap.add_argument("--render-workers", type=int, default=1, help="processes rendering the crops first")
    ap.add_argument("--set", action="append", default=[], help="extra KEY=VALUE for every run (edge-fas train --set)")
    ap.add_argument("--table-only", action="store_true")
    a = ap.parse_args()
    models, out = a.models.split(","), Path(a.out)
    if not a.table_only:
        import yaml

        sets = {k: yaml.safe_load(v) for k, _, v in (s.partition("=") for s in a.set)}
        prepare(models, sets, a.render_workers)
        run_all(models, out, a.jobs, [x for s in a.set for x in ("--set", s)])
    t = table(models, out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "table.md").write_text(t)
    print(t)


if __name__ == "__main__":
    main()
