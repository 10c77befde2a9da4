#!/usr/bin/env python3
"""The README's amortised-invariance table from bench/amortised-figures.sh's eval outputs:
per downstream task, the learned v, the probe at the learned v, the best fixed corner, and the
plain encoders' probe. Usage: python3 bench/amortised-table.py runs/amortised-e2 [runs/amortised-audio-e4]"""
import os, re, sys

line = re.compile(r"^amortised (\S+) (\S+) task (\S+): (.*)$")
for root in sys.argv[1:]:
    rows = {}  # task -> {column: text}
    runs = [r for r in ("amortised", "amortised-moco", "simclr", "moco") if os.path.exists(f"{root}/{r}.eval.out")]
    for run in runs:
        for text in open(f"{root}/{run}.eval.out"):
            m = line.match(text.strip())
            if not m:
                continue
            task, what = m.group(3), m.group(4)
            r = rows.setdefault(task, {})
            if (x := re.match(r"learned v (\([^)]*\)).*joint head ([0-9.]+)%", what)):
                r[f"{run} v"] = x.group(1)
            elif (x := re.match(r"probe at learned v \([^)]*\): ([0-9.]+)%", what)):
                r[f"{run} learned"] = x.group(1)
            elif (x := re.match(r"best corner (\([^)]*\)): ([0-9.]+)%", what)):
                r[f"{run} corner"] = f"{x.group(2)} at {x.group(1)}"
            elif (x := re.match(r"probe ([0-9.]+)%", what)):
                r[f"{run} probe"] = x.group(1)
    cond = [r for r in runs if r.startswith("amortised")]
    plain = [r for r in runs if not r.startswith("amortised")]
    head = ["task"]
    for r in cond:
        head += [f"{r}: learned v", f"{r}: probe at learned v", f"{r}: best corner"]
    head += [f"{r} (plain): probe" for r in plain]
    print(f"\n{root}\n")
    print("| " + " | ".join(head) + " |")
    print("|---|" + "---:|" * (len(head) - 1))
    for task, r in rows.items():
        cells = [task]
        for c in cond:
            cells += [r.get(f"{c} v", "–"), r.get(f"{c} learned", "–"), r.get(f"{c} corner", "–")]
        cells += [r.get(f"{p} probe", "–") for p in plain]
        print("| " + " | ".join(cells) + " |")
