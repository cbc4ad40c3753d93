"""Score-function (policy-gradient) surrogates, shared by the learners that cannot differentiate
their environment: the link without a channel model (monograph §7.1.1) and the meta-RL policies
(monograph §7.1.2).

For samples a ~ π_ϕ with advantages A (held constant), the gradient of the expected cost is the
REINFORCE estimate Σ A·∇_ϕ log π_ϕ(a). A surrogate whose *value* is zero and whose *gradient* is
that estimate lets every algorithm of the suite differentiate it as an ordinary loss:

* ``"reinforce"`` — Σ sg(A)·(log π − sg(log π)) (sg: stop-gradient). Its Hessian is
  Σ A·∇² log π: the Hessian MAML-RL (Finn et al., the monograph's [6]) differentiates, which
  leaves out how the inner loop's samples depend on the parameters.
* ``"lvc"`` — Σ sg(A)·(exp(log π − sg(log π)) − 1), the low-variance curvature surrogate (Rothfuss
  et al., ProMP). Same value and gradient; its Hessian is Σ A·(∇² log π + ∇log π ∇log πᵀ), whose
  extra outer-product term is the per-sample part of the dependence the reinforce Hessian misses.
"""

from __future__ import annotations

import torch

from innerloop.engine.errors import unknown_name

ESTIMATORS = ("reinforce", "lvc")


def leave_one_out_advantages(losses: torch.Tensor) -> torch.Tensor:
    """l_i − mean_{j≠i} l_j over the last axis, = K/(K − 1)·(l_i − l̄); the losses themselves for K = 1.

    The baseline of sample i uses only the other samples, so the estimate stays unbiased."""
    count = losses.shape[-1]
    if count == 1:
        return losses
    return (losses - losses.mean(-1, keepdim=True)) * count / (count - 1)


def rewards_to_go(rewards: torch.Tensor, discount: float) -> torch.Tensor:
    """G_t = Σ_{t' ≥ t} γ^{t'−t}·r_{t'} over the last (time) axis."""
    running = torch.zeros_like(rewards[..., 0])
    backwards = []
    for t in range(rewards.shape[-1] - 1, -1, -1):
        running = rewards[..., t] + discount * running
        backwards.append(running)
    return torch.stack(backwards[::-1], dim=-1)


def check_estimator(estimator: str) -> None:
    if estimator not in ESTIMATORS:
        raise unknown_name("estimator", estimator, ESTIMATORS)


def score_surrogate(log_policy: torch.Tensor, advantages: torch.Tensor, estimator: str = "reinforce") -> torch.Tensor:
    """The elementwise surrogate of the module docstring (value 0, gradient A·∇ log π); the
    advantages are detached here."""
    change = log_policy - log_policy.detach()
    if estimator == "lvc":
        change = torch.expm1(change)
    return advantages.detach() * change
