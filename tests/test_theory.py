"""The theory tools of seed 000 §6–9 against closed forms, autograd and direct computation."""

import math

import pytest
import torch

from innerloop import backends
from innerloop.engine.errors import ConfigError
from innerloop.engine.inner import sgd_trajectory
from innerloop.engine.learner import Learner
from innerloop.engine.models import MLP
from innerloop.engine.params import expand_to_tasks, subtract
from innerloop.engine.tasks import Clusters2D, LinearRegression, Sinusoid
from innerloop.engine.theory.constants import estimate_constants, operator_norm
from innerloop.engine.theory.convergence import (
    fmo_meta_gradients,
    fmo_outer_lr,
    meta_smoothness,
    sgd_bound,
    squared_norm_of_mean,
    variance_bound,
)
from innerloop.engine.theory.gradient_variance import batch_mean_variance, per_task_meta_gradients, variance_curve
from innerloop.engine.theory.implicit_prior import (
    implicit_prior_matrix,
    implicit_prior_precision,
    map_step,
    quadratic_model_step,
    small_step_precision,
)
from innerloop.engine.theory.pac_bayes import amit_meir_bound, gaussian_kl, mcallester_bound
from innerloop.engine.theory.pac_bayes_maml import Softening, flatten, gibbs_error, meta_risk, softened_maml_bound

F64 = torch.float64


def cpu64():
    return backends.get("cpu", dtype=F64)


# -- Theorem 2 (eqs. 6.5, 6.6) ----------------------------------------------------------------------------

@pytest.mark.parametrize("curvature,lr,steps", [(2.0, 0.1, 5), (0.3, 0.05, 20), (15.0, 0.1, 4), (7.0, 0.01, 1)])
def test_gd_iterate_is_the_map_estimate_in_1d(curvature, lr, steps):
    theta0, mle = 0.7, -1.3
    theta = theta0
    for _ in range(steps):  # GD on λ/2 (θ − μ)²
        theta -= lr * curvature * (theta - mle)
    precision = float(implicit_prior_precision(torch.tensor([curvature], dtype=F64), lr, steps))
    map_estimate = (curvature * mle + precision * theta0) / (curvature + precision)  # (†)
    assert map_estimate == pytest.approx(theta, rel=1e-12, abs=1e-12)


def test_small_step_limit_of_the_implicit_precision():
    curvature = torch.tensor([0.0, 0.5, 2.0, -1.0], dtype=F64)
    gaps = []
    for lr in (1e-2, 1e-3, 1e-4):
        exact = implicit_prior_precision(curvature, lr, 5)
        assert torch.allclose(exact * 5 * lr, torch.ones_like(exact), atol=30 * lr)  # ≈ 1/(Nα)
        gaps.append(float((exact - small_step_precision(curvature, lr, 5)).abs().max()))
    assert gaps[0] / gaps[1] > 5 and gaps[1] / gaps[2] > 5  # the first-order expansion's error is O(α)
    printed = 1 / (5 * 1e-4) - curvature  # the seed's 1/(Nα) − λ misses (N − 1)λ/(2N) for N > 1 ...
    assert torch.allclose(implicit_prior_precision(curvature, 1e-4, 5) - printed, 0.4 * curvature, atol=1e-3)
    one_step = implicit_prior_precision(curvature, 1e-2, 1)  # ... and is exact for N = 1
    assert torch.allclose(one_step, 1 / 1e-2 - curvature, rtol=1e-12)
    assert float(implicit_prior_precision(torch.tensor([1e-15], dtype=F64), 0.1, 5)) == pytest.approx(2.0)


def test_implicit_prior_refuses_divergent_steps_and_no_steps():
    with pytest.raises(ConfigError, match="diverges"):
        implicit_prior_precision(torch.tensor([25.0]), 0.1, 5)
    with pytest.raises(ConfigError, match="N must be"):
        implicit_prior_precision(torch.tensor([1.0]), 0.1, 0)


def _linear_tasks(tasks=3, dim=4, shots=6):
    family = LinearRegression(shots=shots, queries=2, dim=dim)
    batch = family.sample(tasks, torch.Generator().manual_seed(0)).to(F64, "cpu")
    learner = Learner(MLP(dim, (), 1, bias=False), "mse")
    theta0 = {"layer0.weight": torch.randn(1, dim, generator=torch.Generator().manual_seed(1), dtype=F64)}
    return batch, learner, theta0


