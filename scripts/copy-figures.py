#!/usr/bin/env python3
"""Figures of scripts/copy-detection.sh from the JSON of `dino duplicates` and `dino search`.

copy-figures.py recall PLANTED.csv DUPLICATES.json   planted pairs among the listed rows, per edit
copy-figures.py precision SEARCH.json                 precision@k by class (k: the lists' length)
"""
import csv
import json
import os
import sys


def recall(planted_csv, duplicates_json):
    root = os.path.dirname(os.path.abspath(planted_csv))
    with open(planted_csv) as f:
        planted = list(csv.DictReader(f))
    with open(duplicates_json) as f:
        report = json.load(f)
    rel = lambda p: os.path.relpath(os.path.abspath(p), root)
    listed = {frozenset((rel(p["path_a"]), rel(p["path_b"]))) for p in report["pairs"]}
    found = [frozenset((p["original"], p["copy"])) in listed for p in planted]
    print(f"recall: {sum(found)} of {len(planted)} planted pairs in the top {len(report['pairs'])} rows "
          f"({report['weights']}; sizes {report['sizes']}, GeM p {report['gem_p']}, whitening dims {report['whitening_dims']})")
    for edit in ["crop", "mirror", "colour", "jpeg"]:
        with_edit = [hit for p, hit in zip(planted, found) if edit in p["edits"]]
        print(f"  {edit:<7} {sum(with_edit)} of {len(with_edit)}")
    missed = [f"{p['copy']} ({p['edits']})" for p, hit in zip(planted, found) if not hit]
    if missed:
        print("  missed: " + ", ".join(missed))


def precision(search_json):
    with open(search_json) as f:
        report = json.load(f)
    per_class = {}
    for q in report["queries"]:
        hits = q["results"]
        share = sum(h["label"] == q["label"] for h in hits) / max(len(hits), 1)
        per_class.setdefault(q["label"], []).append(share)
    every = [s for shares in per_class.values() for s in shares]
    k = report["top"]
    print(f"precision@{k}: {100 * sum(every) / len(every):.1f} % over {len(every)} queries ({report['weights']})")
    for label, shares in sorted(per_class.items()):
        print(f"  {label:<12} {100 * sum(shares) / len(shares):.1f} %")


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "recall":
        recall(sys.argv[2], sys.argv[3])
    elif len(sys.argv) == 3 and sys.argv[1] == "precision":
        precision(sys.argv[2])
    else:
        sys.exit(__doc__)
