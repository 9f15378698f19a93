#!/usr/bin/env python3
"""Train the zoo's two Fashion-MNIST models (a small CNN and a small ViT), seeded, and export them to ONNX.

    apt-get install dataset-fashion-mnist            # idx files in /usr/share/datasets/fashion-mnist
    python tools/train_fashion_mnist.py --arch cnn vit

Reproducible: torch.manual_seed / numpy seeds, one intra-op thread, deterministic algorithms, a fixed data order.
The state dict and a small JSON (seed, epochs, test accuracy, torch version) go to ~/.cache/onnxq/fashion_mnist
(``--cache``); a second run reuses them (``--retrain`` trains again). The ONNX export (opset 17, input ``image``
[batch, 1, 28, 28] normalised as ``onnxq.apps.zoo.data.load_fashion_mnist`` does, output ``logits`` [batch, 10]) goes
beside them or to ``--onnx-dir``. ``onnxq zoo run --models fmnist-cnn fmnist-vit`` calls ``train_and_export``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

DEFAULT_CACHE = Path.home() / ".cache" / "onnxq" / "fashion_mnist"
SEED = 0
EPOCHS = {"cnn": 2, "vit": 4}
TRAIN_IMAGES = 30000  # of the 60k: enough for ~88-90 % (CNN) in well under a minute per epoch on one core
BATCH = 128


def build(arch: str):  # type: ignore[no-untyped-def]
    import torch
    from torch import nn

    if arch == "cnn":
        return nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(), nn.Linear(32 * 7 * 7, 128), nn.ReLU(), nn.Linear(128, 10))
    if arch != "vit":
        raise SystemExit(f"unknown arch {arch}; choose cnn or vit")

    class Block(nn.Module):
        def __init__(self, d: int, heads: int, ffn: int) -> None:
            super().__init__()
            self.heads, self.dh = heads, d // heads
            self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
            self.qkv, self.proj = nn.Linear(d, 3 * d), nn.Linear(d, d)
            self.up, self.down = nn.Linear(d, ffn), nn.Linear(ffn, d)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            b, t, d = x.shape
            q, k, v = self.qkv(self.ln1(x)).reshape(b, t, 3, self.heads, self.dh).permute(2, 0, 3, 1, 4)
            att = torch.softmax(q @ k.transpose(-1, -2) / self.dh ** 0.5, dim=-1)
            x = x + self.proj((att @ v).transpose(1, 2).reshape(b, t, d))
            return x + self.down(torch.nn.functional.gelu(self.up(self.ln2(x))))

    class ViT(nn.Module):
        def __init__(self, d: int = 64, depth: int = 2, heads: int = 4, ffn: int = 128, patch: int = 7) -> None:
            super().__init__()
            n = (28 // patch) ** 2
            self.patch = nn.Conv2d(1, d, patch, stride=patch)
            self.cls = nn.Parameter(torch.zeros(1, 1, d))
            self.pos = nn.Parameter(torch.randn(1, n + 1, d) * 0.02)
            self.blocks = nn.ModuleList(Block(d, heads, ffn) for _ in range(depth))
            self.ln, self.head = nn.LayerNorm(d), nn.Linear(d, 10)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            x = self.patch(x).flatten(2).transpose(1, 2)
            x = torch.cat([self.cls.expand(x.shape[0], -1, -1), x], dim=1) + self.pos
            for blk in self.blocks:
                x = blk(x)
            return self.head(self.ln(x[:, 0]))

    return ViT()


def _accuracy(model, x: np.ndarray, y: np.ndarray) -> float:  # type: ignore[no-untyped-def]
    import torch

    model.eval()
    correct = 0
    with torch.no_grad():
        for i in range(0, len(x), 500):
            correct += int((model(torch.from_numpy(x[i:i + 500])).argmax(1).numpy() == y[i:i + 500]).sum())
    return correct / len(x)


def train(arch: str, cache_dir: Path = DEFAULT_CACHE, retrain: bool = False, log=print):  # type: ignore[no-untyped-def]
    """Train (or load from the cache) ``arch``; returns (model, info)."""
    import torch

    from onnxq.apps.zoo.data import load_fashion_mnist

    cache_dir.mkdir(parents=True, exist_ok=True)
    weights, info_path = cache_dir / f"{arch}.pt", cache_dir / f"{arch}.json"
    torch.manual_seed(SEED)
    model = build(arch)
    if weights.is_file() and info_path.is_file() and not retrain:
        model.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
        return model.eval(), json.loads(info_path.read_text())
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    try:
        x, y = load_fashion_mnist("train", limit=TRAIN_IMAGES)
        tx, ty = load_fashion_mnist("test")
        opt = torch.optim.AdamW(model.parameters(), lr=2e-3 if arch == "cnn" else 1e-3, weight_decay=1e-4)
        rng = np.random.default_rng(SEED)
        t0 = time.perf_counter()
        for epoch in range(EPOCHS[arch]):
            model.train()
            order = rng.permutation(len(x))
            for i in range(0, len(x), BATCH):
                idx = order[i:i + BATCH]
                loss = torch.nn.functional.cross_entropy(model(torch.from_numpy(x[idx])), torch.from_numpy(y[idx]))
                opt.zero_grad()
                loss.backward()
                opt.step()
            log(f"[train {arch}] epoch {epoch + 1}/{EPOCHS[arch]}: loss {loss.item():.3f}, "
                f"{time.perf_counter() - t0:.0f}s")
        acc = _accuracy(model, tx, ty)
    finally:
        torch.use_deterministic_algorithms(False)
        torch.set_num_threads(threads)
    info = {"arch": arch, "seed": SEED, "epochs": EPOCHS[arch], "train_images": TRAIN_IMAGES, "batch": BATCH,
            "test_accuracy_torch": acc, "torch": torch.__version__, "seconds": round(time.perf_counter() - t0, 1),
            "parameters": sum(p.numel() for p in model.parameters())}
    tmp = weights.with_suffix(f".{os.getpid()}.tmp")
    torch.save(model.state_dict(), tmp)
    os.replace(tmp, weights)
    from onnxq.core.atomic_write import write_text_atomic

    write_text_atomic(info_path, json.dumps(info, indent=1) + "\n")
    log(f"[train {arch}] test accuracy {acc:.4f}; cached in {weights}")
    return model.eval(), info


def train_and_export(arch: str, cache_dir: Path = DEFAULT_CACHE, onnx_dir: Path | None = None,
                     retrain: bool = False) -> Path:
    """The FP32 ONNX file for ``arch`` (trained first if the cache has no weights)."""
    import torch

    out = (onnx_dir or cache_dir) / f"fmnist-{arch}.fp32.onnx"
    if out.is_file() and not retrain:
        return out
    model, _ = train(arch, cache_dir, retrain, log=lambda m: print(m, file=sys.stderr, flush=True))
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(f".{os.getpid()}.tmp.onnx")
    with torch.no_grad():
        torch.onnx.export(model, (torch.zeros(2, 1, 28, 28),), str(tmp), input_names=["image"],
                          output_names=["logits"], dynamic_axes={"image": {0: "batch"}, "logits": {0: "batch"}},
                          opset_version=17, dynamo=False)
    os.replace(tmp, out)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--arch", nargs="+", default=["cnn", "vit"], choices=["cnn", "vit"])
    ap.add_argument("--cache", default=str(DEFAULT_CACHE))
    ap.add_argument("--onnx-dir", help="where the ONNX files go (default: --cache)")
    ap.add_argument("--retrain", action="store_true")
    args = ap.parse_args()
    for arch in args.arch:
        path = train_and_export(arch, Path(args.cache).expanduser(),
                                Path(args.onnx_dir) if args.onnx_dir else None, args.retrain)
        info = json.loads((Path(args.cache).expanduser() / f"{arch}.json").read_text())
        print(f"{arch}: test accuracy {info['test_accuracy_torch']:.4f} ({info['parameters']} parameters) -> {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
