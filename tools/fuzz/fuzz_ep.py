"""Fuzz the onnxq EP's session creation and runs with mutated quantized and block-sparse models.

    python tools/fuzz/fuzz_ep.py --seconds 60                # atheris (libFuzzer) if usable, else --plain
    python tools/fuzz/fuzz_ep.py --plain --runs 2000 --seed 1
    python tools/fuzz/fuzz_ep.py --replay crash-1234.onnx    # re-run inputs once each, print their outcome

Inputs are ONNX models; the seed corpus is tools/fuzz/corpus/ (written by tools/fuzz/seeds.py). Each input is
mutated by tools/fuzz/mutate.py (structure-aware: it edits the parsed model; in atheris mode one mutation in ten is
libFuzzer's own byte-level one, to reach the protobuf parser too) and checked by tools/fuzz/harness.py: onnxq EP
session + run, compared with stock onnxruntime. A crash, a sanitizer report, or a ``Finding`` stops the run and
leaves the input in --artifacts (``crash-*``, ``finding-*.onnx``).

Two engines:
* atheris (coverage-guided libFuzzer). The EP's C++ is not coverage-instrumented (that needs clang's
  -fsanitize=fuzzer-no-link; the project builds with gcc), so novelty is fed back from behaviour: each distinct
  (outcome, claimed op types, error message shape) lights an edge in an instrumented bucket function, and libFuzzer
  keeps inputs that make the EP do something new. Atheris' coverage does not work with a preloaded gcc libasan,
  so under AddressSanitizer the plain engine is used.
* plain: seeded random mutation chains from the seeds; deterministic for a given --seed.

Runs with a time limit are supervised: the engine runs in a child process, and if it dies the parent reads the
report. One kind of death is not the EP's fault and not a finding: AddressSanitizer aborts on any failed throwing
``operator new`` (it cannot return null or throw), and onnxruntime itself tries absurd allocations for some hostile
shapes (e.g. a ConstantOfShape of 2^37 elements in a function body); when no frame of the report is in the onnxq
EP, the input is kept as ``ort-oom-*.onnx`` and the engine is restarted for the remaining time. The other: stock
onnxruntime itself crashing on the input — replayed without the EP in a fresh process, it dies too — kept as
``ort-crash-*.onnx``, and the engine is restarted. Anything else ends the run with exit status 1.
"""

from __future__ import annotations

import argparse
import collections
import hashlib
import os
import random
import re
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import harness  # noqa: E402
import mutate  # noqa: E402

CORPUS = HERE / "corpus"
_BUCKETS = 512
_REPORT_EVERY_S = 30.0


def _asan_loaded() -> bool:
    try:
        return "libasan" in Path("/proc/self/maps").read_text()
    except OSError:
        return False


def corpus_files(dirs: list[Path]) -> list[Path]:
    return sorted(p for d in dirs for p in d.glob("*.onnx"))


class Stats:
    def __init__(self) -> None:
        self.counts: collections.Counter[str] = collections.Counter()
        self.t0 = time.perf_counter()
        self.last = self.t0

    def add(self, label: str) -> None:
        self.counts[label] += 1
        now = time.perf_counter()
        if now - self.last >= _REPORT_EVERY_S:
            self.last = now
            self.report()

    def report(self) -> None:
        total = sum(self.counts.values())
        secs = time.perf_counter() - self.t0
        print(f"fuzz: {total} inputs in {secs:.1f} s ({total / max(secs, 1e-9):.1f}/s); outcomes: "
              + ", ".join(f"{k} {v}" for k, v in self.counts.most_common()), file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------------------- atheris engine


def _make_bucket(name: str):  # type: ignore[no-untyped-def]
    body = "".join(f"    if h == {i}:\n        return {i}\n" for i in range(_BUCKETS))
    ns: dict[str, object] = {}
    exec(compile(f"def {name}(h):\n{body}    return -1\n", f"<fuzz-{name}>", "exec"), ns)  # noqa: S102
    return ns[name]


def _h(text: str) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=4).digest(), "little") % _BUCKETS


