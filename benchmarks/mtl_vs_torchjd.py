"""diffmtl.mtl against torchjd on the same random Jacobians: agreement and time, as JSON.

  python -m benchmarks.mtl_vs_torchjd --torch_python=/path/to/side-venv/bin/python \
      [--ks=2,3,5,10] [--ns=1000,10000,100000,1000000] [--repeats=5]

torchjd needs PyTorch, which never enters this project's environment: make a side venv,
  python3 -m venv /tmp/tjd && /tmp/tjd/bin/pip install torch torchjd qpsolvers quadprog ecos \
      cvxpy scipy
and pass its python. This file runs twice: here (JAX, our methods, the float64 references) and
under --torch_python with --side (imports only numpy and torch), exchanging .npz files.

For every method both have (MGDA, UPGrad, DualProj, IMTL-G, Aligned-MTL, CAGrad, ConFIG,
PCGrad, Nash-MTL) and every Jacobian J [k, n] (float32; a shared component so that some pairs
conflict), it reports the relative difference |d_ours - d_torchjd| / |d_torchjd| of the
aggregated updates after the scale conventions (SCALE: ours times the factor; torchjd sums over
tasks where we average, and does not apply CAGrad's 1 / (1 + c^2)), and the time per
aggregation (J -> update, Gram matrix included): ours jitted, torchjd eager, median of
--repeats on this CPU, with the same thread count. PCGrad draws random task orders: the torch
side replays ours (torch.randperm patched). Nash-MTL is unclipped on both sides and solved from
scratch (alpha0 = 1; torchjd: a fresh aggregator). Where an exact float64 answer is cheap it is
reported too (float64_references), so that a difference can be attributed to one side: MGDA
(brute force over supports), CAGrad (SLSQP from 6 starts), IMTL-G, Aligned-MTL and ConFIG.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

METHODS = ["mgda", "upgrad", "dualproj", "imtl_g", "aligned_mtl", "cagrad", "config", "pcgrad",
           "nash_mtl"]  # fmt: skip
CAGRAD_C = 0.4
# Ours times SCALE[name](k) equals torchjd's update.
SCALE = {"config": lambda k: k, "pcgrad": lambda k: k, "nash_mtl": lambda k: k,
         "cagrad": lambda k: 1.0 + CAGRAD_C**2}  # fmt: skip


def jacobian(k: int, n: int) -> np.ndarray:
    """[k, n] float32 rows with a shared component (some pairs conflict, some agree)."""
    rng = np.random.default_rng(1000 * k + int(np.log10(n)))
    rows = rng.normal(size=(k, n)) + 0.5 * rng.normal(size=n)
    return (rows / np.sqrt(n)).astype(np.float32)


def median_seconds(fn, repeats: int) -> float:
    fn()  # warm-up (and, for ours, the compile)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


# --- torch side (run under --torch_python) --------------------------------------------------


def torchjd_makers(k: int) -> dict:
    """name -> a fresh torchjd aggregator."""
    from torchjd import aggregation

    return {
        "mgda": aggregation.MGDA, "upgrad": aggregation.UPGrad,
        "dualproj": aggregation.DualProj, "imtl_g": aggregation.IMTLG,
        "aligned_mtl": aggregation.AlignedMTL,
        "cagrad": lambda: aggregation.CAGrad(c=CAGRAD_C), "config": aggregation.ConFIG,
        "pcgrad": aggregation.PCGrad,
        "nash_mtl": lambda: aggregation.NashMTL(n_tasks=k, max_norm=float("inf")),
    }  # fmt: skip


def torchjd_run(name: str, matrix, orders: np.ndarray, repeats: int) -> tuple[np.ndarray, float]:
    """(update [n], median seconds) of torchjd's `name` on J = matrix [k, n] (torch)."""
    import torch

    make = torchjd_makers(matrix.shape[0])[name]
    aggregator = make()
    queue = []

    def replay(size, *args, **kwargs):
        del args, kwargs
        return torch.from_numpy(queue.pop(0)[:size].astype(np.int64))

    def aggregate():
        queue[:] = list(orders)  # PCGrad: task i meets the others in ours' order i.
        # Nash-MTL is stateful (a warm start): from scratch every time, as ours.
        return (make() if name == "nash_mtl" else aggregator)(matrix)

    randperm, torch.randperm = torch.randperm, replay
    try:
        return aggregate().numpy(), median_seconds(aggregate, repeats)
    finally:
        torch.randperm = randperm


