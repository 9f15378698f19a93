"""The DeepSparse timing worker, run as a script by the DeepSparse virtualenv's Python (DeepSparse 1.8 needs an
older Python and numpy than onnxq): compile the model, report, then answer ``run N`` requests from stdin with the
median of N timed samples (each ``repeat`` runs).

    python deepsparse_worker.py MODEL FEEDS_NPZ THREADS MIN_PASS_SECONDS REPS

Imports nothing from onnxq (it runs in another environment)."""

import json
import os
import statistics
import sys
import time


def main() -> None:
    os.environ.setdefault("NM_DISABLE_ANALYTICS", "1")
    import numpy as np
    from deepsparse import compile_model
    from deepsparse.cpu import cpu_architecture

    path, feeds_path, threads, min_pass, reps = sys.argv[1:6]
    feeds = np.load(feeds_path)
    x = [feeds[f"in{i}"] for i in range(len(feeds.files))]
    t0 = time.perf_counter()
    engine = compile_model(path, batch_size=x[0].shape[0], num_cores=int(threads))
    compile_s = time.perf_counter() - t0
    outs = engine.run(x)
    np.savez(feeds_path + ".out.npz", *outs)
    for _ in range(3):
        engine.run(x)
    t0 = time.perf_counter()
    engine.run(x)
    dt = time.perf_counter() - t0
    repeat = max(1, int(float(min_pass) / max(dt, 1e-7) / int(reps)))
    arch = cpu_architecture()
    print(json.dumps({"ready": True, "fraction_of_supported_ops": engine.fraction_of_supported_ops,
                      "compile_s": compile_s, "repeat": repeat, "engine": str(engine)[:300],
                      "cpu": {k: arch[k] for k in ("vendor", "isa", "vnni", "bf16", "available_num_cores")
                              if k in arch}}), flush=True)
    for line in sys.stdin:
        cmd = line.split()
        if not cmd or cmd[0] == "quit":
            break
        samples = []
        for _ in range(int(cmd[1])):
            t0 = time.perf_counter()
            for _ in range(repeat):
                engine.run(x)
            samples.append((time.perf_counter() - t0) / repeat)
        print(json.dumps({"median": statistics.median(samples)}), flush=True)


if __name__ == "__main__":
    main()
