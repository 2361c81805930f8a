#!/usr/bin/env python3
"""Pivot tables for docs/results.md from the runs of tools/results_grid.sh (stdlib only).

    python3 tools/results_pivot.py [runs/results]

Prints, per model: test accuracy of the training-time methods by target sparsity, and of the
post-training methods by r0 (with the achieved sparsity, the exact fix-up and wall times).
"""
import json
import sys
from pathlib import Path

root = Path(sys.argv[1] if len(sys.argv) > 1 else "runs/results")
TARGETS = ["0.90", "0.95", "0.98", "0.99"]
RATIOS = ["0.5", "0.6", "0.7", "0.8", "0.9", "0.95"]
POST = [
    ("fcpts-paper", "FCPTS (paper)"),
    ("fcpts-code", "FCPTS (code)"),
    ("magnitude-uniform", "magnitude uniform + FT"),
    ("magnitude-erk", "magnitude ERK + FT"),
    ("magnitude-global", "magnitude global + FT"),
    ("magnitude-l2norm", "magnitude global on w / ‖W‖ + FT"),
    ("lamp", "LAMP + FT"),
    ("magnitude-uniform-nofinetune", "magnitude uniform, no FT"),
    ("magnitude-erk-nofinetune", "magnitude ERK, no FT"),
    ("magnitude-global-nofinetune", "magnitude global, no FT"),
    ("magnitude-l2norm-nofinetune", "magnitude global on w / ‖W‖, no FT"),
    ("lamp-nofinetune", "LAMP, no FT"),
]


def summary(path):
    f = path / "summary.json"
    return json.loads(f.read_text()) if f.exists() else None


def pct(x):
    return "-" if x is None else f"{100 * x:.2f}"


def table(first, columns, rows, cell):
    """A Markdown table: one row per (label, key) in `rows`, `cell(key, column)` per column."""
    print(f"| {first} | " + " | ".join(columns) + " |")
    print("|---|" + "---|" * len(columns))
    for label, key in rows:
        print(f"| {label} | " + " | ".join(cell(key, c) for c in columns) + " |")
    print()


def run_cell(base, field):
    """A cell showing `field(summary)` of the run `base / f"{key}-{column}"`, or "-"."""
    def cell(key, column):
        s = summary(base / f"{key}-{column}")
        return "-" if s is None else field(s)
    return cell


def train_tables(model):
    base = root / model
    dense = summary(base / "dense")
    plain = summary(base / "str")
    methods = [(m, m) for m in ["str", "gmp", "magnitude"]]
    print(f"#### {model}: test accuracy (%) at global sparsity, 10 epochs each\n")
    if dense:
        print(f"dense: {pct(dense['test_accuracy'])}; STR without target: "
              f"{pct(plain and plain['test_accuracy'])} at {pct(plain and plain['overall_sparsity'])}% sparsity\n")
    table("method", TARGETS, methods, run_cell(base, lambda s: pct(s["test_accuracy"])))
    print(f"#### {model}: sparse FLOPs (% of dense)\n")
    table("method", TARGETS, methods,
          run_cell(base, lambda s: f"{100 * s['flops_sparse'] / s['flops_dense']:.1f}"))


def seed_table(model):
    """Seeds 0, 1, 2 of STR and GMP at the high sparsities (`results_grid.sh seeds`)."""
    base = root / model
    if not (base / "seed1").exists():
        return

    def cell(method, target):
        runs = [base / f"{method}-{target}"] + [base / f"seed{k}" / f"{method}-{target}" for k in (1, 2)]
        accs = [s["test_accuracy"] for s in map(summary, runs) if s]
        if not accs:
            return "-"
        return " / ".join(pct(a) for a in accs) + f" ({pct(sum(accs) / len(accs))})"

    print(f"#### {model}: test accuracy (%) over seeds 0 / 1 / 2 (mean)\n")
    table("method", ["0.95", "0.98", "0.99"], [("str", "str"), ("gmp", "gmp")], cell)


def post_tables(model):
    base = root / model / "post"
    dense = summary(root / model / "dense")
    print(f"#### {model}: post-training, test accuracy (%) by r0 "
          f"(dense {pct(dense and dense['test_accuracy'])}; 1,024 calibration images, 1,600 iterations)\n")
    table("method", RATIOS, [(label, key) for key, label in POST],
          run_cell(base, lambda s: pct(s["test_accuracy"])))

    def fcpts(s):
        fix = s.get("fixup") or {}
        return f"{100 * s['achieved_sparsity']:.3f}% / {fix.get('changed', 0)} / {s['wall_seconds']:.1f}s"

    print(f"#### {model}: FCPTS, achieved sparsity, weights changed by the exact fix-up, wall seconds\n")
    table("variant", RATIOS, [(k, k) for k in ["fcpts-paper", "fcpts-code"]], run_cell(base, fcpts))
    walls = [summary(base / f"magnitude-erk-{r}") for r in RATIOS]
    walls = [s["wall_seconds"] for s in walls if s]
    if walls:
        print(f"magnitude ERK + fine-tuning (same 1,600 iterations): {min(walls):.1f}-{max(walls):.1f}s per run\n")
    print("#### per-layer sparsity learned by FCPTS (paper variant), % (the analogue of the paper's Fig. 5)\n")
    first = summary(base / f"fcpts-paper-{RATIOS[0]}")
    if first:
        names = [l["name"].removesuffix(".weight") for l in first["layers"]]
        print("| r0 | " + " | ".join(names) + " | ERK start → learned |")
        print("|---|" + "---|" * (len(names) + 1))
        for r in RATIOS:
            s = summary(base / f"fcpts-paper-{r}")
            if s:
                cells = [f"{100 * l['sparsity']:.1f}" for l in s["layers"]]
                moves = ", ".join(
                    f"{100 * l['initial_sparsity']:.0f}→{100 * l['learned_sparsity']:.0f}" for l in s["layers"])
                print(f"| {r} | " + " | ".join(cells) + f" | {moves} |")
    print()


for model in ["lenet300", "lenet5"]:
    if (root / model).exists():
        print(f"### {model}\n")
        train_tables(model)
        seed_table(model)
        post_tables(model)