def run_atheris(args: argparse.Namespace) -> int:
    import atheris

    buckets = [atheris.instrument_func(_make_bucket(f"bucket_{k}")) for k in ("signature", "claimed", "label")]
    stats = Stats()

    def one_input(data: bytes) -> None:
        out = harness.check(data, strict=args.strict)
        stats.add(out.label)
        buckets[0](_h(out.signature()))
        buckets[1](_h(",".join(out.claimed)))
        buckets[2](_h(out.label))

    def custom_mutator(data: bytes, max_size: int, seed: int) -> bytes:
        if seed % 10 == 0:
            return atheris.Mutate(data, max_size)
        out = mutate.mutate(data, seed)
        if out is None or len(out) > max_size:
            return atheris.Mutate(data, max_size)
        return out

    work = Path(args.work or Path(args.artifacts) / "corpus")
    work.mkdir(parents=True, exist_ok=True)
    argv = [sys.argv[0], str(work), *[str(d) for d in args.corpus],
            f"-artifact_prefix={Path(args.artifacts).resolve()}/", "-max_len=262144", "-timeout=60",
            "-rss_limit_mb=8192", f"-seed={args.seed}", "-print_final_stats=1"]
    if args.seconds:
        argv.append(f"-max_total_time={max(1, int(args.seconds))}")
    if args.runs:
        argv.append(f"-runs={args.runs}")
    atheris.Setup(argv, one_input, custom_mutator=custom_mutator)
    atheris.Fuzz()
    return 0


# ------------------------------------------------------------------------------------------- plain engine


def run_plain(args: argparse.Namespace) -> int:
    seeds = [p.read_bytes() for p in corpus_files(args.corpus)]
    if not seeds:
        print(f"no .onnx seeds in {args.corpus}", file=sys.stderr)
        return 2
    art = Path(args.artifacts)
    art.mkdir(parents=True, exist_ok=True)
    rng = random.Random(args.seed)
    stats = Stats()
    n = 0
    while True:
        if args.runs and n >= args.runs:
            break
        if args.seconds and time.perf_counter() - stats.t0 >= args.seconds:
            break
        data = seeds[rng.randrange(len(seeds))]
        for _ in range(rng.choice([1, 1, 2, 3])):  # short mutation chains
            data = mutate.mutate(data, rng.getrandbits(32)) or data
        (art / "current.onnx").write_bytes(data)  # left behind if the process dies on this input
        try:
            out = harness.check(data, strict=args.strict)
        except Exception as e:
            name = art / f"finding-{hashlib.sha1(data).hexdigest()[:16]}.onnx"
            name.write_bytes(data)
            print(f"FINDING after {n} inputs: {type(e).__name__}: {e}\n  input saved as {name}", file=sys.stderr)
            stats.report()
            return 1
        stats.add(out.label)
        n += 1
    (art / "current.onnx").unlink(missing_ok=True)
    stats.report()
    return 0


# ------------------------------------------------------------------------------------------- supervisor

_OOM = re.compile(r"AddressSanitizer: (allocator is out of memory|requested allocation size|out of memory|"
                  r"allocation-size-too-big)")
_TOTALS = re.compile(r"fuzz: (\d+) inputs in ([\d.]+) s")


def _is_onnxruntime_oom(report: str) -> bool:
    """An ASan out-of-memory abort raised entirely outside the onnxq EP (see the module docstring)."""
    m = _OOM.search(report)
    if not m:
        return False
    frames = report[m.start():].split("SUMMARY:", 1)[0]
    return "libonnxq_ep" not in frames and "onnxq::" not in frames


_CPU_ONLY = "import sys; sys.path.insert(0, sys.argv[2]); import harness; " \
            "harness.run_onnxruntime_alone(open(sys.argv[1], 'rb').read())"


