#!/usr/bin/env python3
"""Build the bundled sample models in sample_models/ (deterministic: same bytes on every run).

    python tools/make_sample_models.py [--out sample_models]

Writes, for the MLP and the tiny transformer encoder block:
  NAME.onnx        FP32 with seeded weights
  NAME.int8.onnx   INT8 Q/DQ: per-column s8 weights, per-tensor u8 activations, min/max calibrated on
                   seeded inputs (onnxq.apps.model_builders.int8_qdq_static)
and calib_NAME.npz, the calibration batch used.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from onnxq.apps.model_builders import int8_qdq_static, mlp_model, sample_inputs, tiny_encoder_model
from onnxq.core.model_io import save_model


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent.parent / "sample_models"))
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for name, model, shape in (("mlp", mlp_model(), dict(batch=8)), ("tiny_encoder", tiny_encoder_model(),
                                                                     dict(batch=2, seq=16))):
        calib = [sample_inputs(model, seed=100 + i, **shape) for i in range(8)]
        save_model(model, out / f"{name}.onnx")
        save_model(int8_qdq_static(model, calib), out / f"{name}.int8.onnx")
        np.savez(out / f"calib_{name}.npz", **calib[0])
        print(f"wrote {out / name}.onnx, {name}.int8.onnx, calib_{name}.npz")


if __name__ == "__main__":
    main()
