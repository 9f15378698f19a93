"""Metrics per task. The FP32 model's outputs are the reference every other recipe is compared with.

- ``classification``: top-1 accuracy on labelled data (primary), and logits cosine to FP32.
- ``sentence``: a 3-class sentiment probe (logistic regression trained on FP32 embeddings of the probe tweets,
  applied to the recipe's embeddings of held-out tweets: primary), Lee document-similarity Pearson r, and
  sentence-embedding cosine to FP32 (as tools/eval_real_models.py does, on fewer sentences).
- ``fidelity``: mean output-row cosine to FP32 on seeded inputs (random-weight or synthetic models: no accuracy).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from onnxq.apps.zoo.registry import TaskData

PRIMARY = {"classification": "accuracy", "sentence": "probe_acc", "fidelity": "cosine"}


def _rows(a: np.ndarray) -> np.ndarray:
    a = np.asarray(a, np.float64)
    return a.reshape(-1, a.shape[-1]) if a.ndim > 1 else a.reshape(1, -1)


def row_cosine(a: np.ndarray, b: np.ndarray) -> float:
    a, b = _rows(a), _rows(b)
    if not (np.all(np.isfinite(a)) and np.all(np.isfinite(b))):
        return float("nan")
    num = np.sum(a * b, axis=1)
    den = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    cos = np.where(den > 0, num / np.maximum(den, 1e-300), np.where(np.linalg.norm(a - b, axis=1) == 0, 1.0, 0.0))
    return float(np.mean(cos))


def outputs(sess: Any, data: TaskData, task: str) -> dict[str, np.ndarray]:
    """What the model produces on the evaluation data (the FP32 run's is saved as the reference)."""
    ev = data.eval
    if task == "sentence":
        embed, tok, d = ev["embed"], ev["tokenizer"], ev["data"]
        return {"test": embed(sess, tok, d["test_text"]), "train": embed(sess, tok, d["train_text"]),
                "lee": embed(sess, tok, d["lee_docs"], 8)}
    outs = [np.asarray(sess.run(None, f)[0]) for f in ev["feeds"]]
    if task == "classification":
        return {"logits": np.concatenate(outs)}
    return {f"out{i}": o for i, o in enumerate(outs)}


def metrics(task: str, got: dict[str, np.ndarray], ref: dict[str, np.ndarray], data: TaskData) -> dict[str, float]:
    ev = data.eval
    if task == "classification":
        logits = got["logits"]
        acc = float(np.mean(np.argmax(logits, axis=1) == ev["labels"])) if np.all(np.isfinite(logits)) else float("nan")
        return {"accuracy": acc, "fidelity_cos": row_cosine(logits, ref["logits"])}
    if task == "sentence":
        from sklearn.linear_model import LogisticRegression

        d = ev["data"]
        probe = LogisticRegression(max_iter=2000, C=1.0).fit(ref["train"], d["train_label"])
        finite = bool(np.all(np.isfinite(got["test"])))
        acc = float(probe.score(np.nan_to_num(got["test"]), d["test_label"])) if finite else float("nan")
        return {"probe_acc": acc,
                "lee_pearson": float(ev["lee_pearson"](got["lee"], d["lee_sims"])),
                "fidelity_cos": row_cosine(got["test"], ref["test"])}
    cos = [row_cosine(got[k], ref[k]) for k in sorted(ref)]
    return {"cosine": float(np.mean(cos)), "fidelity_cos": float(np.mean(cos))}


def within(task: str, value: float, baseline: float, tolerance: float = 0.01) -> bool:
    """The coverage criterion: the primary metric within ``tolerance`` relative of FP32's (no NaN)."""
    if not (np.isfinite(value) and np.isfinite(baseline)) or baseline == 0:
        return False
    return (baseline - value) / abs(baseline) <= tolerance