def test_multivariate_theorem_2_is_exact_on_linear_regression():
    batch, learner, theta0 = _linear_tasks()
    lr, steps = 0.05, 7
    backend = cpu64()
    start = expand_to_tasks(theta0, batch.num_tasks)
    moved = flatten(subtract(sgd_trajectory(backend, learner, start, batch.support_x, batch.support_y, lr,
                                            steps).final, start))
    _, grad = backend.loss_and_grad(learner, start, batch.support_x, batch.support_y)
    quadratic = flatten(quadratic_model_step(lambda v: backend.hvp(learner, start, batch.support_x, batch.support_y,
                                                                   v), grad, lr, steps))
    for b in range(batch.num_tasks):
        x = batch.support_x[b]
        hessian = 2 * x.T @ x / x.shape[0]  # MSE (1/K)Σ(wᵀx − y)²
        step = map_step(hessian, flatten(grad)[b], implicit_prior_matrix(hessian, lr, steps))
        assert torch.allclose(step, moved[b], rtol=1e-10, atol=1e-12)
        assert torch.allclose(quadratic[b], moved[b], rtol=1e-10, atol=1e-12)


def test_theorem_2_is_local_for_a_nonlinear_model():
    family = Sinusoid(shots=10, queries=1)
    batch = family.sample(8, torch.Generator().manual_seed(2)).to(F64, "cpu")
    model = MLP(1, (16,), 1, activation="tanh")
    learner, backend = Learner(model, "mse"), cpu64()
    start = expand_to_tasks(model.init(torch.Generator().manual_seed(3), dtype=F64), 8)
    _, grad = backend.loss_and_grad(learner, start, batch.support_x, batch.support_y)
    errors = []
    for lr in (4e-3, 1e-3):
        moved = flatten(subtract(sgd_trajectory(backend, learner, start, batch.support_x, batch.support_y, lr,
                                                5).final, start))
        quad = flatten(quadratic_model_step(lambda v: backend.hvp(learner, start, batch.support_x,
                                                                  batch.support_y, v), grad, lr, 5))
        errors.append(float(((moved - quad).norm(dim=1) / moved.norm(dim=1)).mean()))
    assert errors[1] < errors[0] / 2.5  # the relative gap shrinks ∝ α
    assert errors[1] < 0.05


# -- PAC-Bayes (eqs. 7.1, 7.2, §7.5 KL) ---------------------------------------------------------------------

def test_gaussian_kl_matches_torch_distributions():
    g = torch.Generator().manual_seed(4)
    mu_q, mu_p = torch.randn(3, 6, generator=g, dtype=F64), torch.randn(6, generator=g, dtype=F64)
    var_q, var_p = torch.rand(3, 6, generator=g, dtype=F64) + 0.1, torch.rand(6, generator=g, dtype=F64) + 0.1
    D = torch.distributions
    expected = D.kl_divergence(D.Independent(D.Normal(mu_q, var_q.sqrt()), 1),
                               D.Independent(D.Normal(mu_p, var_p.sqrt()), 1))
    assert torch.allclose(gaussian_kl(mu_q, var_q, mu_p, var_p), expected, rtol=1e-12)
    iso = gaussian_kl(mu_q, 0.3, mu_p, 0.7)
    assert torch.allclose(iso, 0.5 * (6 * (0.3 / 0.7 - 1 - math.log(0.3 / 0.7)) + ((mu_q - mu_p) ** 2).sum(1) / 0.7))
    with pytest.raises(ConfigError, match="infinite KL"):
        gaussian_kl(mu_q, 0.0, mu_p, 1.0)


def test_mcallester_bound_value_and_coverage():
    assert mcallester_bound(0.1, 2.0, 100, 0.05) == pytest.approx(0.1 + math.sqrt((2 + math.log(20 / 0.05)) / 200))
    g = torch.Generator().manual_seed(5)
    risk, n, delta = 0.3, 50, 0.1
    trials = (torch.rand(4000, n, generator=g) < risk).double().mean(1)
    violations = sum(risk > mcallester_bound(float(r), 0.0, n, delta) for r in trials)
    assert violations / 4000 <= delta
    with pytest.raises(ConfigError, match=r"\[0, 1\]"):
        mcallester_bound(1.5, 0.0, 10)


