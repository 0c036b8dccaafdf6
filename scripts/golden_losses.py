#!/usr/bin/env python3
"""Independent float64 NumPy reference for the ITRA losses; writes golden-test fixtures.

Every numerical convention follows ``shared/paper/CONVENTIONS.md``:

* Gaussian kernel ``k(a, b) = exp(-||a - b||^2 / sigma)``.
* ``median`` bandwidth: median of the squared distances over the unordered pairs ``i < j`` of the
  pooled rows of H1 and H2 (mean of the two middle values for an even count), detached; ``sigma = 1``
  with fewer than two points or a median ``<= 1e-12``. ``fixed(s)``: ``sigma = s``.
* Biased MMD2 with the diagonal terms; ``MMD = sqrt(max(MMD2, eps))``, zero gradient when
  ``MMD2 < eps``. With ``params.matching = "mmd2"`` (absent: ``"mmd"``) the term is MMD2 itself,
  no root and no floor (the ablation).
* ITRA = MMD(H1, H2). ITRA-c = mean over the classes present in both batches of the per-class MMD
  (one pooled sigma), 0 with no gradient when none is; ``normalize = all_classes`` divides by K.
* Center loss ``(1/(2m)) sum_i ||h_i - c_{y_i}||^2`` (``(1/m)`` with ``halve = false``, the ablation),
  after setting each uninitialised class present in the batch to its batch mean, then Wen et al.'s
  center update from those centers.
* LSR: cross-entropy against ``(1 - eps) onehot + eps / K``, mean over the batch.

For each case the script

1. draws inputs from a per-case seeded RNG and rounds them to float32 (the Rust side computes in f32),
2. computes the value and the *analytic* gradients in float64,
3. checks every analytic gradient against central finite differences (sigma held fixed at its detached
   value), plus a loop-based recomputation of each value, and fails loudly on a mismatch,
4. re-runs the same formulas in float32 (with both direct-difference and Gram-form squared distances)
   and checks the fixture's tolerance can be met by an f32 implementation,
5. writes ``itra-core/tests/golden/<name>.json`` deterministically.

Run: ``python3 -m pip install numpy && python3 scripts/golden_losses.py``.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np

OUT_DIR = Path(__file__).resolve().parent.parent / "itra-core" / "tests" / "golden"

DEFAULT_TOL = {"rel": 1e-4, "abs": 1e-5}
FD_REL_TOL = 1e-6  # finite differences vs analytic gradients, relative to the largest gradient entry
MEDIAN_FLOOR = 1e-12


# ----------------------------------------------------------------------------------------------
# Kernel and bandwidth
# ----------------------------------------------------------------------------------------------


def sq_dists(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Squared Euclidean distances ``D[i, j] = ||a_i - b_j||^2`` by direct differences."""
    diff = a[:, None, :] - b[None, :, :]
    return np.sum(diff * diff, axis=2)


