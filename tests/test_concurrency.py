"""Hardening, part 4: concurrency and lifetime of onnxq EP sessions.

* One session, many threads x many runs (different input shapes per thread, so per-thread scratch buffers are
  resized while other threads compute, and concurrent runs contend for the EP's pool): every output is bit-identical
  to the single-threaded run of the same input. Covered: INT8 and FP8 Q/DQ MatMul / Gemm, activation x activation
  MatMul (attention), block-sparse INT8.
* A thousand create / run / destroy cycles: resident memory stays bounded and no thread outlives its session.

Under tools/run_sanitized_tests.sh (ONNXQ_SANITIZED=1) these run with AddressSanitizer (use-after-free at session
destruction, data races that corrupt memory); the RSS bound is skipped there (ASan's quarantine holds freed memory)
and the cycle count is reduced.
"""

from __future__ import annotations

import gc
import os
import threading
from pathlib import Path

import pytest

import onnxq
import onnxq.ep as ep
from onnxq.apps.model_builders import sample_inputs, tiny_encoder_model

SANITIZED = os.environ.get("ONNXQ_SANITIZED") == "1"
SAMPLES = Path(__file__).resolve().parent.parent / "sample_models"


pytestmark = [pytest.mark.every_isa, pytest.mark.usefixtures("fp8_kernel_everywhere")]


def _quantized_encoder(recipe: str, sparse: bool = False) -> bytes:
    m = tiny_encoder_model(seed=4)
    calib = [sample_inputs(m, batch=2, seq=8, seed=s) for s in range(3)]
    q = onnxq.quantize(m, None, onnxq.QuantConfig.from_recipe(recipe), calib).model
    if sparse:
        from onnxq import SparsifyConfig, sparsify

        q = sparsify(q, None, SparsifyConfig(sparsity=0.7, min_elements=0)).model
    return q.SerializeToString()


MODELS = {
    "int8-encoder-with-attention": lambda: _quantized_encoder("int8"),
    "fp8-encoder-with-attention": lambda: _quantized_encoder("fp8-e4m3"),
    "int8-sparse-encoder": lambda: _quantized_encoder("int8", sparse=True),
}


@pytest.mark.parametrize("name", list(MODELS))
@pytest.mark.parametrize("pool", [1, 2])
def test_many_threads_one_session_bit_identical(name: str, pool: int) -> None:
    data = MODELS[name]()
    sess = ep.session(data, provider_options={"num_threads": str(pool)})
    claimed = {n.split(":")[0] for n in ep.assigned_nodes(sess).get(ep.EP_NAME, [])}
    assert "MatMul" in claimed or "Gemm" in claimed, claimed
    shapes = [(1, 1), (2, 5), (3, 16), (1, 33), (4, 7)]
    inputs = [sample_inputs(tiny_encoder_model(seed=4), batch=b, seq=s, seed=i) for i, (b, s) in enumerate(shapes)]
    expected = [sess.run(None, f) for f in inputs]  # single-threaded, one at a time
    threads, runs = (8, 12) if SANITIZED else (8, 40)
    errors: list[str] = []
    start = threading.Barrier(threads)

    def worker(t: int) -> None:
        start.wait()
        for r in range(runs):
            i = (t + r) % len(inputs)
            try:
                got = sess.run(None, inputs[i])
            except Exception as e:  # collected, so a failure names the thread and run
                errors.append(f"thread {t} run {r}: {type(e).__name__}: {e}")
                return
            for g, w in zip(got, expected[i], strict=True):
                if g.shape != w.shape or g.tobytes() != w.tobytes():
                    errors.append(f"thread {t} run {r} input {i}: output differs from the single-threaded run")
                    return

    pool_threads = [threading.Thread(target=worker, args=(t,)) for t in range(threads)]
    for th in pool_threads:
        th.start()
    for th in pool_threads:
        th.join()
    assert not errors, errors[:5]


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _threads() -> int:
    return len(os.listdir("/proc/self/task"))


def test_thousand_create_run_destroy_cycles_bounded_memory() -> None:
    """Session creation copies and prepacks weights and starts the EP's pool; destruction must give all of it back."""
    data = (SAMPLES / "tiny_encoder.int8.onnx").read_bytes()
    feeds = sample_inputs(tiny_encoder_model(), batch=2, seq=8, seed=0)
    cycles = 100 if SANITIZED else 1000
    warmup = cycles // 10

    def cycle() -> None:
        s = ep.session(data, provider_options={"num_threads": "2"})
        s.run(None, feeds)
        del s

    for _ in range(warmup):  # onnxruntime's and the allocator's one-time growth
        cycle()
    gc.collect()
    threads0, rss0 = _threads(), _rss_bytes()
    samples = []
    for i in range(cycles - warmup):
        cycle()
        if i % 100 == 99:
            gc.collect()
            samples.append(_rss_bytes())
    gc.collect()
    growth = _rss_bytes() - rss0
    print(f"\n{cycles} cycles: RSS after warm-up {rss0 / 2**20:.1f} MiB, growth {growth / 2**20:+.2f} MiB, "
          f"samples {[round((s - rss0) / 2**20, 2) for s in samples]} MiB")
    assert _threads() == threads0, "EP worker threads outlived their sessions"
    if not SANITIZED:
        # model file 0.1 MiB, prepacked weights ~0.1 MiB per session: a leak of one session per cycle would be
        # ~100 MiB over 900 cycles; allow allocator noise
        assert growth < 16 * 2**20, f"RSS grew by {growth / 2**20:.1f} MiB over {cycles - warmup} cycles"
