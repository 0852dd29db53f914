"""MIS estimator speed: scikit-learn's ``mutual_info_classif`` vs our vectorised copy of the
same estimator, on activations shaped like a run's (1,000 images x 64 filters x 10 classes).

    python benchmarks/mi_speed.py
"""

from __future__ import annotations

import time

import numpy as np

from _common import write_result
from pellucid.metrics.mis import mi_matrix


def main() -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 10, 1000)
    acts = np.abs(rng.normal(size=(1000, 64)))
    acts += (y[:, None] == np.arange(64)[None] % 10) * rng.uniform(0, 2, (1, 64))
    acts = np.maximum(acts - 0.5, 0)  # ReLU-like zeros, as pooled activations have
    out = {}
    for estimator in ("fast", "sklearn"):
        start = time.perf_counter()
        m = mi_matrix(acts, y, 10, estimator=estimator)
        out[estimator] = {"seconds": round(time.perf_counter() - start, 3), "matrix": m}
    diff = float(np.abs(out["fast"]["matrix"] - out["sklearn"]["matrix"]).max())
    result = {
        "shape": [1000, 64, 10],
        "sklearn_seconds": out["sklearn"]["seconds"],
        "fast_seconds": out["fast"]["seconds"],
        "speedup": round(out["sklearn"]["seconds"] / out["fast"]["seconds"], 1),
        "max_abs_difference": diff,
    }
    print(result)
    write_result("mi_speed", result)


if __name__ == "__main__":
    main()
