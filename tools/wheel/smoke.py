"""Run by tools/check_wheel.sh inside a fresh virtual environment holding only the installed onnxq wheel and its
dependencies, with nothing else on PATH: the EP must load and run INT8 and FP8 models without a compiler."""

import shutil
import sys

import numpy as np
import onnxruntime as ort

import onnxq
import onnxq.ep as ep

for tool in ("cc", "gcc", "g++", "c++", "clang", "cmake", "npm", "ninja", "make"):
    assert shutil.which(tool) is None, f"{tool} is on PATH: the check must run without build tools"
assert "site-packages" in onnxq.__file__, onnxq.__file__  # the installed wheel, not a source tree
print(f"onnxq {onnxq.__version__} from {onnxq.get_library_path()}")

rng = np.random.default_rng(0)
feed = {"x": rng.standard_normal((2, 32, 64)).astype(np.float32)}
ref = ort.InferenceSession("tiny_encoder.onnx", providers=["CPUExecutionProvider"]).run(None, feed)[0]
for recipe in ("int8", "fp8-e4m3"):
    out = f"tiny_encoder.{recipe}.onnx"
    onnxq.quantize("tiny_encoder.onnx", out, onnxq.QuantConfig.from_recipe(recipe), "calib_tiny_encoder.npz")
    sess = ep.session(out)
    claimed = ep.assigned_nodes(sess).get(ep.EP_NAME, [])
    got = sess.run(None, feed)[0]
    cos = float(np.sum(got * ref) / (np.linalg.norm(got) * np.linalg.norm(ref)))
    print(f"{recipe}: the EP claimed {len(claimed)} nodes; output cosine to FP32 {cos:.5f}")
    if not claimed or cos < 0.99:
        sys.exit(f"{recipe}: the EP did not run the model correctly")
print("wheel OK")
