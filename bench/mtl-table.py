#!/usr/bin/env python3
"""Markdown tables from bench/mtl-tables.sh's run directories:
per benchmark, method × (per-task test accuracy, Δm %, seconds per step relative to EW)."""
import json, os, sys

out = sys.argv[1] if len(sys.argv) > 1 else "runs/mtl-tables"
order = "ew uw dwa rlw gls gradnorm pcgrad mgda mgda-ub cagrad graddrop imtl gradvac nash-mtl moco aligned-mtl recon-ew recon-pcgrad".split()
for bench in ("multifashion", "digits"):
    root = os.path.join(out, bench)
    if not os.path.isdir(root):
        continue
    single = json.load(open(os.path.join(root, "single", "baselines.json")))["tasks"]
    runs = {}
    for m in order:
        p = os.path.join(root, m, "mtl.json")
        if os.path.exists(p):
            runs[m] = json.load(open(p))
    tasks = next(iter(runs.values()))["tasks"] if runs else list(single)
    ew = runs.get("ew", {}).get("seconds_per_step")
    print(f"\n### {bench}\n")
    print("| method | " + " | ".join(tasks) + " | Δm % | step time ÷ EW |")
    print("|---|" + "---:|" * (len(tasks) + 2))
    print("| single-task | " + " | ".join(f"{100 * single[t]:.2f}" for t in tasks) + " | 0 | – |")
    for m, r in runs.items():
        rel = f"{r['seconds_per_step'] / ew:.2f}" if ew else "–"
        name = "mgda (representation, MGDA-UB)" if m == "mgda-ub" else m
        if m.startswith("recon-"):
            layers = ", ".join(r.get("task_specific", [])) or "none"
            name = f"recon + {m[6:]} (task-specific: {layers})"
        print(f"| {name} | " + " | ".join(f"{100 * r['accuracy'][t]:.2f}" for t in tasks)
              + f" | {r.get('delta_m_percent', float('nan')):+.2f} | {rel} |")
    if ew:
        print(f"\nEW: {1000 * ew:.1f} ms per step.")