def side(inputs: str, outputs: str, repeats: int) -> None:
    import torch

    data = np.load(inputs)
    torch.set_num_threads(int(data["threads"]))
    result = {}
    for key in [k for k in data.files if k.startswith("J_")]:
        matrix = torch.from_numpy(data[key])
        orders = data[key.replace("J_", "orders_")]
        for name in METHODS:
            update, seconds = torchjd_run(name, matrix, orders, repeats)
            result[f"{name}|{key}"] = update
            result[f"time|{name}|{key}"] = np.array(seconds)
    np.savez(outputs, **result)


# --- our side ----------------------------------------------------------------------------


def brute_force_mgda(gram: np.ndarray) -> np.ndarray:
    """Weights of the min-norm point of the hull: the best feasible affine minimiser over every
    support (float64; a singular face by least squares; also tests/test_mtl_exact.py's oracle)."""
    import itertools

    k, best = gram.shape[0], (np.inf, None)
    for size in range(1, k + 1):
        for support in map(list, itertools.combinations(range(k), size)):
            system = np.zeros((size + 1, size + 1))
            system[:size, :size] = gram[np.ix_(support, support)]
            system[:size, size] = system[size, :size] = 1.0
            solution = np.linalg.lstsq(system, np.eye(size + 1)[size], rcond=None)[0][:size]
            if np.all(solution >= -1e-12):
                x = np.zeros(k)
                x[support] = solution
                if x @ gram @ x < best[0]:
                    best = (x @ gram @ x, x)
    return best[1]


def slsqp_cagrad(gram: np.ndarray, c: float) -> np.ndarray:
    """CAGrad's weights (with the 1 / (1 + c^2) rescale) with the inner problem by SLSQP from
    6 starts (float64; also tests/test_mtl_exact.py's oracle)."""
    from scipy import optimize

    k = gram.shape[0]
    b = np.full(k, 1.0 / k)
    g0 = np.sqrt(b @ gram @ b)
    objective = lambda x: x @ gram @ b + c * g0 * np.sqrt(max(x @ gram @ x, 1e-300))  # noqa: E731
    constraint = {"type": "eq", "fun": lambda x: x.sum() - 1.0}
    starts = [b, *np.random.default_rng(0).dirichlet(np.ones(k), size=5)]
    x = min((optimize.minimize(objective, s, method="SLSQP", bounds=[(0, 1)] * k,
                               constraints=[constraint], options={"ftol": 1e-15, "maxiter": 1000})
             for s in starts), key=lambda r: r.fun).x  # fmt: skip
    return (b + c * g0 / np.sqrt(x @ gram @ x) * x) / (1.0 + c**2)


def float64_references(matrix: np.ndarray) -> dict[str, np.ndarray]:
    """The update of each method whose exact answer is cheap, in float64 and torchjd's scale:
    MGDA and CAGrad (above), IMTL-G (G^+ |g|), Aligned-MTL (eigendecomposition, their rank
    cutoff) and ConFIG (least squares on the unit gradients)."""
    rows = matrix.astype(np.float64)
    k = rows.shape[0]
    gram = rows @ rows.T
    out = {"mgda": brute_force_mgda(gram) @ rows,
           "cagrad": (1 + CAGRAD_C**2) * slsqp_cagrad(gram, CAGRAD_C) @ rows}  # fmt: skip
    v = np.linalg.pinv(gram, hermitian=True) @ np.sqrt(np.diag(gram))
    out["imtl_g"] = (v / v.sum()) @ rows
    lam, vectors = np.linalg.eigh(gram)
    kept = lam > lam.max() * k * np.finfo(np.float32).eps
    b = vectors[:, kept] @ np.diag(np.sqrt(lam[kept].min() / lam[kept])) @ vectors[:, kept].T
    out["aligned_mtl"] = (b.sum(axis=1) / k) @ rows
    units = rows / np.linalg.norm(rows, axis=1, keepdims=True)
    direction = np.linalg.lstsq(units, np.ones(k), rcond=None)[0]
    direction /= np.linalg.norm(direction)
    out["config"] = np.sum(rows @ direction) * direction
    return out


