"""Block-sparse weights: the compact format (format.py), pruning masks (prune.py)."""
