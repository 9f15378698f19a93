"""Fuzz the onnxq EP's session creation and runs with mutated quantized models.

    python tools/fuzz/fuzz_ep.py --seconds 60                # atheris (libFuzzer) if installed, else --plain
    python tools/fuzz/fuzz_ep.py --plain --runs 2000 --seed 1
    python tools/fuzz/fuzz_ep.py --replay crash-1234.onnx    # re-run one input, print its outcome

Inputs are ONNX models; the seed corpus is tools/fuzz/corpus/ (written by tools/fuzz/seeds.py). Each input is
mutated by tools/fuzz/mutate.py (structure-aware: it edits the parsed model; one in ten mutations is libFuzzer's own
byte-level one, to reach the protobuf parser too) and checked by tools/fuzz/harness.py: onnxq EP session + run,
compared with stock onnxruntime. A crash, a sanitizer report, or a ``Finding`` stops the run and leaves the input in
``--artifacts`` (``crash-*`` from libFuzzer, ``finding-*.onnx`` / ``current.onnx`` in --plain mode).

The EP's C++ is not coverage-instrumented (that needs clang's -fsanitize=fuzzer-no-link; the project builds with
gcc), so novelty is fed back from behaviour instead: each distinct (outcome, claimed op types, error message
shape) lights a coverage edge in an instrumented bucket function, so libFuzzer keeps inputs that make the EP do
something new. Run it against the AddressSanitizer build (tools/run_sanitized_tests.sh --fuzz-seconds N does) so
out-of-bounds reads that do not crash are caught too.
"""

from __future__ import annotations

import argparse
import collections
import hashlib
import os
import random
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import harness  # noqa: E402
import mutate  # noqa: E402

CORPUS = HERE / "corpus"
_BUCKETS = 512


def _bucket_source(name: str) -> str:
    body = "".join(f"    if h == {i}:\n        return {i}\n" for i in range(_BUCKETS))
    return f"def {name}(h):\n{body}    return -1\n"


def _make_bucket(name: str):  # type: ignore[no-untyped-def]
    ns: dict[str, object] = {}
    exec(compile(_bucket_source(name), f"<fuzz-{name}>", "exec"), ns)  # noqa: S102 - generated, fixed code
    return ns[name]


def _h(text: str) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=4).digest(), "little") % _BUCKETS


def corpus_files(dirs: list[Path]) -> list[Path]:
    return sorted(p for d in dirs for p in d.glob("*.onnx"))


# ------------------------------------------------------------------------------------------- atheris mode


def run_atheris(args: argparse.Namespace) -> int:
    import atheris

    buckets = [_make_bucket(f"bucket_{k}") for k in ("signature", "claimed", "label")]
    for i, b in enumerate(buckets):
        buckets[i] = atheris.instrument_func(b)
    stats: collections.Counter[str] = collections.Counter()

    def one_input(data: bytes) -> None:
        out = harness.check(data, strict=args.strict)
        stats[out.label] += 1
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

    work = Path(args.work or args.artifacts) / "corpus"
    work.mkdir(parents=True, exist_ok=True)
    argv = [sys.argv[0], str(work), *[str(d) for d in args.corpus],
            f"-artifact_prefix={Path(args.artifacts).resolve()}/", "-max_len=262144", "-timeout=60",
            "-rss_limit_mb=8192", f"-seed={args.seed or 0}", "-print_final_stats=1", "-reload=0"]
    if args.seconds:
        argv.append(f"-max_total_time={int(args.seconds)}")
    if args.runs:
        argv.append(f"-runs={args.runs}")
    t0 = time.perf_counter()
    atheris.Setup(argv, one_input, custom_mutator=custom_mutator)
    import atexit

    atexit.register(lambda: _report(stats, time.perf_counter() - t0))
    atheris.Fuzz()
    return 0


# ------------------------------------------------------------------------------------------- plain mode


def run_plain(args: argparse.Namespace) -> int:
    """No coverage feedback: seeded random mutation chains from the corpus. Deterministic for a given --seed."""
    seeds = [p.read_bytes() for p in corpus_files(args.corpus)]
    if not seeds:
        print(f"no .onnx seeds in {args.corpus}", file=sys.stderr)
        return 2
    art = Path(args.artifacts)
    art.mkdir(parents=True, exist_ok=True)
    rng = random.Random(args.seed)
    stats: collections.Counter[str] = collections.Counter()
    t0 = time.perf_counter()
    n = 0
    while True:
        if args.runs and n >= args.runs:
            break
        if args.seconds and time.perf_counter() - t0 >= args.seconds:
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
            _report(stats, time.perf_counter() - t0)
            return 1
        stats[out.label] += 1
        n += 1
    (art / "current.onnx").unlink(missing_ok=True)
    _report(stats, time.perf_counter() - t0)
    return 0


def _report(stats: collections.Counter[str], seconds: float) -> None:
    total = sum(stats.values())
    rate = total / seconds if seconds > 0 else 0.0
    print(f"fuzz: {total} inputs in {seconds:.1f} s ({rate:.1f}/s); outcomes: "
          + ", ".join(f"{k} {v}" for k, v in stats.most_common()), file=sys.stderr)


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
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=0, help="stop after this long (0: no limit)")
    ap.add_argument("--runs", type=int, default=0, help="stop after this many inputs (0: no limit)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--corpus", type=Path, action="append", help=f"seed directories (default {CORPUS})")
    ap.add_argument("--artifacts", default="fuzz-artifacts", help="where crashes / findings are written")
    ap.add_argument("--work", help="libFuzzer's working corpus (default ARTIFACTS/corpus; never the seed dir)")
    ap.add_argument("--plain", action="store_true", help="no atheris: seeded random mutation chains")
    ap.add_argument("--strict", action="store_true",
                    help="also flag models onnxruntime accepts but the EP fails (session or run)")
    ap.add_argument("--replay", nargs="+", metavar="MODEL", help="check these files once each and exit")
    args = ap.parse_args(argv)
    args.corpus = args.corpus or [CORPUS]
    if args.replay:
        return replay(args.replay, args.strict)
    if not args.seconds and not args.runs:
        ap.error("give --seconds or --runs (a bounded run)")
    os.environ.setdefault("ORT_LOGGING_LEVEL", "4")
    if not args.plain:
        try:
            import atheris  # noqa: F401
        except ImportError:
            print("atheris is not installed (pip install atheris); running --plain", file=sys.stderr)
            args.plain = True
    return run_plain(args) if args.plain else run_atheris(args)


if __name__ == "__main__":
    sys.exit(main())
