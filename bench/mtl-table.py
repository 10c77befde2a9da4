#!/usr/bin/env python3
"""Markdown tables from bench/mtl-tables.sh's run directories:
per benchmark, method × (per-task test accuracy, Δm %, step time relative to EW).
Step time: the median of compute + comm ms over steps ≥ 3 of the run's log.jsonl (robust to
the bursts of a shared machine); mtl.json's mean seconds per step when there is no log."""
import json, os, statistics, sys


def step_seconds(run_dir, r):
    p = os.path.join(run_dir, "log.jsonl")
    if os.path.exists(p):
        rows = [json.loads(l) for l in open(p)]
        ms = [x["compute_ms"] + x.get("comm_ms", 0) for x in rows if x.get("step", 0) >= 3]
        if ms:
            return statistics.median(ms) / 1000
    return r["seconds_per_step"]


out = sys.argv[1] if len(sys.argv) > 1 else "runs/mtl-tables"
order = "ew uw dwa rlw gls gradnorm pcgrad mgda mgda-ub cagrad graddrop imtl gradvac nash-mtl moco aligned-mtl recon-ew recon-pcgrad".split()
for bench in ("multifashion", "digits"):
    root = os.path.join(out, bench)
    if not os.path.exists(os.path.join(root, "single", "baselines.json")):
        continue
    single = json.load(open(os.path.join(root, "single", "baselines.json")))["tasks"]
    runs = {}
    for m in order:
        p = os.path.join(root, m, "mtl.json")
        if os.path.exists(p):
            runs[m] = json.load(open(p))
            runs[m]["step_s"] = step_seconds(os.path.join(root, m), runs[m])
    tasks = next(iter(runs.values()))["tasks"] if runs else list(single)
    ew = runs.get("ew", {}).get("step_s")
    print(f"\n### {bench}\n")
    print("| method | " + " | ".join(tasks) + " | Δm % | step time ÷ EW |")
    print("|---|" + "---:|" * (len(tasks) + 2))
    print("| single-task | " + " | ".join(f"{100 * single[t]:.2f}" for t in tasks) + " | 0 | – |")
    for m, r in runs.items():
        rel = f"{r['step_s'] / ew:.2f}" if ew else "–"
        name = "mgda (representation, MGDA-UB)" if m == "mgda-ub" else m
        if m.startswith("recon-"):
            layers = ", ".join(r.get("task_specific", [])) or "none"
            name = f"recon + {m[6:]} (task-specific: {layers})"
        print(f"| {name} | " + " | ".join(f"{100 * r['accuracy'][t]:.2f}" for t in tasks)
              + f" | {r.get('delta_m_percent', float('nan')):+.2f} | {rel} |")
    if ew:
        print(f"\nEW: {1000 * ew:.1f} ms per step (median).")

# MT-SLVR few-shot on spoken digits per balancing (bench/mtl-tables.sh fewshot).
import re
root = os.path.join(out, "fewshot")
if os.path.isdir(root):
    pattern = re.compile(r"^fewshot \S+ \S+ \((\S+)\) (\S+): (\d+)-way (\d+)-shot (.*?) \(")
    rows, slots, setting = {}, [], ""
    for m in "ew uw dwa pcgrad cagrad nash-mtl".split() + sorted(os.listdir(root)):
        p = os.path.join(root, m, "fewshot.txt")
        if m in rows or not os.path.exists(p):
            continue
        rows[m] = {}
        for line in open(p):
            g = pattern.match(line.strip())
            if g:
                layer, slot, ways, shots, result = g.groups()
                setting = f"{ways}-way {shots}-shot, {layer} features"
                rows[m][slot] = result
                if slot not in slots:
                    slots.append(slot)
    if rows:
        print(f"\n### MT-SLVR few-shot, spoken digits ({setting})\n")
        print("| --mtl | " + " | ".join(slots) + " |")
        print("|---|" + "---:|" * len(slots))
        for m, r in rows.items():
            print(f"| {m} | " + " | ".join(r.get(s, "–") for s in slots) + " |")