def _onnxruntime_alone_crashes(path: Path) -> bool:
    """Whether stock onnxruntime, without the onnxq EP, dies on this input the way the harness drives it (session,
    seeded feeds, one run) in a fresh process: then the crash is onnxruntime's, not a finding about the EP."""
    # the replay is expected to die when onnxruntime is at fault: a sanitizer report it writes into a report
    # directory (tools/run_sanitized_tests.sh's log_path) must not count as a finding, so it goes to stderr
    env = dict(os.environ)
    for var in ("ASAN_OPTIONS", "UBSAN_OPTIONS"):
        if var in env:
            env[var] = ":".join(o for o in env[var].split(":") if not o.startswith("log_path="))
    try:
        proc = subprocess.run([sys.executable, "-c", _CPU_ONLY, str(path), str(Path(__file__).resolve().parent)],
                              capture_output=True, timeout=120, env=env)
    except subprocess.TimeoutExpired:
        return False
    return proc.returncode < 0 or proc.returncode in (134, 139)


def supervise(args: argparse.Namespace, argv: list[str]) -> int:
    art = Path(args.artifacts)
    art.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + args.seconds
    total_inputs, total_secs, restarts, ooms, killed, ort_crashes = 0, 0.0, 0, 0, 0, 0
    rc = 0
    while True:
        left = deadline - time.monotonic()
        if left < 2:
            break
        child = [sys.executable, str(Path(__file__).resolve()), *argv, "--worker", "--seconds", f"{left:.0f}",
                 "--seed", str(args.seed + restarts * 1000003)]
        log = art / f"engine-{restarts}.log"
        before = set(art.glob("crash-*")) | set(art.glob("finding-*"))
        started = time.monotonic()
        with open(log, "w") as f:
            proc = subprocess.run(child, stdout=f, stderr=subprocess.STDOUT)
        text = log.read_text(errors="replace")
        units = re.findall(r"stat::number_of_executed_units:\s*(\d+)", text)  # libFuzzer's final stats
        totals = _TOTALS.findall(text)
        if units:
            total_inputs += int(units[-1])
            total_secs += time.monotonic() - started
        elif totals:
            total_inputs += int(totals[-1][0])
            total_secs += float(totals[-1][1])
        if proc.returncode == 0:
            print(_tail(text, 3), file=sys.stderr)
            break
        crash = (sorted(set(art.glob("crash-*")) - before) or sorted(set(art.glob("finding-*")) - before)
                 or [art / "current.onnx"])
        data = crash[0].read_bytes() if crash[0].exists() else b""
        if data and (proc.returncode == -9 or "rss limit exhausted" in text):
            # killed for memory (the kernel's OOM killer, or ASan's hard_rss_limit_mb): a tiny model can declare
            # dims whose dense form is many GiB, and stock onnxruntime materializes them too; kept for triage
            kept = art / f"killed-{hashlib.sha1(data).hexdigest()[:16]}.onnx"
            kept.write_bytes(data)
            print(f"fuzz: the engine was killed for memory on {kept}; restarting", file=sys.stderr)
            killed += 1
            restarts += 1
            continue
        if _is_onnxruntime_oom(text) and data:
            ooms += 1
            kept = art / f"ort-oom-{hashlib.sha1(data).hexdigest()[:16]}.onnx"
            kept.write_bytes(data)
            for c in crash:
                c.unlink(missing_ok=True)
            print(f"fuzz: onnxruntime's own allocation failed under ASan (not the EP): input kept as {kept}; "
                  "restarting", file=sys.stderr)
            restarts += 1
            continue
        if data and _onnxruntime_alone_crashes(crash[0]):
            # stock onnxruntime dies on this input without the EP too (e.g. LayerNormalization with an empty
            # optional input in onnxruntime 1.32): not the EP's; kept for triage, and fuzzing goes on
            ort_crashes += 1
            kept = art / f"ort-crash-{hashlib.sha1(data).hexdigest()[:16]}.onnx"
            kept.write_bytes(data)
            for c in crash:
                c.unlink(missing_ok=True)
            print(f"fuzz: stock onnxruntime crashes on this input without the EP: kept as {kept}; restarting",
                  file=sys.stderr)
            restarts += 1
            continue
        print(_tail(text, 60), file=sys.stderr)
        print(f"fuzz: the engine died (exit {proc.returncode}); input: {crash[0]}; full log: {log}", file=sys.stderr)
        rc = 1
        break
    if total_secs:
        print(f"fuzz: total {total_inputs} inputs in {total_secs:.0f} s ({total_inputs / total_secs:.1f}/s), "
              f"restarts: {ooms} after onnxruntime allocation failures under ASan, {killed} after a kill for memory, "
              f"{ort_crashes} after crashes of stock onnxruntime itself",
              file=sys.stderr)
    return rc


