"""Block-sparse weights: the compact format (format.py) and the `onnxq.sparsify` API (api.py); the pruning
and packing passes live in onnxq/passes/prune_blocks.py and pack_sparse.py."""
