"""The zoo pipeline: export -> convert -> evaluate -> benchmark, per model, with a per-step manifest.

Each finished step writes ``OUT/manifest/<model>/<step>.json`` (atomically) holding its parameters' key and its
result; a rerun with the same key skips the step (``--force`` reruns everything). Exports are cached under
``--cache`` (default ~/.cache/onnxq/zoo) and reused by every output directory. A failing step is recorded and
the model's other recipes go on; a failing model never stops the others.

Phase 1 (export, convert, evaluate) runs models in parallel on the executor; phase 2 (benchmark) runs one model
at a time, so that sibling jobs do not share the cores a latency is measured on. Within a model the benchmark
times stock onnxruntime and the onnxq EP on every recipe's file in the same process, in interleaved passes.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import statistics
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from onnxq.apps.zoo import recipes as zrecipes
from onnxq.apps.zoo import registry, tasks
from onnxq.apps.zoo.executors import Executor, make_executor
from onnxq.core.atomic_write import write_text_atomic
from onnxq.core.config import RECIPES as QRECIPES
from onnxq.core.errors import OnnxqError

DEFAULT_CACHE = Path.home() / ".cache" / "onnxq" / "zoo"


@dataclass
class ZooSettings:
    out: Path
    cache: Path = DEFAULT_CACHE
    recipes: tuple[str, ...] = zrecipes.DEFAULT_RECIPES
    eval_size: str = "small"  # small | full
    bench_passes: int = 3
    bench_reps: int = 3
    threads: int = 1  # per session (evaluation and benchmark)
    benchmark: bool = True
    force: bool = False
    progress: bool = True

    def __post_init__(self) -> None:
        self.out, self.cache = Path(self.out), Path(self.cache)
        self.recipes = tuple(self.recipes)
        if self.eval_size not in ("small", "full"):
            raise OnnxqError(f"eval size must be small or full, got '{self.eval_size}'")
        if self.bench_passes < 1 or self.bench_reps < 1 or self.threads < 1:
            raise OnnxqError("--bench-passes, --bench-reps and --threads must be >= 1")


def _log(settings: ZooSettings, model: str, msg: str) -> None:
    if settings.progress:
        print(f"[{model}] {msg}", file=sys.stderr, flush=True)


def _error(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {(text[0] if text else '')[:300]}"


class Manifest:
    """One JSON file per finished step: ``{"key": ..., "result": ..., "seconds": ...}``."""

    def __init__(self, root: Path, model: str) -> None:
        self.dir = root / "manifest" / model
        self.dir.mkdir(parents=True, exist_ok=True)

    @staticmethod
    def key(**params: Any) -> str:
        return hashlib.sha256(json.dumps(params, sort_keys=True, default=str).encode()).hexdigest()[:16]

    def get(self, step: str, key: str) -> dict | None:
        p = self.dir / f"{step}.json"
        try:
            rec = json.loads(p.read_text())
        except (OSError, ValueError):
            return None
        return rec if rec.get("key") == key else None

    def put(self, step: str, key: str, result: dict, seconds: float) -> None:
        write_text_atomic(self.dir / f"{step}.json", json.dumps(
            {"step": step, "key": key, "seconds": round(seconds, 3), "result": result}, indent=1, default=float) + "\n")


def _fingerprint(path: Path) -> str:
    st = path.stat()
    return f"{st.st_size}:{st.st_mtime_ns}"


class _Steps:
    """Runs (or skips) steps for one model and counts what happened."""

    def __init__(self, entry: registry.ModelEntry, settings: ZooSettings) -> None:
        self.entry, self.settings = entry, settings
        self.manifest = Manifest(settings.out, entry.name)
        self.counts = {"done": 0, "skipped": 0, "failed": 0}
        self.work_s = 0.0  # step time, this run's or (for skipped steps) the run's that did them

    def run(self, step: str, params: dict, fn: Any, check: Any = None) -> tuple[dict | None, str | None]:
        key = Manifest.key(step=step, **params)
        rec = None if self.settings.force else self.manifest.get(step, key)
        if rec is not None and (check is None or check(rec["result"])):
            self.counts["skipped"] += 1
            self.work_s += float(rec.get("seconds", 0.0))
            _log(self.settings, self.entry.name, f"{step}: skipped (done before)")
            return rec["result"], None
        t0 = time.perf_counter()
        try:
            result = fn()
        except Exception as e:  # recorded per step: one recipe's failure does not stop the others
            self.counts["failed"] += 1
            _log(self.settings, self.entry.name, f"{step}: FAILED {_error(e)}")
            return None, _error(e)
        dt = time.perf_counter() - t0
        self.work_s += dt
        self.manifest.put(step, key, result, dt)
        self.counts["done"] += 1
        _log(self.settings, self.entry.name, f"{step}: done in {dt:.1f}s")
        return result, None


def _session(path: Path, threads: int, onnxq: bool) -> Any:
    from onnxq.apps.bench import bench_session

    return bench_session(path, threads, onnxq)


def _bytes(path: Path) -> int:
    data = path.with_name(path.name + ".data")
    return path.stat().st_size + (data.stat().st_size if data.exists() else 0)


def _save_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp.npz")
    np.savez(tmp, **arrays)
    os.replace(tmp, path)


def prepare_model(entry: registry.ModelEntry, settings: ZooSettings) -> dict:
    """Phase 1 for one model: export, convert every recipe, evaluate every recipe. Never raises."""
    t_start = time.perf_counter()
    result: dict[str, Any] = {"model": entry.name, "family": entry.family, "task": entry.task,
                              "description": entry.description, "status": "ok", "rows": []}
    steps = _Steps(entry, settings)
    result["steps"] = steps.counts
    try:
        if entry.missing():
            raise OnnxqError(entry.install_hint())
        recipes = zrecipes.resolve(settings.recipes)
        export_dir = settings.cache / "exports"
        export_dir.mkdir(parents=True, exist_ok=True)
        exp, err = steps.run("export", {"model": entry.name},
                             lambda: {"path": str(entry.export(export_dir))},
                             check=lambda r: Path(r["path"]).is_file())
        if exp is None:
            raise OnnxqError(f"export failed: {err}")
        fp32 = Path(exp["path"])
        result["fp32_path"], result["fp32_bytes"] = str(fp32), _bytes(fp32)
        model_dir = settings.out / "models" / entry.name
        model_dir.mkdir(parents=True, exist_ok=True)
        fp = _fingerprint(fp32)
        data_cache: dict[str, registry.TaskData] = {}

        def data() -> registry.TaskData:
            if "d" not in data_cache:
                data_cache["d"] = entry.data(settings.eval_size)
            return data_cache["d"]

        import onnxq

        base = {"fp32": fp, "onnxq": onnxq.__version__, "eval_size": settings.eval_size}
        ref_path = model_dir / "reference.npz"
        rows: list[dict] = []
        for r in recipes:
            row: dict[str, Any] = {"recipe": r.name, "status": "ok"}
            rows.append(row)
            path = fp32 if r.name == zrecipes.BASELINE else model_dir / f"{r.name}.onnx"

            def convert(r: zrecipes.ZooRecipe = r, path: Path = path) -> dict:
                info = zrecipes.convert(r, fp32, path, data().calibration)
                return {**info, "path": str(path), "bytes": _bytes(path)}

            if r.name != zrecipes.BASELINE:
                # the quantizer recipe's own settings are part of the key: a changed recipe is converted again
                qcfg = QRECIPES.get(r.quant_recipe) if r.quant_recipe else None
                conv, err = steps.run(f"convert.{r.name}", {**base, "recipe": dataclasses.asdict(r), "quant": qcfg},
                                      convert,
                                      check=lambda res: Path(res["path"]).is_file())
                if conv is None:
                    row.update(status="failed", error=f"convert: {err}")
                    continue
                row["convert"] = {k: v for k, v in conv.items() if k not in ("path",)}
            row["path"], row["bytes"] = str(path), _bytes(path)

            def evaluate(r: zrecipes.ZooRecipe = r, path: Path = path) -> dict:
                d = data()
                sess = _session(path, settings.threads, onnxq=True)
                got = tasks.outputs(sess, d, entry.task)
                if r.name == zrecipes.BASELINE:
                    _save_npz(ref_path, got)
                    ref = got
                else:
                    if not ref_path.is_file():
                        raise OnnxqError("no FP32 reference outputs (the fp32 evaluation failed)")
                    with np.load(ref_path) as z:
                        ref = {k: z[k] for k in z.files}
                m = tasks.metrics(entry.task, got, ref, d)
                return {"metrics": m, "synthetic_data": d.synthetic}

            key = {**base, "recipe": dataclasses.asdict(r), "file": _fingerprint(path)}
            ev, err = steps.run(f"evaluate.{r.name}", key, evaluate,
                                check=(lambda res: ref_path.is_file()) if r.name == zrecipes.BASELINE else None)
            if ev is None:
                row.update(status="failed", error=f"evaluate: {err}")
                continue
            row["metrics"] = ev["metrics"]
            result["synthetic_data"] = ev["synthetic_data"]
        _judge(entry.task, rows)
        result["rows"] = rows
        if any(r["status"] != "ok" for r in rows):
            result["status"] = "partial"
    except Exception as e:  # the model failed as a whole (export, missing package): recorded, others go on
        result["status"], result["error"] = "failed", _error(e)
        result["trace"] = traceback.format_exc(limit=4).splitlines()[-4:]
        _log(settings, entry.name, f"FAILED {result['error']}")
    result["seconds"] = round(time.perf_counter() - t_start, 1)
    result["work_s"] = round(steps.work_s, 1)
    return result


def _judge(task: str, rows: list[dict]) -> None:
    primary = tasks.PRIMARY[task]
    base = next((r for r in rows if r["recipe"] == zrecipes.BASELINE and "metrics" in r), None)
    for r in rows:
        if "metrics" not in r:
            continue
        v = r["metrics"].get(primary, float("nan"))
        r["primary"], r["primary_name"] = v, primary
        if base is not None:
            b = base["metrics"][primary]
            r["primary_rel"] = (v - b) / abs(b) if b else float("nan")
            r["within_1pct"] = tasks.within(task, v, b)


def benchmark_model(prepared: dict, settings: ZooSettings) -> dict:
    """Phase 2 for one model: latency of stock onnxruntime and the onnxq EP on every recipe's file (same process,
    interleaved passes, same feed and threads). Never raises; returns ``{"model", "bench" | "bench_error"}``."""
    name = prepared["model"]
    out: dict[str, Any] = {"model": name}
    if prepared.get("status") == "failed":
        return out
    entry = registry.MODELS.get(name) or next((e for e in _file_entries(prepared) if e.name == name), None)
    if entry is None:
        out["bench_error"] = "unknown model"
        return out
    steps = _Steps(entry, settings)
    files = {r["recipe"]: r["path"] for r in prepared["rows"] if r["status"] == "ok" and "path" in r}
    key = {"files": {k: _fingerprint(Path(v)) for k, v in files.items()}, "passes": settings.bench_passes,
           "reps": settings.bench_reps, "threads": settings.threads}
    res, err = steps.run("benchmark", key, lambda: _bench(entry, files, settings))
    out["steps"] = steps.counts
    out["work_s"] = round(steps.work_s, 1)
    if res is None:
        out["bench_error"] = err
    else:
        out["bench"] = res
    return out


def _file_entries(prepared: dict) -> list[registry.ModelEntry]:
    p = prepared.get("fp32_path")
    return [registry.file_entry(p)] if p else []


def _bench(entry: registry.ModelEntry, files: dict[str, str], settings: ZooSettings) -> dict:
    from onnxq import ep

    feed = entry.data(settings.eval_size).bench
    sessions: dict[str, Any] = {}
    claims: dict[str, dict[str, int]] = {}
    for recipe, path in files.items():
        sessions[f"ort|{recipe}"] = _session(Path(path), settings.threads, onnxq=False)
        s = _session(Path(path), settings.threads, onnxq=True)
        sessions[f"onnxq|{recipe}"] = s
        assigned = ep.assigned_nodes(s)
        claims[recipe] = {"onnxq": len(assigned.get(ep.EP_NAME, [])), "total": sum(len(v) for v in assigned.values())}
    for s in sessions.values():  # warm-up
        s.run(None, feed)
    names = list(sessions)
    per_pass: dict[str, list[float]] = {k: [] for k in names}
    for p in range(settings.bench_passes):
        for k in names[p % len(names):] + names[: p % len(names)]:
            samples = []
            for _ in range(settings.bench_reps):
                t0 = time.perf_counter()
                sessions[k].run(None, feed)
                samples.append(time.perf_counter() - t0)
            per_pass[k].append(statistics.median(samples))
    res: dict[str, Any] = {"feed": {k: list(v.shape) for k, v in feed.items()}, "threads": settings.threads,
                           "passes": settings.bench_passes, "reps": settings.bench_reps,
                           "loadavg": os.getloadavg(), "recipes": {}}
    for recipe in files:
        ort_ms = statistics.median(per_pass[f"ort|{recipe}"]) * 1e3
        onnxq_ms = statistics.median(per_pass[f"onnxq|{recipe}"]) * 1e3
        res["recipes"][recipe] = {"ort_ms": ort_ms, "onnxq_ms": onnxq_ms,
                                  "ort_min_ms": min(per_pass[f"ort|{recipe}"]) * 1e3,
                                  "onnxq_min_ms": min(per_pass[f"onnxq|{recipe}"]) * 1e3, "claimed": claims[recipe]}
    return res


@dataclass
class ZooResult:
    meta: dict
    models: list[dict] = field(default_factory=list)
    paths: dict[str, str] = field(default_factory=dict)


def _prepare_task(args: tuple[registry.ModelEntry, ZooSettings]) -> dict:
    return prepare_model(*args)


def _bench_task(args: tuple[dict, ZooSettings]) -> dict:
    return benchmark_model(*args)


def run_zoo(models: list[str] | None, settings: ZooSettings, executor: Executor | str = "serial",
            jobs: int = 1) -> ZooResult:
    """Run the zoo and write the report (``OUT/zoo.md``, ``zoo.json``, PNGs). ``models``: names, groups or paths."""
    from onnxq.apps.zoo import report

    entries = registry.resolve(models)
    zrecipes.resolve(settings.recipes)  # unknown recipes: one error before any work
    if settings.out.exists() and not settings.out.is_dir():
        raise OnnxqError(f"{settings.out}: is a file; --out takes a directory")
    if not settings.out.parent.is_dir():
        raise OnnxqError(f"{settings.out}: directory {settings.out.parent} does not exist")
    settings.out.mkdir(exist_ok=True)
    ex = make_executor(executor, jobs) if isinstance(executor, str) else executor
    t0 = time.time()
    prepared: dict[str, dict] = {}
    for _, item, res in _progress(ex.run(_prepare_task, [(e, settings) for e in entries]), len(entries),
                                  "zoo: export/convert/evaluate", settings):
        name = item[0].name
        prepared[name] = res if isinstance(res, dict) else {
            "model": name, "family": item[0].family, "task": item[0].task, "description": item[0].description,
            "status": "failed", "error": f"worker: {_error(res)}", "rows": []}
    if settings.benchmark:
        todo = [prepared[e.name] for e in entries if prepared[e.name]["status"] != "failed"]
        for _, item, res in _progress(ex.run(_bench_task, [(p, settings) for p in todo], parallel=False), len(todo),
                                      "zoo: benchmark", settings):
            p = prepared[item[0]["model"]]
            if isinstance(res, dict):
                _merge_bench(p, res)
            else:
                p["bench_error"] = f"worker: {_error(res)}"
    ordered = [prepared[e.name] for e in entries]
    meta = report.environment_meta(settings, ex.name, jobs, time.time() - t0)
    result = ZooResult(meta=meta, models=ordered)
    result.paths = report.write(result.models, meta, settings.out)
    return result


def _merge_bench(p: dict, res: dict) -> None:
    if "bench_error" in res:
        p["bench_error"] = res["bench_error"]
    p["work_s"] = round(p.get("work_s", 0.0) + res.get("work_s", 0.0), 1)
    for k, v in res.get("steps", {}).items():
        p.setdefault("steps", {}).setdefault(k, 0)
        p["steps"][k] += v
    bench = res.get("bench")
    if not bench:
        return
    p["bench"] = {k: v for k, v in bench.items() if k != "recipes"}
    fp32 = bench["recipes"].get(zrecipes.BASELINE)
    for row in p["rows"]:
        b = bench["recipes"].get(row["recipe"])
        if b is None:
            continue
        row.update({k: b[k] for k in ("ort_ms", "onnxq_ms", "ort_min_ms", "onnxq_min_ms", "claimed")})
        row["speedup_vs_ort_same_file"] = b["ort_ms"] / b["onnxq_ms"]
        if fp32:
            row["speedup_vs_ort_fp32"] = fp32["ort_ms"] / b["onnxq_ms"]


def _progress(it: Any, total: int, desc: str, settings: ZooSettings) -> Any:
    if not settings.progress or total == 0:
        yield from it
        return
    from tqdm import tqdm

    with tqdm(total=total, desc=desc, unit="model", file=sys.stderr, dynamic_ncols=True) as bar:
        for idx, item, res in it:
            name = item[0].name if isinstance(item[0], registry.ModelEntry) else item[0]["model"]
            status = res.get("status", "ok") if isinstance(res, dict) else "failed"
            bar.set_postfix_str(f"{name}: {status}")
            bar.update(1)
            yield idx, item, res