def _tail(text: str, n: int) -> str:
    lines = [ln for ln in text.splitlines() if not ln.startswith(("EP Error", "Falling back"))]
    return "\n".join(lines[-n:])


def replay(paths: list[str], strict: bool) -> int:
    rc = 0
    for p in paths:
        try:
            out = harness.check(Path(p).read_bytes(), strict=strict)
            print(f"{p}: {out.label} claimed={','.join(out.claimed) or '-'} ep_error={out.ep_error!r} "
                  f"cpu_error={out.cpu_error!r}")
        except harness.Finding as e:
            print(f"{p}: FINDING {e}")
            rc = 1
    return rc


def main(argv: list[str] | None = None) -> int:
    raw = list(sys.argv[1:] if argv is None else argv)
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=0, help="stop after this long (supervised; 0: no limit)")
    ap.add_argument("--runs", type=int, default=0, help="stop after this many inputs (one engine, unsupervised)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--corpus", type=Path, action="append", help=f"seed directories (default {CORPUS})")
    ap.add_argument("--artifacts", default="fuzz-artifacts", help="where crashes / findings / logs are written")
    ap.add_argument("--work", help="libFuzzer's working corpus (default ARTIFACTS/corpus; never the seed dir)")
    ap.add_argument("--plain", action="store_true", help="the plain engine (no atheris)")
    ap.add_argument("--strict", action="store_true",
                    help="also flag models onnxruntime accepts but the EP fails (session or run)")
    ap.add_argument("--replay", nargs="+", metavar="MODEL", help="check these files once each and exit")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(raw)
    args.corpus = args.corpus or [CORPUS]
    if args.replay:
        return replay(args.replay, args.strict)
    if not args.seconds and not args.runs:
        ap.error("give --seconds or --runs (a bounded run)")
    if args.seconds and not args.worker:
        keep = _strip(raw, {"--seconds": 1, "--seed": 1})
        return supervise(args, keep)
    if not args.plain:
        try:
            import atheris  # noqa: F401
        except ImportError:
            print("atheris is not installed (pip install atheris); using the plain engine", file=sys.stderr)
            args.plain = True
        else:
            if _asan_loaded():
                print("AddressSanitizer is preloaded: atheris gets no coverage then; using the plain engine",
                      file=sys.stderr)
                args.plain = True
    print(f"fuzz: engine {'plain' if args.plain else 'atheris'}, seed {args.seed}", file=sys.stderr, flush=True)
    return run_plain(args) if args.plain else run_atheris(args)


def _strip(argv: list[str], options: dict[str, int]) -> list[str]:
    out, i = [], 0
    while i < len(argv):
        a = argv[i]
        name = a.split("=", 1)[0]
        if name in options:
            i += 1 if "=" in a else 1 + options[name]
            continue
        out.append(a)
        i += 1
    return out


if __name__ == "__main__":
    sys.exit(main())
