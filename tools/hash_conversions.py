#!/usr/bin/env python3
"""Hash what the quantizer and the sparsifier write for a fixed set of inputs and recipes (the sample models, every
quantization recipe, the calibration methods, the accuracy search, pruning / packing / reconstruction and their
orders), as JSON. Run it with two installs (before and after a refactoring) and diff the outputs: equal hashes mean
equal models. The hash covers the graph, the functions and the opsets, not the provenance stamp.

    python tools/hash_conversions.py [REPO_ROOT] > after.json
"""

from __future__ import annotations

import hashlib
import json
import sys

import onnx

from onnxq import QuantConfig, SparsifyConfig, quantize, sparsify

RECIPES = ("fp8-e4m3", "fp8-e4m3-weight-only", "fp8-e5m2", "fp8-e5m2-weight-only", "fp8-e4m3-wide", "int8",
           "int8-conservative")


def digest(m: onnx.ModelProto) -> str:
    parts = [m.graph.SerializeToString(deterministic=True)]
    parts += [f.SerializeToString(deterministic=True) for f in m.functions]
    parts.append(str([(o.domain, o.version) for o in m.opset_import]).encode())
    return hashlib.sha256(b"".join(parts)).hexdigest()[:16]


def conversions(path: str, data: str) -> dict[str, object]:
    out: dict[str, object] = {}
    for r in RECIPES:
        out[r] = digest(quantize(path, None, QuantConfig.from_recipe(r), data).model)
    for meth in ("percentile", "entropy", "mse"):
        out[f"int8-{meth}"] = digest(quantize(path, None, QuantConfig.from_recipe(
            "int8", calibration_method=meth, smooth_alpha=0), data).model)
        out[f"fp8-{meth}"] = digest(quantize(path, None, QuantConfig.from_recipe(
            "fp8-e4m3", calibration_method=meth), data).model)
    out["int8-sym-pt"] = digest(quantize(path, None, QuantConfig.from_recipe(
        "int8", int8_symmetric_activations=True, weight_granularity="per-tensor"), data).model)
    rep = quantize(path, None, QuantConfig.from_recipe("int8", accuracy_target=0.9999), data)
    out["int8-acc"] = digest(rep.model)
    out["int8-acc-fallbacks"] = len(rep.fallbacks)
    rep = quantize(path, None, QuantConfig.from_recipe("fp8-e5m2", accuracy_target=0.99999, accuracy_samples=2), data)
    out["e5m2-acc"] = digest(rep.model)
    out["e5m2-acc-fallbacks"] = [f["layer"] for f in rep.fallbacks]
    out["e5m2-acc-numbers"] = [rep.accuracy_before, rep.accuracy_after]
    out["sparsify"] = digest(sparsify(path, None, SparsifyConfig(sparsity=0.75, min_elements=64)).model)
    pruned = sparsify(path, None, SparsifyConfig(sparsity=0.75, min_elements=64, pack=False)).model
    out["prune-nopack"] = digest(pruned)
    q = quantize(pruned, None, QuantConfig.from_recipe("int8"), data).model
    out["prune-quant"] = digest(q)
    out["prune-quant-pack"] = digest(sparsify(q, None, SparsifyConfig(sparsity=0.0, min_elements=64)).model)
    out["reconstruct"] = digest(sparsify(path, None, SparsifyConfig(sparsity=0.5, min_elements=64, reconstruct=True),
                                         data=data).model)
    return out


def main() -> int:
    root = sys.argv[1] if len(sys.argv) > 1 else "."
    result = {}
    for name in ("tiny_encoder", "mlp"):
        result[name] = conversions(f"{root}/sample_models/{name}.onnx", f"{root}/sample_models/calib_{name}.npz")
    json.dump(result, sys.stdout, indent=1, sort_keys=True)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
