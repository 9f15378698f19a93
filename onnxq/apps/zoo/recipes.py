"""Zoo recipes: a quantizer recipe, optionally with block-sparse pruning, or the FP32 baseline."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from onnxq.core.errors import OnnxqError


@dataclass(frozen=True)
class ZooRecipe:
    name: str
    description: str
    quant_recipe: str | None = None  # onnxq.QuantConfig recipe; None = float
    sparsity: float = 0.0  # share of weight blocks pruned (0 = dense)
    block: tuple[int, int] = (4, 1)
    reconstruct: bool = False  # OBS / SparseGPT-style update of the kept weights from the calibration data

    @property
    def needs_calibration(self) -> bool:
        from onnxq.core.config import RECIPES

        if self.reconstruct:
            return True
        if self.quant_recipe is None:
            return False
        # per-token recipes get data too: their Conv inputs stay per-tensor and are calibrated
        return RECIPES[self.quant_recipe].get("quantize_activations", True) is not False


BASELINE = "fp32"

RECIPES: dict[str, ZooRecipe] = {r.name: r for r in (
    ZooRecipe("fp32", "the exported FP32 model (baseline)"),
    ZooRecipe("int8", "INT8: s8 per-channel weights x u8 per-tensor activations", "int8"),
    ZooRecipe("fp8-e4m3", "FP8 E4M3FN weights and activations", "fp8-e4m3"),
    ZooRecipe("fp8-e5m2", "FP8 E5M2 weights and activations", "fp8-e5m2"),
    ZooRecipe("fp8-e4m3-weight-only", "FP8 E4M3FN weights, float activations", "fp8-e4m3-weight-only"),
    ZooRecipe("int8-per-token", "INT8 (ZeroQuant): s8 per-channel weights x s8 per-token activations, scales "
              "computed at run time", "int8-per-token"),
    ZooRecipe("fp8-e4m3-per-token", "FP8 E4M3FN weights x per-token FP8 activations, scales computed at run time",
              "fp8-e4m3-per-token"),
    ZooRecipe("int8-bs4x1-50", "50% of 4x1 weight blocks pruned (no fine-tuning), then INT8", "int8", 0.5),
    ZooRecipe("int8-bs4x1-80", "80% of 4x1 weight blocks pruned (no fine-tuning), then INT8", "int8", 0.8),
    ZooRecipe("fp8-e4m3-bs4x1-50", "50% of 4x1 weight blocks pruned (no fine-tuning), then FP8 E4M3", "fp8-e4m3", 0.5),
    ZooRecipe("int8-bs4x1-50-obs", "50% of 4x1 weight blocks pruned with OBS / SparseGPT reconstruction, then INT8",
              "int8", 0.5, reconstruct=True),
    ZooRecipe("int8-bs4x1-80-obs", "80% of 4x1 weight blocks pruned with OBS / SparseGPT reconstruction, then INT8",
              "int8", 0.8, reconstruct=True),
)}

DEFAULT_RECIPES = ("fp32", "int8", "fp8-e4m3", "fp8-e5m2", "int8-bs4x1-50", "int8-bs4x1-80")


def resolve(names: list[str] | tuple[str, ...] | None) -> list[ZooRecipe]:
    """The recipes named (FP32 baseline always first, duplicates dropped); unknown names are one error."""
    names = list(names or DEFAULT_RECIPES)
    bad = [n for n in names if n not in RECIPES]
    if bad:
        raise OnnxqError(f"unknown zoo recipe(s) {', '.join(bad)}; choose from {', '.join(RECIPES)}")
    return [RECIPES[n] for n in dict.fromkeys([BASELINE, *names])]


def convert(recipe: ZooRecipe, src: Path, dst: Path, calibration: list) -> dict:  # type: ignore[type-arg]
    """Write ``dst`` from ``src`` (never modified): prune (no pack; reconstructed from the calibration data if the
    recipe says so) -> quantize -> pack. Returns a summary."""
    import onnxq
    from onnxq.core.model_io import load_model, save_model

    if recipe.quant_recipe is None and recipe.sparsity == 0:
        raise OnnxqError(f"recipe {recipe.name} converts nothing")
    model = load_model(src)
    info: dict[str, object] = {}
    if recipe.sparsity > 0:
        pruned = onnxq.sparsify(model, None, onnxq.SparsifyConfig(sparsity=recipe.sparsity, block=recipe.block,
                                                                  pack=False, reconstruct=recipe.reconstruct),
                                data=calibration if recipe.reconstruct else None)
        model = pruned.model
        info["pruned_weights"] = len(pruned.prune.weights)
    if recipe.quant_recipe is not None:
        cfg = onnxq.QuantConfig.from_recipe(recipe.quant_recipe)
        rep = onnxq.quantize(model, None, cfg, calibration if recipe.needs_calibration else None)
        model = rep.model
        info["layers_quantized"] = rep.layers_quantized
        info["warnings"] = list(rep.warnings[:3])
    if recipe.sparsity > 0:
        packed = onnxq.sparsify(model, None, onnxq.SparsifyConfig(sparsity=0.0, block=recipe.block, pack=True))
        model = packed.model
        info["packed_weights"] = len(packed.pack.packed)
    save_model(model, dst)
    return info