def test_amit_meir_terms():
    kls = torch.tensor([[1.0, 4.0, 9.0], [2.0, 3.0, 5.0]], dtype=F64)  # 2 prior draws × 3 tasks
    bound = amit_meir_bound(0.2, 12.0, kls, points=25, delta=0.05)
    across = math.sqrt((12 + math.log(4 * 3 / 0.05)) / (2 * 2))
    within = sum(math.sqrt((k + math.log(4 * 3 * 25 / 0.05)) / 48) for k in kls.flatten().tolist()) / 6
    assert bound.across_task == pytest.approx(across) and bound.within_task == pytest.approx(within)
    assert bound.bound == pytest.approx(0.2 + across + within)
    assert bound.as_dict()["bound"] == pytest.approx(bound.bound)
    with pytest.raises(ConfigError, match="tasks must be"):
        amit_meir_bound(0.2, 1.0, torch.tensor([1.0]), points=25)


def _clusters(tasks=5):
    batch = Clusters2D(shots=4, queries=6, ways=3).sample(tasks, torch.Generator().manual_seed(13)).to(F64, "cpu")
    model = MLP(2, (8,), 3)
    return batch, Learner(model, "cross_entropy"), model.init(torch.Generator().manual_seed(14), dtype=F64), \
        model.init(torch.Generator().manual_seed(15), dtype=F64)


def test_softened_maml_bound_terms_match_a_direct_computation():
    batch, learner, theta0, reference = _clusters()
    lr, steps, prior_var = 0.1, 3, 0.04
    softening = Softening(hyper_std=1e-9, hyperprior_std=0.5, posterior_std=0.2, prior_var=prior_var)
    bound = softened_maml_bound(cpu64(), learner, theta0, reference, batch.support_x, batch.support_y, lr, steps,
                                softening, prior_draws=2, posterior_draws=3,
                                generator=torch.Generator().manual_seed(16))
    D = torch.distributions
    centre, ref = flatten(expand_to_tasks(theta0, 1))[0], flatten(expand_to_tasks(reference, 1))[0]
    hyper = D.kl_divergence(D.Independent(D.Normal(centre, 1e-9 * torch.ones_like(centre)), 1),
                            D.Independent(D.Normal(ref, 0.5 * torch.ones_like(ref)), 1))
    assert bound.hyper_kl == pytest.approx(float(hyper), rel=1e-9)
    kls = []
    for b in range(batch.num_tasks):  # s² = σ_p²: KL = ‖φ_k − θ₀‖²/(2σ_p²), φ_k by an autograd loop
        params = dict(theta0)
        for _ in range(steps):
            leaves = {k: v.detach().requires_grad_() for k, v in params.items()}
            grads = torch.autograd.grad(learner.task_loss(leaves, batch.support_x[b], batch.support_y[b]),
                                        list(leaves.values()))
            params = {k: v.detach() - lr * g for (k, v), g in zip(leaves.items(), grads)}
        kls.append(float(sum(((params[k] - theta0[k]) ** 2).sum() for k in params)) / (2 * prior_var))
    assert bound.mean_task_kl == pytest.approx(sum(kls) / len(kls), rel=1e-6)
    assert 0 <= bound.empirical <= 1 and bound.tasks == 5 and bound.points == 12
    risk = meta_risk(cpu64(), learner, theta0, batch.support_x, batch.support_y, batch.query_x, batch.query_y, lr,
                     steps, softening, prior_draws=2, posterior_draws=3, generator=torch.Generator().manual_seed(17))
    assert risk.shape == (5,) and bool(((risk >= 0) & (risk <= 1)).all())


def test_gibbs_error_of_a_narrow_posterior_is_the_plain_error():
    batch, learner, theta0, _ = _clusters()
    centers = expand_to_tasks(theta0, batch.num_tasks)
    plain = (learner.predict_tasks(centers, batch.query_x).argmax(-1) != batch.query_y).double().mean(1)
    narrow = gibbs_error(learner, centers, 1e-12, batch.query_x, batch.query_y, 2, torch.Generator().manual_seed(18))
    assert torch.equal(narrow, plain)
    wide = gibbs_error(learner, centers, 30.0, batch.query_x, batch.query_y, 200, torch.Generator().manual_seed(19))
    assert float(wide.mean()) == pytest.approx(2 / 3, abs=0.08)  # weights swamped by noise: chance error
    with pytest.raises(ConfigError, match="0-1 error"):
        gibbs_error(learner, centers, 0.1, batch.query_x, batch.query_y.double()[..., None], 1, torch.Generator())


