"""Double descent of minimum-norm least squares, the overparameterized regime of monograph §7.2.1.

When the parameters outnumber the equations, least squares has many interpolating solutions and
the meta-learners of :mod:`~innerloop.engine.theory.meta_linear_regression` take the one of
minimum norm. For one linear-regression problem with isotropic Gaussian inputs x ∼ N(0, I_d),
n points, targets y = θᵀx + ε, ε ∼ N(0, σ²), the expected test risk σ² + E‖θ̂ − θ‖² of the
minimum-norm estimate θ̂ = X⁺y is known exactly at every finite (n, d):

* d < n − 1 (under-parameterized): σ² + σ²·d/(n − d − 1)   (E tr (XᵀX)⁻¹ of a Wishart matrix);
* d > n + 1 (over-parameterized):  σ² + ‖θ‖²·(1 − n/d) + σ²·n/(d − n − 1)
  — the part of θ outside the row space of X, a uniformly random n-dimensional subspace, is lost
  (bias), and the noise enters through E tr (XXᵀ)⁻¹ = n/(d − n − 1) (variance);
* |d − n| ≤ 1: infinite (the smallest singular value of X has no finite inverse moment).

The risk peaks at the interpolation threshold d = n and falls again beyond it: the "double
descent" behind the benign overfitting that §7.2.1 asks about for meta-learning.
"""

from __future__ import annotations

import math

from innerloop.engine.errors import ConfigError


def min_norm_risk(dim: int, points: int, signal: float, noise_var: float) -> float:
    """σ² + E‖θ̂ − θ‖² of θ̂ = X⁺y for d = ``dim`` features, n = ``points``, ‖θ‖² = ``signal``
    (see the module docstring); ``inf`` within one of the threshold d = n."""
    for name, value in (("dim", dim), ("points", points)):
        if int(value) != value or value < 1:
            raise ConfigError(f"{name} must be a positive integer, got {value}", "e.g. dim=30 points=20")
    if signal < 0 or not noise_var > 0:
        raise ConfigError(f"need signal >= 0 and noise_var > 0, got {signal} and {noise_var}", "e.g. 1.0 and 0.25")
    if dim < points - 1:
        return noise_var + noise_var * dim / (points - dim - 1)
    if dim > points + 1:
        return noise_var + signal * (1 - points / dim) + noise_var * points / (dim - points - 1)
    return math.inf
