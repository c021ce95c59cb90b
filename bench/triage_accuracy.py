"""Triage accuracy on the labeled real-curve fixture (tests/fixtures/triage/curves.json).

    python bench/triage_accuracy.py [--fixture PATH] [--verbose]

Prints the confusion matrix (rows: the verified label, columns: triage's verdict), per-label
precision/recall, macro-F1 (goal ≥ 0.95), every misclassified run with triage's reason, and
whether any diverging or crashed run was labeled healthy or undetermined (it must never be).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the fixture's loader lives with the tests
from tests.fixtures.triage.load import FIXTURE, load_runs  # noqa: E402


def evaluate(runs: list[dict[str, Any]]) -> tuple[list[str], list[str], list[Any]]:
    import triage

    verdicts = triage.classify_many([r["curves"] for r in runs],
                                    metas=[{"failure": r.get("failure"), "error": r.get("error")} for r in runs])
    return [r["label"] for r in runs], [v.label for v in verdicts], verdicts


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--fixture", type=Path, default=FIXTURE)
    ap.add_argument("--verbose", action="store_true", help="print every run's verdict")
    args = ap.parse_args()
    from sklearn.metrics import classification_report, confusion_matrix, f1_score

    import triage

    runs = load_runs(args.fixture)
    truth, pred, verdicts = evaluate(runs)
    labels = [lb for lb in triage.LABELS if lb in truth or lb in pred]
    cm = confusion_matrix(truth, pred, labels=labels)
    sources: dict[str, int] = {}
    for r in runs:
        sources[r["source"]] = sources.get(r["source"], 0) + 1
    print(f"{len(runs)} labeled runs ({', '.join(f'{n} {s}' for s, n in sources.items())})\n")
    width = max(len(lb) for lb in labels) + 1
    print(" " * width + "predicted →")
    print(f"{'true ↓':{width}s}" + "".join(f"{lb[:11]:>12s}" for lb in labels))
    for lb, row in zip(labels, cm):
        print(f"{lb:{width}s}" + "".join(f"{n:12d}" for n in row))
    print()
    print(classification_report(truth, pred, labels=labels, zero_division=0, digits=3))
    macro = f1_score(truth, pred, labels=sorted(set(truth)), average="macro", zero_division=0)
    unsafe = [r["id"] for r, t, p in zip(runs, truth, pred)
              if t in ("diverging", "crashed") and p in ("healthy", "undetermined")]
    wrong = [(r, v) for r, v, t, p in zip(runs, verdicts, truth, pred) if t != p]
    for r, v in wrong:
        print(f"MISCLASSIFIED {r['id']} ({r['source']}, {r['config']}): labeled {r['label']}, triage says "
              f"{v.label} ({v.confidence:.2f}): {v.reason}")
    if args.verbose:
        for r, v in zip(runs, verdicts):
            print(f"{r['id']:4s} {r['label']:12s} → {v.label:12s} {v.confidence:.2f}  {v.reason}")
    held = [(t, p) for r, t, p in zip(runs, truth, pred) if r.get("holdout")]
    if held:
        ht, hp = zip(*held)
        hf1 = f1_score(ht, hp, labels=sorted(set(ht)), average="macro", zero_division=0)
        print(f"held-out runs (generated after the rules were tuned): {sum(a == b for a, b in held)} of {len(held)} "
              f"right, macro-F1 {hf1:.3f}")
    print(f"\nRESULT macro-F1 {macro:.3f} (goal ≥ 0.95) on {len(runs)} runs; {len(wrong)} misclassified; "
          f"diverging/crashed labeled healthy or undetermined: {len(unsafe)} {unsafe if unsafe else ''}")


if __name__ == "__main__":
    main()