# -- meta-gradient variance (§9.4) --------------------------------------------------------------------------

def test_per_task_meta_gradients_match_an_autograd_unroll():
    batch = Sinusoid(shots=5, queries=5).sample(3, torch.Generator().manual_seed(6)).to(F64, "cpu")
    model = MLP(1, (8,), 1, activation="tanh")
    learner, theta0 = Learner(model, "mse"), model.init(torch.Generator().manual_seed(7), dtype=F64)
    got = per_task_meta_gradients(cpu64(), learner, theta0, batch, 0.05, 3)
    fo = per_task_meta_gradients(cpu64(), learner, theta0, batch, 0.05, 3, first_order=True)
    for b in range(3):
        leaves = {k: v.clone().requires_grad_() for k, v in theta0.items()}
        params = leaves
        for _ in range(3):
            loss = learner.task_loss(params, batch.support_x[b], batch.support_y[b])
            grads = torch.autograd.grad(loss, list(params.values()), create_graph=True)
            params = {k: v - 0.05 * g for (k, v), g in zip(params.items(), grads)}
        query = learner.task_loss(params, batch.query_x[b], batch.query_y[b])
        full = torch.autograd.grad(query, [leaves[k] for k in sorted(leaves)], retain_graph=True)
        first = torch.autograd.grad(query, [params[k] for k in sorted(params)])
        assert torch.allclose(got[b], torch.cat([t.flatten() for t in full]), rtol=1e-10, atol=1e-12)
        assert torch.allclose(fo[b], torch.cat([t.flatten() for t in first]), rtol=1e-10, atol=1e-12)


def test_batch_mean_variance_by_hand_and_one_over_b():
    per_task = torch.tensor([[1.0, 0.0], [3.0, 0.0], [0.0, 2.0], [0.0, 4.0]], dtype=F64)
    means = torch.tensor([[2.0, 0.0], [0.0, 3.0]], dtype=F64)
    assert batch_mean_variance(per_task, 2) == pytest.approx(float(((means - means.mean(0)) ** 2).sum()))
    with pytest.raises(ConfigError, match="at least 2 batches"):
        batch_mean_variance(per_task, 3)
    samples = torch.randn(4000, 5, generator=torch.Generator().manual_seed(8), dtype=F64) * 2.0
    curve = variance_curve(samples, [1, 2, 5, 10, 25, 50])
    assert curve["slope"] == pytest.approx(-1.0, abs=0.15)
    for measured, b in zip(curve["variance"], curve["batch_sizes"]):
        assert measured == pytest.approx(20.0 / b, rel=0.45)  # tr Cov = 5·4


# -- convergence constants (§8) -----------------------------------------------------------------------------

def test_convergence_formulas():
    assert meta_smoothness(4.0, 2.0, 3.0, 0.1) == pytest.approx(1.4 ** 2 * 4 + 0.1 * 2 * 3)
    assert variance_bound(2.0, 3.0, 5.0, 0.1) == pytest.approx(4 + 0.01 * 9 * 25 + 0.01 * 4 * 9)
    lf, gap, v, k = 7.0, 2.0, 0.5, 400
    assert sgd_bound(lf, gap, v, fmo_outer_lr(lf, k), k) == pytest.approx((2 * lf * gap + v) / math.sqrt(k))
    with pytest.raises(ConfigError, match="Lemma 1"):
        meta_smoothness(20.0, 0.0, 1.0, 0.1)
    with pytest.raises(ConfigError, match="β <= 1/L_F"):
        sgd_bound(lf, gap, v, 1.0, k)


