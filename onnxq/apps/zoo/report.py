"""The zoo report: ``zoo.json`` (everything), ``zoo.md`` (tables), and PNG plots (accuracy vs latency per model
and recipe, per-model bars, and workload coverage: the share of models whose metric stays within 1 % relative of
FP32, per recipe — the FP8 study's summary figure)."""

from __future__ import annotations

import json
import math
import os
import platform
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from onnxq.apps.zoo import recipes as zrecipes
from onnxq.apps.zoo.registry import REPO
from onnxq.core.atomic_write import set_default_mode, write_text_atomic

METRIC_LABEL = {"accuracy": "top-1 accuracy", "probe_acc": "sentiment-probe accuracy",
                "cosine": "cosine to FP32 (fidelity only)"}


def environment_meta(settings: Any, executor: str, jobs: int, seconds: float) -> dict:
    import onnxruntime

    import onnxq

    try:
        git = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True,
                             text=True, timeout=10).stdout.strip() or "?"
    except (OSError, subprocess.SubprocessError):
        git = "?"
    cpu = platform.processor() or platform.machine()
    try:
        cpu = next(ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                   if ln.startswith("model name"))
    except (OSError, StopIteration):
        pass
    argv = [Path(sys.argv[0]).name if sys.argv and sys.argv[0].endswith("onnxq") else "onnxq", *sys.argv[1:]]
    from onnxq.cpu import cpu_info, cpu_label

    info = cpu_info()
    return {"command": shlex.join(argv), "cpu": cpu, "cpu_label": cpu_label(info), "isa_level": info["isa_level"],
            "detected_isa_level": info["detected_isa_level"], "logical_cpus": os.cpu_count(), "onnxruntime":
            onnxruntime.__version__, "onnxq": onnxq.__version__, "git": git, "date": time.strftime("%Y-%m-%d %H:%M"),
            "executor": executor, "jobs": jobs, "eval_size": settings.eval_size, "threads": settings.threads,
            "bench_passes": settings.bench_passes, "bench_reps": settings.bench_reps,
            "recipes": [r.name for r in zrecipes.resolve(settings.recipes)], "seconds": round(seconds, 1),
            "loadavg_end": os.getloadavg()}


def coverage(models: list[dict], recipes: list[str], task_metric_only: bool = False) -> dict[str, dict]:
    """Per recipe: how many models (with an FP32 result) keep their primary metric within 1 % of FP32."""
    out = {}
    for r in recipes:
        n = ok = 0
        for m in models:
            if task_metric_only and m["task"] == "fidelity":
                continue
            row = next((x for x in m.get("rows", []) if x["recipe"] == r), None)
            base = next((x for x in m.get("rows", []) if x["recipe"] == zrecipes.BASELINE and "metrics" in x), None)
            if base is None or row is None:
                continue
            n += 1
            ok += bool(row.get("within_1pct"))
        out[r] = {"models": n, "within_1pct": ok, "share": ok / n if n else float("nan")}
    return out


def _f(v: Any, nd: int = 4) -> str:
    if v is None:
        return "—"
    if isinstance(v, float):
        return "NaN" if not math.isfinite(v) else f"{v:.{nd}f}"
    return str(v)