def sq_dists_gram(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``||a||^2 + ||b||^2 - 2 a.b`` clamped at 0: the matmul form a tensor library would use.

    Only used by the float32 emulation, never for the float64 expectations.
    """
    aa = np.sum(a * a, axis=1)[:, None]
    bb = np.sum(b * b, axis=1)[None, :]
    return np.maximum(aa + bb - 2 * (a @ b.T), 0)


def median_bandwidth(z: np.ndarray, dist=sq_dists):
    """Median of ``||z_i - z_j||^2`` over unordered pairs ``i < j``; 1 if < 2 points or <= 1e-12.

    ``np.median`` returns the mean of the two middle values for an even number of pairs, as the
    conventions require. The result is a plain number: no gradient ever flows through it.
    """
    n = z.shape[0]
    if n < 2:
        return z.dtype.type(1)
    iu = np.triu_indices(n, k=1)
    med = np.median(dist(z, z)[iu])
    if not med > MEDIAN_FLOOR:
        return z.dtype.type(1)
    return med


def resolve_sigma(bandwidth, h1: np.ndarray, h2: np.ndarray, dist=sq_dists):
    """``bandwidth`` is ``"median"`` (pooled over all rows of H1 and H2) or ``{"fixed": s}``."""
    if bandwidth == "median":
        return median_bandwidth(np.concatenate([h1, h2], axis=0), dist)
    return h1.dtype.type(bandwidth["fixed"])


def gaussian_kernel(a: np.ndarray, b: np.ndarray, sigma, dist=sq_dists) -> np.ndarray:
    """``K[i, j] = exp(-||a_i - b_j||^2 / sigma)``."""
    return np.exp(-dist(a, b) / sigma)


# ----------------------------------------------------------------------------------------------
# Losses: value and analytic gradient
# ----------------------------------------------------------------------------------------------


def mmd_loss(x: np.ndarray, y: np.ndarray, sigma, eps, dist=sq_dists, matching="mmd"):
    """Biased MMD with its analytic gradients; returns ``(value, grad_x, grad_y, mmd2)``.

    Value::

        MMD2 = 1/m^2 sum_ij Kxx_ij + 1/n^2 sum_ij Kyy_ij - 2/(mn) sum_ij Kxy_ij
        MMD  = sqrt(max(MMD2, eps))

    Gradient (sigma constant). With ``d k(a, b) / d a = -(2/sigma) k(a, b) (a - b)``, and since
    ``x_p`` appears in row p and column p of the symmetric Kxx (the diagonal term is constant)::

        d MMD2 / d x_p = -4/(sigma m^2) sum_j Kxx_pj (x_p - x_j) + 4/(sigma m n) sum_j Kxy_pj (x_p - y_j)
        d MMD2 / d y_q = -4/(sigma n^2) sum_j Kyy_qj (y_q - y_j) + 4/(sigma m n) sum_i Kxy_iq (y_q - x_i)

    where ``sum_j K_pj (x_p - x_j) = rowsum(K)_p x_p - (K X)_p``. Then
    ``d MMD = d MMD2 / (2 MMD)`` when ``MMD2 >= eps``, and 0 otherwise (the floor is active).
    With ``matching = "mmd2"`` the value is MMD2 and the gradient ``d MMD2``, whatever MMD2 is.
    """
    m, n = x.shape[0], y.shape[0]
    kxx = gaussian_kernel(x, x, sigma, dist)
    kyy = gaussian_kernel(y, y, sigma, dist)
    kxy = gaussian_kernel(x, y, sigma, dist)
    mmd2 = kxx.mean() + kyy.mean() - 2 * kxy.mean()
    if mmd2 < eps and matching == "mmd":
        floor = np.sqrt(np.maximum(mmd2, eps))
        return floor, np.zeros_like(x), np.zeros_like(y), mmd2
    value = np.sqrt(mmd2)
    d_x = (-4 / (sigma * m * m)) * (kxx.sum(axis=1)[:, None] * x - kxx @ x) + (
        4 / (sigma * m * n)
    ) * (kxy.sum(axis=1)[:, None] * x - kxy @ y)
    d_y = (-4 / (sigma * n * n)) * (kyy.sum(axis=1)[:, None] * y - kyy @ y) + (
        4 / (sigma * m * n)
    ) * (kxy.sum(axis=0)[:, None] * y - kxy.T @ x)
    if matching == "mmd2":
        return mmd2, d_x, d_y, mmd2
    scale = 1 / (2 * value)
    return value, d_x * scale, d_y * scale, mmd2


def itra_c_loss(h1, y1, h2, y2, sigma, eps, normalize, num_classes, dist=sq_dists, matching="mmd"):
    """Class-conditional ITRA; returns ``(value, grad_h1, grad_h2, per_class_mmd2)``.

    Value::

        Match_c = (1/Z) sum_{k in P} MMD(H1[y1 == k], H2[y2 == k])

    with ``P`` the classes present in both batches, ``Z = |P|`` (``present``) or ``K``
    (``all_classes``), one pooled sigma for all classes, and ``Match_c = 0`` when ``P`` is empty.

    Gradient: the sum is linear, so each class's MMD gradient (see ``mmd_loss``) is scaled by
    ``1/Z`` and scattered back to that class's rows; rows of classes outside ``P`` get 0.
    ``matching = "mmd2"`` averages the per-class MMD2 instead.
    """
    g1, g2 = np.zeros_like(h1), np.zeros_like(h2)
    present = [k for k in range(num_classes) if np.any(y1 == k) and np.any(y2 == k)]
    if not present:
        return h1.dtype.type(0), g1, g2, {}
    denom = len(present) if normalize == "present" else num_classes
    total = h1.dtype.type(0)
    per_class = {}
    for k in present:
        r1, r2 = np.flatnonzero(y1 == k), np.flatnonzero(y2 == k)
        value, d1, d2, mmd2 = mmd_loss(h1[r1], h2[r2], sigma, eps, dist, matching)
        total = total + value
        g1[r1] = d1 / denom
        g2[r2] = d2 / denom
        per_class[k] = mmd2
    return total / denom, g1, g2, per_class


def center_init(h, y, centers, initialized):
    """Class-mean initialisation; returns ``(centers, initialized_after)``.

    Every class present in the batch whose center is not yet initialised gets the mean of its rows
    of ``h`` (detached: a constant for the loss) and is marked initialised; every other class keeps
    its center and flag.
    """
    centers = centers.copy()
    after = initialized.copy()
    for j in np.unique(y):
        if not initialized[j]:
            centers[j] = h[y == j].mean(axis=0)
            after[j] = True
    return centers, after


def center_value(h, y, centers, halve):
    """``L = (1/(2m)) sum_i ||h_i - c_{y_i}||^2`` (``1/m`` without the half) and ``dL/dh``.

    Only the i-th term holds ``h_i``, so ``dL/dh_i = (1/m) (h_i - c_{y_i})`` (``(2/m)`` without the
    half); centers are state, not differentiated.
    """
    m = h.shape[0]
    factor = 2 * m if halve else m
    resid = h - centers[y]
    return np.sum(resid * resid) / factor, (2 / factor) * resid


def center_loss(h, y, centers, alpha, halve, initialized):
    """Center loss: initialisation, value, gradient and Wen et al.'s center update.

    Returns ``(value, grad_h, centers_after, initialized_after, centers_used)``; ``centers_used``
    are the centers after the initialisation, those the value is computed with.

    Update, with the *pre-update* (initialised) centers ``c`` and ``n_j`` samples of class j::

        c_j <- c_j - alpha * sum_{i: y_i = j} (c_j - h_i) / (1 + n_j)

    Classes absent from the batch keep their centers (``n_j = 0``, empty sum) and their flags.
    """
    centers, initialized_after = center_init(h, y, centers, initialized)
    value, grad = center_value(h, y, centers, halve)
    counts = np.bincount(y, minlength=centers.shape[0]).astype(h.dtype)
    delta_sum = np.zeros_like(centers)
    np.add.at(delta_sum, y, centers[y] - h)
    centers_after = centers - alpha * delta_sum / (1 + counts)[:, None]
    return value, grad, centers_after, initialized_after, centers


def lsr_loss(logits, targets, smoothing, num_classes):
    """Label-smoothed cross-entropy with its gradient; returns ``(value, grad_logits)``.

    Value: ``q = (1 - eps) onehot(y) + eps / K``, ``L = -(1/m) sum_i sum_k q_ik log softmax(z_i)_k``
    (log-softmax through log-sum-exp, stable for large logits).

    Gradient: ``-sum_k q_k log softmax_k = logsumexp(z) - sum_k q_k z_k`` because ``sum_k q_k = 1``;
    ``d/dz_k`` of it is ``softmax_k - q_k``, hence ``dL/dz_ik = (softmax(z_i)_k - q_ik) / m``.
    """
    m = logits.shape[0]
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_sm = shifted - np.log(np.sum(np.exp(shifted), axis=1, keepdims=True))
    q = np.full_like(logits, smoothing / num_classes)
    q[np.arange(m), targets] += 1 - smoothing
    value = -np.sum(q * log_sm) / m
    grad = (np.exp(log_sm) - q) / m
    return value, grad


# ----------------------------------------------------------------------------------------------
# Independent checks
# ----------------------------------------------------------------------------------------------


def central_fd(f, x: np.ndarray) -> np.ndarray:
    """Central finite differences of scalar ``f`` w.r.t. every entry of ``x`` (float64).

    The step scales with the input magnitude: ``h = 1e-5 * max(1, max|x|)``.
    """
    step = 1e-5 * max(1.0, float(np.abs(x).max()))
    grad = np.zeros_like(x)
    for idx in np.ndindex(*x.shape):
        xp, xm = x.copy(), x.copy()
        xp[idx] += step
        xm[idx] -= step
        grad[idx] = (f(xp) - f(xm)) / (2 * step)
    return grad


def fd_rel_error(analytic: np.ndarray, numeric: np.ndarray) -> float:
    """``max|analytic - numeric| / max(max|analytic|, max|numeric|)``; 0 when both vanish."""
    scale = max(float(np.abs(analytic).max(initial=0)), float(np.abs(numeric).max(initial=0)))
    err = float(np.abs(analytic - numeric).max(initial=0))
    if scale < 1e-14:
        # Both are zero (floored MMD, no common class): require an absolute match.
        return err
    return err / scale


def assert_fd(name: str, what: str, analytic, f, x) -> float:
    err = fd_rel_error(analytic, central_fd(f, x))
    if not err <= FD_REL_TOL:
        raise AssertionError(
            f"{name}: analytic {what} disagrees with finite differences: rel err {err:.3e} "
            f"> {FD_REL_TOL:.0e}"
        )
    return err


def mmd2_naive(x, y, sigma) -> float:
    """Loop-based biased MMD2 straight from the paper's formula (cross-check of ``mmd_loss``)."""

    def k(a, b):
        return math.exp(-sum((ai - bi) ** 2 for ai, bi in zip(a, b)) / sigma)

    xs, ys = x.tolist(), y.tolist()
    sxx = sum(k(a, b) for a in xs for b in xs) / len(xs) ** 2
    syy = sum(k(a, b) for a in ys for b in ys) / len(ys) ** 2
    sxy = sum(k(a, b) for a in xs for b in ys) / (len(xs) * len(ys))
    return sxx + syy - 2 * sxy


def median_naive(z) -> float:
    """Sort-based median of the pairwise squared distances (cross-check of ``median_bandwidth``)."""
    rows = z.tolist()
    d = sorted(
        sum((a - b) ** 2 for a, b in zip(rows[i], rows[j]))
        for i in range(len(rows))
        for j in range(i + 1, len(rows))
    )
    if not d:
        return 1.0
    n = len(d)
    med = d[n // 2] if n % 2 else 0.5 * (d[n // 2 - 1] + d[n // 2])
    return med if med > MEDIAN_FLOOR else 1.0


def assert_close(name: str, what: str, a, b, rel=1e-12, abs_=1e-14):
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape or not np.allclose(a, b, rtol=rel, atol=abs_):
        raise AssertionError(f"{name}: {what} mismatch:\n{a}\nvs\n{b}")


def assert_eps_margin(name: str, mmd2_values, eps):
    """An MMD2 within 20% of eps could land on the other side of the floor in f32: refuse it."""
    for mmd2 in mmd2_values:
        if mmd2 != 0 and abs(mmd2 - eps) < 0.2 * eps:
            raise AssertionError(f"{name}: MMD2 {mmd2:.3e} too close to eps {eps:.1e}")


# ----------------------------------------------------------------------------------------------
# Evaluation of one case
# ----------------------------------------------------------------------------------------------


def evaluate(case: dict, dtype=np.float64, dist=sq_dists) -> dict:
    """Expected outputs of ``case`` computed in ``dtype`` (float64 for fixtures)."""
    loss, p = case["loss"], case["params"]

    def arr(key):
        return np.asarray(case[key], dtype=dtype)

    if loss in ("mmd", "itra", "itra_c"):
        h1, h2 = arr("h1"), arr("h2")
        matching = p.get("matching", "mmd")
        sigma = resolve_sigma(p["bandwidth"], h1, h2, dist)
        if loss == "itra_c":
            y1, y2 = np.asarray(case["y1"]), np.asarray(case["y2"])
            value, g1, g2, _ = itra_c_loss(
                h1, y1, h2, y2, sigma, p["eps"], p["normalize"], p["num_classes"], dist, matching
            )
        else:
            value, g1, g2, _ = mmd_loss(h1, h2, sigma, p["eps"], dist, matching)
        return {"value": value, "sigma": sigma, "grad_h1": g1, "grad_h2": g2}
    if loss == "center":
        value, g, after, init_after, _ = center_loss(arr("h1"), np.asarray(case["y1"]),
                                                     arr("centers"), p["alpha"], p["halve"],
                                                     center_initialized(case))
        return {"value": value, "grad_h1": g, "centers_after": after,
                "initialized_after": [bool(v) for v in init_after]}
    if loss == "lsr":
        value, g = lsr_loss(arr("logits"), np.asarray(case["targets"]), p["smoothing"],
                            p["num_classes"])
        return {"value": value, "grad_logits": g}
    raise ValueError(f"unknown loss {loss!r}")


def verify(case: dict, expected: dict) -> dict:
    """Finite-difference and naive cross-checks; returns the observed FD relative errors."""
    name, loss, p = case["name"], case["loss"], case["params"]
    errs = {}
    if loss in ("mmd", "itra", "itra_c"):
        h1, h2 = np.asarray(case["h1"]), np.asarray(case["h2"])
        matching = p.get("matching", "mmd")
        sigma = float(expected["sigma"])
        if p["bandwidth"] == "median":
            assert_close(name, "median sigma", sigma,
                         median_naive(np.concatenate([h1, h2], axis=0)))
        if loss == "itra_c":
            y1, y2 = np.asarray(case["y1"]), np.asarray(case["y2"])

            def value_of(a, b):
                return itra_c_loss(a, y1, b, y2, sigma, p["eps"], p["normalize"],
                                   p["num_classes"], matching=matching)[0]

            _, _, _, per_class = itra_c_loss(h1, y1, h2, y2, sigma, p["eps"], p["normalize"],
                                             p["num_classes"])
            for k, mmd2 in per_class.items():
                assert_close(name, f"class {k} MMD2", mmd2,
                             mmd2_naive(h1[y1 == k], h2[y2 == k], sigma), abs_=1e-13)
            if matching == "mmd":
                assert_eps_margin(name, per_class.values(), p["eps"])
            else:
                # MMD2 matching: the value is the mean of the per-class MMD2 (Z = |P| or K).
                z = len(per_class) if p["normalize"] == "present" else p["num_classes"]
                naive = sum(per_class.values()) / z if per_class else 0.0
                assert_close(name, "mean class MMD2", expected["value"], naive, abs_=1e-13)
        else:

            def value_of(a, b):
                return mmd_loss(a, b, sigma, p["eps"], matching=matching)[0]

            mmd2 = mmd_loss(h1, h2, sigma, p["eps"])[3]
            assert_close(name, "MMD2", mmd2, mmd2_naive(h1, h2, sigma), abs_=1e-13)
            if matching == "mmd":
                assert_eps_margin(name, [mmd2], p["eps"])
            else:
                assert_close(name, "MMD2 value", expected["value"], mmd2_naive(h1, h2, sigma),
                             abs_=1e-13)
        errs["grad_h1"] = assert_fd(name, "grad_h1", expected["grad_h1"],
                                    lambda a: value_of(a, h2), h1)
        errs["grad_h2"] = assert_fd(name, "grad_h2", expected["grad_h2"],
                                    lambda b: value_of(h1, b), h2)
    elif loss == "center":
        h, y, c = np.asarray(case["h1"]), np.asarray(case["y1"]), np.asarray(case["centers"])
        init = center_initialized(case)
        # The initialised centers come from detached features: constants for the gradient.
        used = center_loss(h, y, c, p["alpha"], p["halve"], init)[4]
        errs["grad_h1"] = assert_fd(name, "grad_h1", expected["grad_h1"],
                                    lambda a: center_value(a, y, used, p["halve"])[0], h)
        # Initialisation, value and update, written out class by class.
        start, flags = c.copy(), [bool(v) for v in init]
        for j in range(c.shape[0]):
            rows = [i for i in range(len(y)) if y[i] == j]
            if rows and not flags[j]:
                start[j] = sum(h[i] for i in rows) / len(rows)
                flags[j] = True
        assert_close(name, "initialized_after", expected["initialized_after"], flags)
        after = start.copy()
        for j in range(c.shape[0]):
            rows = [i for i in range(len(y)) if y[i] == j]
            if rows:
                step = sum(start[j] - h[i] for i in rows) / (1 + len(rows))
                after[j] = start[j] - p["alpha"] * step
        assert_close(name, "centers_after", expected["centers_after"], after)
        scale = 0.5 if p["halve"] else 1.0
        naive = scale * sum(float(np.sum((h[i] - start[y[i]]) ** 2)) for i in range(len(y))) / len(y)
        assert_close(name, "center value", expected["value"], naive)
    elif loss == "lsr":
        z, t = np.asarray(case["logits"]), np.asarray(case["targets"])
        k, eps = p["num_classes"], p["smoothing"]
        errs["grad_logits"] = assert_fd(name, "grad_logits", expected["grad_logits"],
                                        lambda a: lsr_loss(a, t, eps, k)[0], z)
        # PyTorch's decomposition: (1 - eps) * NLL + eps * mean_k(-log softmax).
        lse = np.log(np.sum(np.exp(z - z.max(axis=1, keepdims=True)), axis=1)) + z.max(axis=1)
        log_sm = z - lse[:, None]
        nll = -np.mean(log_sm[np.arange(len(t)), t])
        uniform = -np.mean(np.mean(log_sm, axis=1))
        assert_close(name, "LSR value", expected["value"], (1 - eps) * nll + eps * uniform)
    return errs


def f32_check(case: dict, expected: dict) -> dict:
    """Re-run the formulas in float32 and require the fixture tolerance to hold for them.

    Returns the worst ``|f32 - f64| / (abs + rel |f64|)`` ratio per squared-distance variant: a ratio
    below 1 means that variant of an f32 implementation passes the fixture.
    """
    tol = case["tolerance"]
    ratios = {}
    variants = {"direct": sq_dists}
    if case["loss"] in ("mmd", "itra", "itra_c"):
        variants["gram"] = sq_dists_gram
    for label, dist in variants.items():
        got = evaluate(case, np.float32, dist)
        worst = 0.0
        for key, want in expected.items():
            want = np.asarray(want, dtype=np.float64)
            have = np.asarray(got[key], dtype=np.float64)
            ratio = np.abs(have - want) / (tol["abs"] + tol["rel"] * np.abs(want))
            worst = max(worst, float(ratio.max(initial=0)))
        ratios[label] = worst
    if ratios["direct"] > 1:
        raise AssertionError(f"{case['name']}: an f32 implementation cannot meet the tolerance "
                             f"(ratio {ratios['direct']:.2f})")
    return ratios


# ----------------------------------------------------------------------------------------------
# Cases
# ----------------------------------------------------------------------------------------------


def center_initialized(case: dict) -> np.ndarray:
    """The fixture's ``initialized`` flags; absent means every class is (centers used as given)."""
    k = len(case["centers"])
    return np.asarray(case.get("initialized", [True] * k), dtype=bool)


def center_case(name, seed, y1, d, num_classes, *, alpha=0.5, halve=True, initialized=None,
                zero_centers=False, note=None):
    rng = np.random.default_rng(seed)
    h1 = rng.normal(size=(len(y1), d))
    centers = np.zeros((num_classes, d)) if zero_centers else rng.normal(size=(num_classes, d))
    case = {"name": name, "loss": "center",
            "params": {"num_classes": num_classes, "alpha": alpha, "halve": halve},
            "h1": f32(h1), "y1": list(y1), "centers": f32(centers)}
    if initialized is not None:
        case["initialized"] = list(initialized)
    return finish(case, note=note)


def f32(x) -> list:
    """Round to float32 and return float64 nested lists (what both sides read exactly)."""
    return np.asarray(x, dtype=np.float32).astype(np.float64).tolist()


def mmd_case(name, loss, seed, m1, m2, d, *, bandwidth="median", eps=1e-8, shift=0.5, scale=1.0,
             h1=None, h2=None, tolerance=None, note=None, matching=None):
    rng = np.random.default_rng(seed)
    if h1 is None:
        h1 = scale * rng.normal(size=(m1, d))
    if h2 is None:
        h2 = scale * (rng.normal(size=(m2, d)) + shift)
    case = {"name": name, "loss": loss, "params": {"bandwidth": bandwidth, "eps": eps},
            "h1": f32(h1), "h2": f32(h2)}
    if matching is not None:
        case["params"]["matching"] = matching
    return finish(case, tolerance, note)


def labelled(rng, labels, d, class_means, noise=1.0):
    """Rows ``class_means[y] + noise * N(0, 1)``."""
    labels = np.asarray(labels)
    return class_means[labels] + noise * rng.normal(size=(len(labels), d))


def itra_c_case(name, seed, y1, y2, d, num_classes, *, normalize="present", bandwidth="median",
                eps=1e-8, shift=0.5, h1=None, h2=None, tolerance=None, note=None, matching=None):
    rng = np.random.default_rng(seed)
    means = 2.0 * rng.normal(size=(num_classes, d))
    if h1 is None:
        h1 = labelled(rng, y1, d, means)
    if h2 is None:
        h2 = labelled(rng, y2, d, means + shift)
    case = {"name": name, "loss": "itra_c",
            "params": {"bandwidth": bandwidth, "eps": eps, "normalize": normalize,
                       "num_classes": num_classes},
            "h1": f32(h1), "y1": [int(v) for v in y1], "h2": f32(h2), "y2": [int(v) for v in y2]}
    if matching is not None:
        case["params"]["matching"] = matching
    return finish(case, tolerance, note)


def finish(case, tolerance=None, note=None):
    case["tolerance"] = dict(tolerance or DEFAULT_TOL)
    if note:
        case["_note"] = note  # printed, not written: the schema has no comment field
    return case


def build_cases() -> list[dict]:
    cases = []

    # --- MMD / ITRA (same maths, both loss names) -------------------------------------------
    cases.append(mmd_case("mmd_basic", "mmd", 101, 6, 6, 4))
    cases.append(mmd_case("itra_basic", "itra", 102, 8, 8, 5))
    cases.append(mmd_case("itra_uneven_5_vs_9", "itra", 103, 5, 9, 3))
    cases.append(mmd_case("mmd_fixed_bandwidth", "mmd", 104, 6, 7, 3, bandwidth={"fixed": 2.0}))
    rng = np.random.default_rng(105)
    same = rng.normal(size=(6, 4))
    cases.append(mmd_case("itra_identical_batches", "itra", 105, 6, 6, 4, h1=same, h2=same,
                          note="MMD2 = 0 < eps: value sqrt(eps), zero gradients"))
    rng = np.random.default_rng(106)
    row = rng.normal(size=(1, 5))
    cases.append(mmd_case("mmd_constant_features", "mmd", 106, 4, 3, 5,
                          h1=np.repeat(row, 4, axis=0), h2=np.repeat(row, 3, axis=0),
                          note="all rows equal: median 0 -> sigma 1, MMD2 = 0"))
    # Features of magnitude ~1e3. With the median bandwidth the kernel only sees (a-b)^2/sigma, a
    # scale-free quantity, so f32 conditioning is as for unit-scale features and rel 1e-4 holds.
    # The gradients scale as 1/1e3 (~4e-5 here), below the default abs 1e-5, which would make their
    # check vacuous: abs is *tightened* to 1e-9 (f32 emulation errors are ~1e-11).
    cases.append(mmd_case("itra_large_magnitude", "itra", 107, 7, 6, 4, scale=1e3,
                          tolerance={"rel": 1e-4, "abs": 1e-9},
                          note="features ~1e3, gradients ~1e-5, abs tolerance 1e-9"))
    # Pair counts: 4 + 4 = 8 points -> 28 pairs (even); 3 + 3 = 6 points -> 15 pairs (odd).
    cases.append(mmd_case("mmd_median_even_pairs", "mmd", 108, 4, 4, 3,
                          note="28 pairs: median = mean of the 14th and 15th"))
    cases.append(mmd_case("mmd_median_odd_pairs", "mmd", 109, 3, 3, 3,
                          note="15 pairs: median = the 8th"))
    cases.append(mmd_case("mmd_single_rows", "mmd", 110, 1, 1, 3,
                          note="one pair: sigma = ||h1 - h2||^2, MMD2 = 2 - 2/e"))
    # Custom eps = 1e-3: H2 a tiny perturbation of H1 (MMD2 far below eps: floored, zero grads),
    # and unrelated batches (MMD2 far above eps).
    rng = np.random.default_rng(111)
    base = rng.normal(size=(6, 4))
    cases.append(mmd_case("itra_eps_floor_active", "itra", 111, 6, 6, 4, eps=1e-3, h1=base,
                          h2=base + 0.01 * rng.normal(size=(6, 4)),
                          note="MMD2 << eps = 1e-3: value sqrt(1e-3), zero gradients"))
    cases.append(mmd_case("itra_eps_above_floor", "itra", 112, 6, 6, 4, eps=1e-3, shift=1.0,
                          note="MMD2 >> eps = 1e-3"))

    # --- ITRA-c --------------------------------------------------------------------------------
    cases.append(itra_c_case("itra_c_basic", 201, [0, 1, 2, 3, 0, 1, 2, 3],
                             [3, 2, 1, 0, 0, 1, 2, 3], 4, 4))
    cases.append(itra_c_case("itra_c_class_missing", 202, [0, 0, 1, 1, 2, 2, 3],
                             [0, 1, 1, 2, 2, 0], 3, 4,
                             note="class 3 only in batch 1: its rows get zero gradient"))
    cases.append(itra_c_case("itra_c_singleton_classes", 203, [0, 1, 2, 3, 1],
                             [3, 1, 0, 2, 2, 2], 3, 4,
                             note="classes 0, 3 have one sample per batch"))
    cases.append(itra_c_case("itra_c_no_common_class", 204, [0, 0, 1, 1], [2, 3, 3, 2], 3, 4,
                             note="P empty: value 0, zero gradients, pooled sigma reported"))
    cases.append(itra_c_case("itra_c_all_classes_norm", 205, [0, 1, 1, 2, 0, 2],
                             [0, 2, 1, 1, 2], 3, 5, normalize="all_classes",
                             note="3 of 5 classes present: divided by K = 5"))
    rng = np.random.default_rng(206)
    h1 = rng.normal(size=(6, 3))
    h2 = np.concatenate([h1[:2], rng.normal(size=(4, 3)) + 0.5])
    cases.append(itra_c_case("itra_c_class_at_floor", 206, [0, 0, 1, 1, 2, 2],
                             [0, 0, 1, 2, 2, 1], 3, 3, h1=h1, h2=h2,
                             note="class 0 identical in both batches: contributes sqrt(eps), "
                                  "no gradient"))
    cases.append(itra_c_case("itra_c_fixed_bandwidth", 207, [0, 1, 2, 0, 1, 2],
                             [0, 0, 1, 2, 2], 3, 3, bandwidth={"fixed": 4.0}))
    rng = np.random.default_rng(208)
    y1 = rng.integers(0, 10, size=40)
    y2 = rng.integers(0, 10, size=36)
    cases.append(itra_c_case("itra_c_k10_realistic", 208, y1, y2, 16, 10, shift=0.25,
                             note="K = 10, d = 16, batches 40 and 36"))

    # --- MMD2 matching (the ablation: no root, no floor) -----------------------------------
    cases.append(mmd_case("itra_mmd2_basic", "itra", 501, 8, 8, 5, matching="mmd2"))
    cases.append(mmd_case("mmd_mmd2_fixed_bandwidth", "mmd", 502, 6, 7, 3,
                          bandwidth={"fixed": 2.0}, matching="mmd2"))
    rng = np.random.default_rng(504)
    base = rng.normal(size=(6, 4))
    cases.append(mmd_case("itra_mmd2_below_eps", "itra", 504, 6, 6, 4, eps=1e-3, h1=base,
                          h2=base + 0.05 * rng.normal(size=(6, 4)), matching="mmd2",
                          tolerance={"rel": 1e-4, "abs": 1e-6},
                          note="MMD2 < eps = 1e-3, where the MMD is floored: MMD2 keeps its value "
                               "and its gradient"))
    cases.append(itra_c_case("itra_c_mmd2_basic", 505, [0, 1, 2, 3, 0, 1, 2, 3],
                             [3, 2, 1, 0, 0, 1, 2, 3], 4, 4, matching="mmd2"))
    cases.append(itra_c_case("itra_c_mmd2_class_missing", 506, [0, 0, 1, 1, 2, 2, 3],
                             [0, 1, 1, 2, 2, 0], 3, 4, matching="mmd2",
                             note="class 3 only in batch 1: its rows get zero gradient"))
    cases.append(itra_c_case("itra_c_mmd2_all_classes_norm", 507, [0, 1, 1, 2, 0, 2],
                             [0, 2, 1, 1, 2], 3, 5, normalize="all_classes", matching="mmd2",
                             note="3 of 5 classes present: divided by K = 5"))
    cases.append(itra_c_case("itra_c_mmd2_no_common_class", 508, [0, 0, 1, 1], [2, 3, 3, 2], 3, 4,
                             matching="mmd2", note="P empty: value 0, zero gradients"))

    # --- Center loss ---------------------------------------------------------------------------
    # No ``initialized``: every class is, and the given centers are used as they are.
    cases.append(center_case("center_basic", 301, [0, 1, 2, 0, 1, 2, 0], 4, 3))
    cases.append(center_case("center_absent_classes", 302, [0, 2, 2, 5, 0], 3, 6, alpha=0.3,
                             note="classes 1, 3, 4 absent: centers unchanged"))
    cases.append(center_case("center_class_mean_init", 303, [1, 1, 1, 3, 0, 3], 5, 5,
                             initialized=[False] * 5, zero_centers=True,
                             note="nothing initialised: 0, 1, 3 take their batch means; 2, 4 absent "
                                  "stay zero and uninitialised"))
    cases.append(center_case("center_partial_init", 304, [0, 1, 1, 2, 3, 3, 3, 0], 3, 6,
                             initialized=[True, False, True, False, False, True],
                             note="1, 3 take their batch means, 0, 2 keep theirs; 4 (uninitialised) "
                                  "and 5 absent"))
    cases.append(center_case("center_no_half", 305, [0, 1, 2, 0, 1, 2, 0], 4, 3, halve=False,
                             note="halve = false: the old (1/m) sum, for the ablation"))

    # --- Label smoothing -----------------------------------------------------------------------
    rng = np.random.default_rng(401)
    cases.append(finish({"name": "lsr_smoothing_0", "loss": "lsr",
                         "params": {"num_classes": 5, "smoothing": 0.0},
                         "logits": f32(2 * rng.normal(size=(6, 5))),
                         "targets": [int(v) for v in rng.integers(0, 5, size=6)]},
                        note="plain cross-entropy"))
    rng = np.random.default_rng(402)
    cases.append(finish({"name": "lsr_smoothing_0_1", "loss": "lsr",
                         "params": {"num_classes": 5, "smoothing": 0.1},
                         "logits": f32(2 * rng.normal(size=(6, 5))),
                         "targets": [int(v) for v in rng.integers(0, 5, size=6)]}))
    rng = np.random.default_rng(403)
    cases.append(finish({"name": "lsr_large_logits", "loss": "lsr",
                         "params": {"num_classes": 10, "smoothing": 0.1},
                         "logits": f32(40 * rng.normal(size=(4, 10))),
                         "targets": [int(v) for v in rng.integers(0, 10, size=4)]},
                        note="logits up to ~1e2: needs a stable log-softmax in f32"))
    return cases


# ----------------------------------------------------------------------------------------------
# Output
# ----------------------------------------------------------------------------------------------

SCHEMA_ORDER = ["name", "loss", "params", "h1", "y1", "h2", "y2", "centers", "initialized", "logits",
                "targets", "expected", "tolerance"]
PARAM_ORDER = ["bandwidth", "eps", "matching", "normalize", "num_classes", "alpha", "halve",
               "smoothing"]
EXPECTED_ORDER = ["value", "sigma", "grad_h1", "grad_h2", "grad_logits", "centers_after",
                  "initialized_after"]


def to_json_value(x):
    """numpy scalars/arrays -> plain floats / nested lists of floats."""
    if isinstance(x, np.ndarray):
        return x.astype(np.float64).tolist()
    if isinstance(x, (np.floating, float)):
        return float(x)
    return x


def ordered(d: dict, order: list[str]) -> dict:
    extra = set(d) - set(order)
    assert not extra, f"unexpected keys {extra}"
    return {k: d[k] for k in order if k in d}


def dumps(obj, indent: int = 0) -> str:
    """Deterministic JSON: objects one key per line, matrices one row per line."""
    pad = "  " * indent
    if isinstance(obj, dict):
        if not obj:
            return "{}"
        body = ",\n".join(f"{pad}  {json.dumps(k)}: {dumps(v, indent + 1)}" for k, v in obj.items())
        return "{\n" + body + "\n" + pad + "}"
    if isinstance(obj, list) and obj and isinstance(obj[0], list):
        body = ",\n".join(pad + "  " + json.dumps(row, allow_nan=False) for row in obj)
        return "[\n" + body + "\n" + pad + "]"
    return json.dumps(obj, allow_nan=False)


def fixture(case: dict, expected: dict) -> dict:
    doc = {k: v for k, v in case.items() if not k.startswith("_")}
    doc["params"] = ordered(doc["params"], PARAM_ORDER)
    doc["expected"] = ordered({k: to_json_value(v) for k, v in expected.items()}, EXPECTED_ORDER)
    return ordered(doc, SCHEMA_ORDER)


def main() -> int:
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    cases = build_cases()
    names = [c["name"] for c in cases]
    assert len(set(names)) == len(names), "duplicate case names"
    worst_fd = 0.0
    for case in cases:
        expected = evaluate(case)
        fd = verify(case, expected)
        f32_ratio = f32_check(case, expected)
        doc = fixture(case, expected)
        text = dumps(doc) + "\n"
        assert json.loads(text) == doc, f"{case['name']}: JSON does not round-trip"
        (OUT_DIR / f"{case['name']}.json").write_text(text)
        worst_fd = max([worst_fd, *fd.values()])
        fd_txt = " ".join(f"{k}={v:.1e}" for k, v in fd.items())
        f32_txt = " ".join(f"{k}={v:.1e}" for k, v in f32_ratio.items())
        sigma = f" sigma={float(expected['sigma']):.6g}" if "sigma" in expected else ""
        note = f"  # {case['_note']}" if "_note" in case else ""
        print(f"{case['name']:<28} {case['loss']:<7} value={float(expected['value']):.9g}{sigma}"
              f"  fd_rel[{fd_txt}]  f32/tol[{f32_txt}]{note}")
    stale = sorted(p.name for p in OUT_DIR.glob("*.json") if p.stem not in names)
    if stale:
        print(f"warning: {OUT_DIR} holds fixtures this script does not write: {', '.join(stale)}")
    print(f"{len(cases)} fixtures written to {OUT_DIR}; worst finite-difference rel error "
          f"{worst_fd:.2e} (limit {FD_REL_TOL:.0e})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
