"""Pipelines as data: a recipe is an ordered list of pass names (modules in ``onnxq.passes``, each with
``run(model, ctx) -> model``). Adding a pass is adding a file there and naming it here.

Every pass is a no-op when its configuration asks nothing of it (``pack_sparse`` with nothing to pack,
``smooth`` without ``smooth_alpha``, ``calibrate`` for weight-only recipes), so one recipe covers the variants.
The accuracy search re-runs the passes from ``SEARCH_FROM`` on (they write the model from the plan) for each
candidate plan; the passes before it analyse the model once.
"""

from __future__ import annotations

from onnxq.core.config import SparsifyConfig

#: quantize; a packed float sparse model is unpacked first and packed again (as INT8 / FP8) at the end
QUANTIZE = ("unpack_sparse", "preprocess", "select_targets", "calibrate", "smooth", "insert_qdq", "finalize",
            "pack_sparse", "check")
#: block pruning (magnitude) and packing, on a float or an already quantized model
SPARSIFY = ("prune_blocks", "pack_sparse", "provenance", "check")
#: block pruning with the kept weights reconstructed from calibration data (float models)
SPARSIFY_RECONSTRUCT = ("reconstruct_sparse", "pack_sparse", "provenance", "check")
#: one command: prune the float model, quantize it, pack the quantized sparse weights
PRUNE_QUANTIZE = ("unpack_sparse", "preprocess", "prune_blocks", "select_targets", "calibrate", "smooth",
                  "insert_qdq", "finalize", "pack_sparse", "check")
PRUNE_RECONSTRUCT_QUANTIZE = ("unpack_sparse", "preprocess", "reconstruct_sparse", "select_targets", "calibrate",
                              "smooth", "insert_qdq", "finalize", "pack_sparse", "check")

RECIPES: dict[str, tuple[str, ...]] = {
    "quantize": QUANTIZE,
    "sparsify": SPARSIFY,
    "sparsify-reconstruct": SPARSIFY_RECONSTRUCT,
    "prune-quantize": PRUNE_QUANTIZE,
    "prune-reconstruct-quantize": PRUNE_RECONSTRUCT_QUANTIZE,
}

#: the accuracy search rebuilds the model from this pass on
SEARCH_FROM = "insert_qdq"


def recipe_for(quantize: bool, sparse: SparsifyConfig | None) -> tuple[str, ...]:
    """The recipe for what a user asked: quantize, sparsify, or both (prune first, pack last)."""
    prunes = sparse is not None and sparse.sparsity > 0
    reconstruct = prunes and sparse is not None and sparse.reconstruct
    if not quantize:
        return SPARSIFY_RECONSTRUCT if reconstruct else SPARSIFY
    if not prunes:
        return QUANTIZE
    return PRUNE_RECONSTRUCT_QUANTIZE if reconstruct else PRUNE_QUANTIZE