def markdown(models: list[dict], meta: dict, cov: dict, cov_task: dict, plots: list[str]) -> str:
    lines = ["# Model zoo: export, convert, evaluate, benchmark", "",
             "Produced by `onnxq zoo run` (see [docs/zoo.md](../zoo.md)); rerun to reproduce:", "", "```bash",
             meta["command"], "```", "",
             f"{meta.get('cpu_label', meta['cpu'])}; onnxruntime {meta['onnxruntime']}, onnxq "
             f"{meta['onnxq']} at `{meta['git']}`, {meta['date']}; executor {meta['executor']} ({meta['jobs']} "
             f"job(s)); evaluation set size `{meta['eval_size']}`; this run {meta['seconds']:.0f} s, step time "
             f"{sum(m.get('work_s', 0.0) for m in models):.0f} s (steps done by earlier runs of a resumed run "
             "included).", "",
             "**Metric**: the primary metric of each model — top-1 accuracy (classifiers), sentiment-probe accuracy "
             "(sentence models: a logistic regression trained on FP32 embeddings applied to the recipe's embeddings; "
             "Lee document-similarity r beside it), or, for models with random weights or synthetic inputs, "
             "**fidelity only**: mean output cosine to FP32 (never an accuracy claim). **Δ**: relative change vs FP32. "
             f"**Latency**: median ms over {meta['bench_passes']} interleaved passes x {meta['bench_reps']} runs, "
             f"{meta['threads']} thread(s), stock onnxruntime (CPU provider) and the onnxq EP on the same file in the "
             "same process; benchmarks run one model at a time.", ""]
    lines += ["## Workload coverage: models within 1 % of FP32", "",
              "| recipe | all models | task-metric models (accuracy / probe) |", "|---|---|---|"]
    for r in cov:
        a, t = cov[r], cov_task[r]
        fa = f"{a['within_1pct']}/{a['models']} ({a['share']:.0%})" if a["models"] else "—"
        ft = f"{t['within_1pct']}/{t['models']} ({t['share']:.0%})" if t["models"] else "—"
        lines.append(f"| {r} | {fa} | {ft} |")
    lines += [""] + [f"![{p}]({p})" for p in plots] + [""]
    lines += ["## Results", "",
              "| model | family | metric | recipe | value | Δ | cos to FP32 | MB | ORT ms | onnxq EP ms | EP vs ORT "
              "same file | EP vs ORT FP32 | EP claims |", "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    failures = []
    for m in models:
        if m["status"] == "failed":
            failures.append(f"- **{m['model']}**: {m.get('error')}")
            lines.append(f"| {m['model']} | {m['family']} | — | — | failed | | | | | | | | |")
            continue
        for r in m["rows"]:
            if r["status"] != "ok":
                failures.append(f"- **{m['model']}** / {r['recipe']}: {r.get('error')}")
                lines.append(f"| {m['model']} | {m['family']} | — | {r['recipe']} | failed | | | | | | | | |")
                continue
            met = r.get("metrics", {})
            extra = f" (Lee r {_f(met['lee_pearson'], 3)})" if "lee_pearson" in met else ""
            rel = r.get("primary_rel")
            claims = r.get("claimed")
            claim_text = f"{claims['onnxq']}/{claims['total']}" if claims else "—"
            lines.append(
                f"| {m['model']} | {m['family']} | {METRIC_LABEL.get(r.get('primary_name', ''), '—')} | "
                f"{r['recipe']} | {_f(r.get('primary'))}{extra} | "
                f"{'—' if rel is None or not math.isfinite(rel) else f'{rel:+.2%}'}"
                f"{'' if r.get('within_1pct', True) else ' ❌'} | {_f(met.get('fidelity_cos'), 5)} | "
                f"{r['bytes'] / 1e6:.1f} | {_f(r.get('ort_ms'), 2)} | {_f(r.get('onnxq_ms'), 2)} | "
                f"{_f(r.get('speedup_vs_ort_same_file'), 2)}{'×' if 'ort_ms' in r else ''} | "
                f"{_f(r.get('speedup_vs_ort_fp32'), 2)}{'×' if 'ort_ms' in r else ''} | "
                f"{claim_text} |")
        if m.get("bench_error"):
            failures.append(f"- **{m['model']}** benchmark: {m['bench_error']}")
    lines += ["", "## Failures", ""] + (failures or ["none"]) + [""]
    lines += ["## Models", "", "| model | family | task | description | steps done / skipped / failed "
              "(this run) | step s |",
              "|---|---|---|---|---|---|"]
    for m in models:
        s = m.get("steps", {})
        lines.append(f"| {m['model']} | {m['family']} | {m['task']} | {m['description']} | {s.get('done', 0)} / "
                     f"{s.get('skipped', 0)} / {s.get('failed', 0)} | {m.get('work_s', 0)} |")
    return "\n".join(lines) + "\n"


def _plots(models: list[dict], cov: dict, out: Path) -> list[str]:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        import matplotlib.ticker
    except ImportError:
        return []
    ok = [m for m in models if m["status"] != "failed" and any("metrics" in r for r in m["rows"])]
    recipes = list(cov)
    colors = {r: plt.get_cmap("tab10")(i % 10) for i, r in enumerate(recipes)}
    written = []

    def save(fig: Any, name: str) -> None:
        tmp = out / f".{name}.{os.getpid()}.tmp.png"
        fig.savefig(tmp, dpi=80)
        plt.close(fig)
        set_default_mode(tmp)
        os.replace(tmp, out / name)
        written.append(name)

    if any("onnxq_ms" in r for m in ok for r in m["rows"]):  # accuracy vs latency, one panel per model
        cols = min(3, len(ok))
        rows = math.ceil(len(ok) / cols)
        fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.2 * rows), squeeze=False)
        for ax, m in zip(axes.flat, ok, strict=False):
            for r in m["rows"]:
                if "metrics" not in r:
                    continue
                for key, marker, fill in (("onnxq_ms", "o", True), ("ort_ms", "s", False)):
                    if key in r:
                        ax.scatter(r[key], r["primary"], marker=marker, s=40, color=colors[r["recipe"]],
                                   facecolors=colors[r["recipe"]] if fill else "none",
                                   label=r["recipe"] if fill else None)
            ax.set_title(f"{m['model']} ({m['family']})", fontsize=9)
            ax.set_xscale("log")
            ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
            ax.xaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
            ax.set_xlabel("ms (filled: onnxq EP, hollow: stock ORT)", fontsize=7)
            ax.set_ylabel(METRIC_LABEL.get(m["rows"][0].get("primary_name", ""), "metric"), fontsize=7)
            ax.tick_params(labelsize=7)
        for ax in list(axes.flat)[len(ok):]:
            ax.axis("off")
        handles, labels = axes.flat[0].get_legend_handles_labels()
        fig.legend(handles, labels, loc="lower center", ncol=max(1, min(len(labels), 6)), fontsize=8)
        fig.tight_layout(rect=(0, 0.06, 1, 1))
        save(fig, "zoo_accuracy_latency.png")

    if ok:
        fig, (a1, a2) = plt.subplots(2, 1, figsize=(max(6, 1.3 * len(ok) * len(recipes) / 3), 6.5))
        width = 0.8 / max(1, len(recipes))
        for j, rname in enumerate(recipes):
            rel, speed = [], []
            for m in ok:
                r = next((x for x in m["rows"] if x["recipe"] == rname), {})
                rel.append(100 * r.get("primary_rel", float("nan")))
                speed.append(r.get("speedup_vs_ort_fp32", float("nan")))
            xs = [i + (j - (len(recipes) - 1) / 2) * width for i in range(len(ok))]
            a1.bar(xs, rel, width, color=colors[rname], label=rname)
            a2.bar(xs, speed, width, color=colors[rname], label=rname)
        for ax in (a1, a2):
            ax.set_xticks(range(len(ok)))
            ax.set_xticklabels([m["model"] for m in ok], fontsize=7, rotation=20)
            ax.tick_params(labelsize=7)
        a1.axhline(-1, color="k", lw=0.6, ls="--")
        a1.set_ylabel("primary metric Δ vs FP32 (%)", fontsize=8)
        a2.axhline(1, color="k", lw=0.6, ls="--")
        a2.set_ylabel("onnxq EP speed-up vs stock ORT FP32", fontsize=8)
        a1.legend(fontsize=7, ncol=min(len(recipes), 6))
        fig.tight_layout()
        save(fig, "zoo_bars.png")

    fig, ax = plt.subplots(figsize=(max(4.5, 0.9 * len(recipes)), 3.2))
    shares = [100 * (cov[r]["share"] if math.isfinite(cov[r]["share"]) else 0) for r in recipes]
    ax.bar(recipes, shares, color=[colors[r] for r in recipes])
    for i, r in enumerate(recipes):
        ax.text(i, shares[i] + 1, f"{cov[r]['within_1pct']}/{cov[r]['models']}", ha="center", fontsize=8)
    ax.set_ylim(0, 110)
    ax.set_ylabel("models within 1% of FP32 (%)", fontsize=8)
    ax.set_title("workload coverage per recipe", fontsize=9)
    ax.tick_params(labelsize=7)
    plt.setp(ax.get_xticklabels(), rotation=20)
    fig.tight_layout()
    save(fig, "zoo_coverage.png")
    return written


def write(models: list[dict], meta: dict, out: Path) -> dict[str, str]:
    recipes = meta["recipes"]
    cov, cov_task = coverage(models, recipes), coverage(models, recipes, task_metric_only=True)
    try:
        plots = _plots(models, cov, out)
    except Exception as e:  # a plotting problem must not lose the tables
        plots = []
        meta["plot_error"] = f"{type(e).__name__}: {e}"
    payload = {"meta": meta, "coverage": cov, "coverage_task_metric": cov_task, "models": models}
    paths = {"json": str(write_text_atomic(out / "zoo.json", json.dumps(payload, indent=1, default=_json) + "\n"))}
    paths["md"] = str(write_text_atomic(out / "zoo.md", markdown(models, meta, cov, cov_task, plots)))
    for p in plots:
        paths[p] = str(out / p)
    return paths


def _json(v: Any) -> Any:
    try:
        return float(v)
    except (TypeError, ValueError):
        return str(v)