def ours(name: str, k: int):
    """jitted J [k, n] -> update [n] (Gram matrix, weights, combination)."""
    import jax

    from diffmtl import mtl

    weights = mtl.method(name).weights

    def update(matrix, key):
        gram = mtl.gram_matrix({"J": matrix})  # the training step's path
        if name == "pcgrad":
            w = weights(gram, key=key)
        elif name == "cagrad":
            w = weights(gram, c=CAGRAD_C)
        else:
            w = weights(gram)
        return w @ matrix

    return jax.jit(update)


def relative(a, b) -> float:
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-30))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--torch_python", help="python of a side venv with torch and torchjd")
    parser.add_argument("--ks", default="2,3,5,10")
    parser.add_argument("--ns", default="1000,10000,100000,1000000")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--side", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.side:
        side(args.side, args.out, args.repeats)
        return
    if not args.torch_python or not os.path.exists(args.torch_python):
        sys.exit("--torch_python must name the python of a side venv with torch and torchjd "
                 "(module docstring: how to make one)")  # fmt: skip
    import jax

    from diffmtl.mtl.methods import pcgrad

    ks = [int(v) for v in args.ks.split(",")]
    ns = [int(float(v)) for v in args.ns.split(",")]
    threads = os.cpu_count() or 1
    cases = {f"J_{k}_{n}": jacobian(k, n) for k in ks for n in ns}
    keys = {case: jax.random.PRNGKey(i) for i, case in enumerate(cases)}
    exchange = {case: matrix for case, matrix in cases.items()}
    for case in cases:
        k = cases[case].shape[0]
        orders = np.asarray(pcgrad.task_orders(keys[case], k))
        exchange[case.replace("J_", "orders_")] = orders
    with tempfile.TemporaryDirectory() as tmp:
        inputs, outputs = os.path.join(tmp, "in.npz"), os.path.join(tmp, "out.npz")
        np.savez(inputs, threads=np.array(threads), **exchange)
        subprocess.run([args.torch_python, os.path.abspath(__file__), f"--side={inputs}",
                        f"--out={outputs}", f"--repeats={args.repeats}"], check=True)  # fmt: skip
        theirs = dict(np.load(outputs))
    rows = []
    for case, matrix in cases.items():
        k, n = matrix.shape
        exact = float64_references(matrix)
        for name in METHODS:
            fn = ours(name, k)
            mine = np.asarray(fn(matrix, keys[case]), np.float64) * SCALE.get(name, lambda k: 1)(k)
            other = theirs[f"{name}|{case}"].astype(np.float64)
            key = keys[case]
            seconds = median_seconds(
                lambda fn=fn, matrix=matrix, key=key: fn(matrix, key).block_until_ready(),
                args.repeats,
            )
            row = {"method": name, "k": k, "n": n, "relative_difference": relative(mine, other),
                   "ours_ms": 1e3 * seconds,
                   "torchjd_ms": 1e3 * float(theirs[f"time|{name}|{case}"])}  # fmt: skip
            if name in exact:
                row["ours_vs_exact"] = relative(mine, exact[name])
                row["torchjd_vs_exact"] = relative(other, exact[name])
            rows.append(row)
            print(json.dumps(row), flush=True)
    summary = {}
    for name in METHODS:
        mine = [r for r in rows if r["method"] == name]
        summary[name] = {
            "max_relative_difference": max(r["relative_difference"] for r in mine),
            "time_ratio_median": float(np.median([r["ours_ms"] / r["torchjd_ms"] for r in mine])),
            **({"ours_vs_exact_max": max(r["ours_vs_exact"] for r in mine),
                "torchjd_vs_exact_max": max(r["torchjd_vs_exact"] for r in mine)}
               if "ours_vs_exact" in mine[0] else {}),
        }  # fmt: skip
    print(json.dumps({"summary": summary, "threads": threads}, indent=1))


if __name__ == "__main__":
    main()
