"""Train jailbreak-top variants with the build's own code and data, and compare them on VALIDATION at the threshold
the build would serve (chosen on validation by `pipeline._pick_threshold`); held-out test figures are printed for
the record only, never to choose.

    .venv/bin/python scripts/jailbreak_variants.py [VARIANT ...]

A VARIANT is `branch:method:epochs:lr`, e.g. `5:lora:2:1e-4` (the default list compares branch 5 and 4, more epochs
at a lower rate, and full fine-tuning). ~4-6 minutes per variant on 2 CPU cores. Appends one JSON line per variant
to benchmarks/results/jailbreak_variants.jsonl and prints it.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from build_engines import pipeline  # noqa: E402
from build_engines.config import BuildConfig, TaskConfig  # noqa: E402
from build_engines.data.intent import load_intent  # noqa: E402
from build_engines.data.jailbreak import load_jailbreak  # noqa: E402
from build_engines.data.labels import JAILBREAK_LABELS  # noqa: E402
from build_engines.encoder import load_encoder  # noqa: E402
from build_engines.metrics import binary_at_threshold  # noqa: E402
from build_engines.paths import AUTHORED_DIR  # noqa: E402
from build_engines.threads import choose_threads  # noqa: E402
from build_engines.train import predict, trunk_features  # noqa: E402

DEFAULT_VARIANTS = ("5:lora:2:1e-4", "4:lora:2:1e-4", "5:lora:3:5e-5", "5:full:2:1e-4")


def main() -> None:
    variants = sys.argv[1:] or list(DEFAULT_VARIANTS)
    choose_threads()
    base = BuildConfig()
    intent = load_intent(AUTHORED_DIR, seed=base.seed, val_fraction=base.val_fraction, weak=False, external=[])
    data = load_jailbreak(AUTHORED_DIR, intent, seed=base.seed, val_fraction=base.val_fraction)
    encoder = load_encoder()
    val_y = np.array([JAILBREAK_LABELS.index(r.label) for r in data.val])
    test_y = np.array([JAILBREAK_LABELS.index(r.label) for r in data.test])
    out = ROOT / "benchmarks" / "results" / "jailbreak_variants.jsonl"
    for variant in variants:
        branch, method, epochs, lr = variant.split(":")
        task = TaskConfig(
            epochs=int(epochs),
            lr=float(lr),
            max_length=base.jailbreak.max_length,
            branch_layer=int(branch),
            method=method,  # type: ignore[arg-type]
        )
        started = time.perf_counter()
        result, threshold = pipeline._train_jailbreak(encoder, base.replace(jailbreak=task), data, {})

        scores = {}
        for split, rows in (("val", data.val), ("test", data.test)):
            ids = pipeline._rows(task.max_length, [r.text for r in rows])
            features = trunk_features(encoder, task.branch_layer, ids, batch_size=32)
            scores[split] = np.array([p[1] for p in predict(result.top, features, "sequence")])
        val = binary_at_threshold(scores["val"], val_y, threshold)
        test = binary_at_threshold(scores["test"], test_y, threshold)
        row = {
            "variant": variant,
            "best_epoch": result.best_epoch,
            "val_f1_at_0.5": round(result.best_val, 4),
            "served_threshold": threshold,
            "val_f1": round(val["f1"], 4),
            "val_fpr": round(val["fpr"], 4),
            "test_f1_for_the_record": round(test["f1"], 4),
            "test_fpr_for_the_record": round(test["fpr"], 4),
            "seconds": round(time.perf_counter() - started),
        }
        print(json.dumps(row), flush=True)
        with out.open("a") as f:
            f.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