def test_fmo_meta_gradient_is_the_one_step_maml_gradient_with_shared_batches():
    batch = Sinusoid(shots=6, queries=6).sample(4, torch.Generator().manual_seed(9)).to(F64, "cpu")
    model = MLP(1, (8,), 1, activation="tanh")
    learner, theta = Learner(model, "mse"), model.init(torch.Generator().manual_seed(10), dtype=F64)
    support, query = (batch.support_x, batch.support_y), (batch.query_x, batch.query_y)
    losses, grads = fmo_meta_gradients(cpu64(), learner, expand_to_tasks(theta, 4), support, support, query, 0.1)
    loss, grad = float(losses.mean()), {k: v.mean(0) for k, v in grads.items()}
    leaves = {k: v.clone().requires_grad_() for k, v in theta.items()}
    total = 0
    for b in range(4):
        inner = learner.task_loss(leaves, batch.support_x[b], batch.support_y[b])
        grads = torch.autograd.grad(inner, list(leaves.values()), create_graph=True)
        adapted = {k: v - 0.1 * g for (k, v), g in zip(leaves.items(), grads)}
        total = total + learner.task_loss(adapted, batch.query_x[b], batch.query_y[b]) / 4
    expected = torch.autograd.grad(total, list(leaves.values()))
    assert loss == pytest.approx(float(total.detach()))
    for k, e in zip(leaves, expected):
        assert torch.allclose(grad[k], e, rtol=1e-10, atol=1e-12)


def test_squared_norm_of_mean_is_unbiased():
    rows = torch.tensor([[1.0, 2.0], [3.0, -1.0], [0.0, 4.0]], dtype=F64)
    pairs = sum(float(rows[i] @ rows[j]) for i in range(3) for j in range(3) if i != j) / 6
    assert squared_norm_of_mean(rows)[0] == pytest.approx(pairs)
    g = torch.Generator().manual_seed(20)
    mean = torch.tensor([0.3, -0.1, 0.2], dtype=F64)  # ‖mean‖² = 0.14, noise variance 3·4 = 12 per row
    estimates = [squared_norm_of_mean(mean + 2 * torch.randn(50, 3, generator=g, dtype=F64))[0] for _ in range(2000)]
    assert sum(estimates) / 2000 == pytest.approx(0.14, abs=0.03)  # ‖row mean‖² would average 0.14 + 12/50


def test_operator_norm_is_the_largest_absolute_eigenvalue():
    matrices = torch.tensor([[[3.0, 1.0], [1.0, -5.0]], [[0.5, 0.0], [0.0, 0.2]]], dtype=F64)
    like = {"w": torch.zeros(2, 2, dtype=F64)}
    norms = operator_norm(lambda v: {"w": torch.einsum("bij,bj->bi", matrices, v["w"])}, like, 100,
                          torch.Generator().manual_seed(11))
    assert torch.allclose(norms, torch.linalg.eigvalsh(matrices).abs().max(1).values, rtol=1e-8)


def test_constants_on_linear_regression_match_direct_computation():
    dim, shots, population = 3, 5, 400
    family = LinearRegression(dim=dim)
    learner = Learner(MLP(dim, (), 1, bias=False), "mse")
    theta = {"layer0.weight": torch.zeros(1, dim, dtype=F64)}
    constants = estimate_constants(cpu64(), learner, theta, family, inner_lr=0.01, tasks=4, shots=shots, repeats=3,
                                   population=population, power_iterations=200,
                                   generator=torch.Generator().manual_seed(12))
    batch = family.sample(4, torch.Generator().manual_seed(12), shots=3 * shots, queries=population).to(F64, "cpu")
    x, y, sx, sy = batch.query_x, batch.query_y, batch.support_x, batch.support_y
    whole_h = 2 * x.transpose(1, 2) @ x / population
    assert constants.lipschitz_gradient == pytest.approx(float(torch.linalg.eigvalsh(whole_h).max()), rel=1e-6)
    assert constants.lipschitz_hessian == pytest.approx(0.0, abs=1e-9)  # a quadratic loss: constant Hessian
    true_grad = -2 * (x.transpose(1, 2) @ y).squeeze(-1) / population  # at w = 0
    sq = torch.stack([((-2 * (sx[:, r * shots:(r + 1) * shots].transpose(1, 2) @ sy[:, r * shots:(r + 1) * shots])
                        .squeeze(-1) / shots) - true_grad).pow(2).sum(1) for r in range(3)]).mean(0)
    assert constants.gradient_std == pytest.approx(float(sq.max().sqrt()), rel=1e-9)
    parts = [sx[:, r * shots:(r + 1) * shots] for r in range(3)]
    hess_sq = torch.stack([torch.linalg.eigvalsh(2 * part.transpose(1, 2) @ part / shots - whole_h).abs().max(1).values
                           ** 2 for part in parts]).mean(0)
    assert constants.hessian_std == pytest.approx(float(hess_sq.max().sqrt()), rel=1e-4)
