"""Monograph ch. 4 (generalization theory) against brute-force enumeration, Monte Carlo simulation
and generic Gaussian algebra — every check computes its reference independently of the module."""

import itertools
import math

import pytest
import torch

from innerloop.engine.errors import ConfigError, ShapeError
from innerloop.engine.theory import information_bounds as bounds
from innerloop.engine.theory.bernoulli_environment import BernoulliEnvironment
from innerloop.engine.theory.excess_meta_risk import HierarchicalLinearModel
from innerloop.engine.theory.gibbs import free_energy, gibbs_posterior, irm_objective
from innerloop.engine.theory.meta_linear_regression import (
    fit_through_adaptation,
    gd_adaptation,
    meta_test_risks,
    proximal_adaptation,
)
from innerloop.engine.theory.relatedness import (
    environment_relatedness,
    gaussian_mean_js_relatedness,
    gaussian_mean_kl_relatedness,
    unit_gaussian_js,
)

F64 = torch.float64


def small_environment(**changes) -> BernoulliEnvironment:
    settings = dict(task_biases=(0.3, 0.7, 0.9), task_probs=(0.2, 0.5, 0.3), points=5, beta=6.0, meta_beta=12.0,
                    models=11, hypers=6)
    return BernoulliEnvironment(**{**settings, **changes})


# -- Gibbs posterior and IRM (§4.1.2) ---------------------------------------------------------------

def test_gibbs_posterior_minimizes_the_irm_objective_at_the_free_energy():
    g = torch.Generator().manual_seed(0)
    log_prior = torch.log_softmax(torch.randn(7, generator=g, dtype=F64), 0)
    losses = torch.rand(7, generator=g, dtype=F64)
    gibbs = gibbs_posterior(log_prior, losses, 3.0)
    best = irm_objective(gibbs, log_prior, losses, 3.0)
    assert float(best) == pytest.approx(float(free_energy(log_prior, losses, 3.0)), abs=1e-12)
    others = torch.distributions.Dirichlet(torch.ones(7, dtype=F64)).sample((500,))
    assert bool((irm_objective(others, log_prior, losses, 3.0) > best).all())


def test_gibbs_posterior_with_the_averaged_log_loss_at_beta_n_is_bayes():
    """§4.1.2: with the log-loss the Gibbs posterior is the Bayesian posterior (β = N for the mean loss)."""
    biases = torch.tensor([0.2, 0.5, 0.8], dtype=F64)
    prior = torch.tensor([0.5, 0.3, 0.2], dtype=F64)
    data = torch.tensor([1, 1, 0, 1], dtype=F64)
    likelihood = torch.prod(biases[:, None] ** data * (1 - biases[:, None]) ** (1 - data), 1)
    bayes = prior * likelihood / (prior * likelihood).sum()
    mean_log_loss = -(data * torch.log(biases[:, None]) + (1 - data) * torch.log1p(-biases[:, None])).mean(1)
    assert torch.allclose(gibbs_posterior(torch.log(prior), mean_log_loss, 4.0), bayes, atol=1e-14)


def test_gibbs_rejects_bad_temperature_and_shapes():
    with pytest.raises(ConfigError, match="β must be > 0"):
        gibbs_posterior(torch.zeros(3), torch.zeros(3), 0.0)
    with pytest.raises(ShapeError, match="do not broadcast"):
        gibbs_posterior(torch.zeros(3), torch.zeros(4), 1.0)


# -- single-task bounds (§4.1) ------------------------------------------------------------------------

def _posterior_of_sequence(env: BernoulliEnvironment, sequence: torch.Tensor, theta: float) -> torch.Tensor:
    """The Gibbs posterior from the raw sequence, by its defining formula."""
    phi = torch.linspace(0, 1, env.models, dtype=F64)
    loss = ((sequence[:, None] - phi) ** 2).mean(0)
    weights = torch.exp(-(phi - theta) ** 2 / (2 * env.prior_width ** 2)) * torch.exp(-env.beta * loss)
    return weights / weights.sum(), loss


def test_single_task_error_and_information_match_enumeration_of_all_sequences():
    env = small_environment()
    result = env.single_task()
    phi = torch.linspace(0, 1, env.models, dtype=F64)
    thetas = torch.linspace(0, 1, env.hypers, dtype=F64)
    for t, tau in enumerate(env.task_biases):
        pop = tau * (1 - phi) ** 2 + (1 - tau) * phi ** 2
        for h in (0, 3, 5):
            probs, posteriors, gaps = [], [], []
            for bits in itertools.product((0.0, 1.0), repeat=env.points):
                seq = torch.tensor(bits, dtype=F64)
                posterior, loss = _posterior_of_sequence(env, seq, float(thetas[h]))
                probs.append(float(torch.prod(tau ** seq * (1 - tau) ** (1 - seq))))
                posteriors.append(posterior)
                gaps.append(float(posterior @ (pop - loss)))
            probs, posteriors = torch.tensor(probs, dtype=F64), torch.stack(posteriors)
            marginal = probs @ posteriors
            information = float((probs * (posteriors * torch.log(posteriors / marginal)).sum(1)).sum())
            assert float(result["gen_error"][t, h]) == pytest.approx(float(probs @ torch.tensor(gaps, dtype=F64)),
                                                                     abs=1e-12)
            assert float(result["information"][t, h]) == pytest.approx(information, abs=1e-12)


def test_single_task_bounds_hold_exactly():
    for beta, points in ((2.0, 3), (30.0, 4), (8.0, 20)):
        env = small_environment(beta=beta, points=points)
        r = env.single_task(delta=0.1)
        assert bool((r["gen_error"].abs() <= r["xu_raginsky"] + 1e-12).all()), "Theorem 4.1 (eq. 4.7)"
        assert bool((r["population_loss"] <= r["irm_bound"] + 1e-12).all()), "eq. 4.9"
        assert bool((r["pac_bayes_coverage"] >= 0.9).all()), "Theorem 4.2 (eq. 4.12) at δ = 0.1"


# -- meta-generalization (§4.2–4.3) ------------------------------------------------------------------

def test_histogram_enumeration_matches_ordered_tuples():
    env, tasks = small_environment(), 3
    exact = env.meta_generalization(tasks)
    meta_loss, train_loss = env.task_meta_loss, env.task_training_loss
    population = env.task_population_loss @ env.probs
    gen, joint = 0.0, []
    for counts in itertools.product(range(env.points + 1), repeat=tasks):
        prob = float(torch.prod(env.count_marginal[list(counts)]))
        scores = -env.meta_beta * meta_loss[:, list(counts)].mean(1)
        meta = torch.exp(scores - scores.max()) / torch.exp(scores - scores.max()).sum()
        gen += prob * float(meta @ (population - train_loss[:, list(counts)].mean(1)))
        joint.append((prob, meta))
    marginal = sum(p * m for p, m in joint)
    information = sum(p * float((m * torch.log(m / marginal)).sum()) for p, m in joint)
    assert exact["gen_error"] == pytest.approx(gen, abs=1e-12)
    assert exact["environment_information"] == pytest.approx(information, abs=1e-12)


def test_meta_generalization_error_matches_monte_carlo_simulation():
    """The whole pipeline sampled: tasks, Bernoulli data, θ from the meta-learner, ϕ from the base
    learner on a fresh task, with every posterior computed from its formula on the raw data."""
    env, tasks, samples = small_environment(), 2, 40000
    g = torch.Generator().manual_seed(1)
    phi = torch.linspace(0, 1, env.models, dtype=F64)
    thetas = torch.linspace(0, 1, env.hypers, dtype=F64)
    biases, probs = torch.tensor(env.task_biases, dtype=F64), torch.tensor(env.task_probs, dtype=F64)
    log_prior = -(phi - thetas[:, None]) ** 2 / (2 * env.prior_width ** 2)
    log_prior = log_prior - torch.logsumexp(log_prior, 1, keepdim=True)

    def posterior_and_loss(data):  # data [S, N] -> p(ϕ|D, θ) [S, H, M], L_D(ϕ) [S, M]
        loss = ((data[..., None] - phi) ** 2).mean(-2)
        return torch.softmax(log_prior - env.beta * loss[:, None], -1), loss

    def draw_data(count):
        tau = biases[torch.multinomial(probs, count, replacement=True, generator=g)]
        return (torch.rand(count, env.points, generator=g, dtype=F64) < tau[:, None]).to(F64), tau

    meta_loss = torch.zeros(samples, env.hypers, dtype=F64)
    train_loss = torch.zeros(samples, env.hypers, dtype=F64)
    for _ in range(tasks):
        data, _ = draw_data(samples)
        post, loss = posterior_and_loss(data)
        expected = (post * loss[:, None]).sum(-1)
        kl = (post * (torch.log(post) - log_prior)).sum(-1)
        meta_loss += (expected + kl / env.beta) / tasks
        train_loss += expected / tasks
    meta = torch.softmax(-env.meta_beta * meta_loss, -1)
    theta = torch.multinomial(meta, 1, generator=g)[:, 0]
    test_data, tau = draw_data(samples)
    post, _ = posterior_and_loss(test_data)
    chosen = torch.multinomial(post[torch.arange(samples), theta], 1, generator=g)[:, 0]
    gaps = tau * (1 - phi[chosen]) ** 2 + (1 - tau) * phi[chosen] ** 2 - train_loss[torch.arange(samples), theta]
    exact = env.meta_generalization(tasks)["gen_error"]
    assert abs(float(gaps.mean()) - exact) < 4 * float(gaps.std()) / math.sqrt(samples)


@pytest.mark.parametrize("changes", [{}, {"points": 2, "beta": 40.0, "meta_beta": 60.0},
                                     {"task_biases": (0.05, 0.95), "task_probs": (0.5, 0.5), "meta_beta": 100.0}])
def test_meta_bounds_hold_term_by_term(changes):
    env = small_environment(**changes)
    for tasks in (1, 2, 6):
        r = env.meta_generalization(tasks)
        assert abs(r["gen_error"]) <= r["bound"] + 1e-12, "Theorem 4.3 (eq. 4.24)"
        assert abs(r["within_task_error"]) <= r["within_task"] + 1e-12
        assert abs(r["environment_error"]) <= r["environment"] + 1e-12
    for tasks in (1, 2):
        r = env.task_similarity(tasks)
        assert r["avg_abs_gen_error"] <= r["bound"] + 1e-12, "Theorem 4.4 (eq. 4.30)"


def test_task_similarity_at_one_task_matches_direct_sum():
    env = small_environment()
    meta = env.meta_learner(env.task_meta_loss.T)  # [k, H]
    direct = 0.0
    for t, p_t in enumerate(env.task_probs):
        weights = env.count_given_task[t]
        for t2, p_t2 in enumerate(env.task_probs):
            inner = sum(float(weights[k] * meta[k] @ (env.task_population_loss[:, t2] - env.task_training_loss[:, k]))
                        for k in range(env.points + 1))
            direct += p_t * p_t2 * abs(inner)
    assert env.task_similarity(1)["avg_abs_gen_error"] == pytest.approx(direct, abs=1e-12)


def test_environment_error_shrinks_with_more_tasks():
    env = small_environment()
    errors = [env.meta_generalization(k)["environment_error"] for k in (1, 4, 16)]
    informations = [env.meta_generalization(k)["environment_information"] for k in (1, 4, 16)]
    assert errors[0] > errors[1] > errors[2] > 0
    assert informations[0] > informations[1] > informations[2] > 0


def test_bernoulli_environment_rejects_bad_settings():
    with pytest.raises(ConfigError, match="strictly inside"):
        small_environment(task_biases=(0.0, 0.5, 0.9))
    with pytest.raises(ConfigError, match="sum to 1"):
        small_environment(task_probs=(0.2, 0.2, 0.2))
    with pytest.raises(ConfigError, match="enumeration limit"):
        small_environment(points=30).meta_generalization(40)
    with pytest.raises(ConfigError, match="K must be an integer"):
        small_environment().meta_generalization(0)


# -- task relatedness (§4.3.2) -----------------------------------------------------------------------

def test_bernoulli_relatedness_matches_full_sequence_divergences():
    env = small_environment(points=4)
    sequences = torch.tensor(list(itertools.product((0.0, 1.0), repeat=4)), dtype=F64)
    dists = torch.stack([torch.prod(t ** sequences * (1 - t) ** (1 - sequences), 1) for t in env.task_biases])
    kl = js = 0.0
    for i, p_i in enumerate(env.task_probs):
        for j, p_j in enumerate(env.task_probs):
            p, q = dists[i], dists[j]
            m = (p + q) / 2
            kl += p_i * p_j * float((p * torch.log(p / q)).sum())
            js += p_i * p_j * float(0.5 * (p * torch.log(p / m)).sum() + 0.5 * (q * torch.log(q / m)).sum())
    assert env.relatedness("kl") == pytest.approx(kl, abs=1e-12)
    assert env.relatedness("js") == pytest.approx(js, abs=1e-12)
    bern = sum(p_i * p_j * 4 * (a * math.log(a / b) + (1 - a) * math.log((1 - a) / (1 - b)))
               for (a, p_i), (b, p_j) in itertools.product(zip(env.task_biases, env.task_probs), repeat=2))
    assert env.relatedness("kl") == pytest.approx(bern, abs=1e-12), "KL tensorizes: N·KL(Bern ‖ Bern)"


def test_example_4_1_kl_and_js_against_monte_carlo():
    points, task_var, data_var, samples = 3, 0.5, 2.0, 200000
    g = torch.Generator().manual_seed(2)
    tau = math.sqrt(task_var) * torch.randn(samples, 2, generator=g, dtype=F64)
    kl = points * (tau[:, 0] - tau[:, 1]) ** 2 / (2 * data_var)
    assert gaussian_mean_kl_relatedness(points, task_var, data_var) == pytest.approx(float(kl.mean()), rel=0.02)
    data = tau[:, :1] + math.sqrt(data_var) * torch.randn(samples, points, generator=g, dtype=F64)
    log_p = -((data - tau[:, :1]) ** 2).sum(1) / (2 * data_var)
    log_q = -((data - tau[:, 1:]) ** 2).sum(1) / (2 * data_var)
    js_samples = math.log(2) + log_p - torch.logaddexp(log_p, log_q)  # E_P[log P/M]; symmetric in P, Q
    estimate, error = float(js_samples.mean()), float(js_samples.std()) / math.sqrt(samples)
    assert abs(gaussian_mean_js_relatedness(points, task_var, data_var) - estimate) < 4 * error


def test_unit_gaussian_js_limits_and_growth():
    d = torch.tensor([0.0, 1e-3, 1.0, 3.0, 16.0], dtype=F64)
    js = unit_gaussian_js(d)
    assert float(js[0]) == pytest.approx(0.0, abs=1e-10)
    assert float(js[1]) == pytest.approx(1e-6 / 8, rel=1e-3), "JS ≈ d²/8 for small d (Fisher information)"
    assert float(js[-1]) == pytest.approx(math.log(2), abs=1e-9)
    assert bool((js[1:] > js[:-1]).all())
    saturating = [gaussian_mean_js_relatedness(n, 0.5, 2.0) for n in (1, 10, 100, 1000)]
    assert all(a < b < math.log(2) for a, b in zip(saturating, saturating[1:]))


def test_relatedness_rejects_bad_input():
    with pytest.raises(ConfigError, match="unknown divergence"):
        environment_relatedness(torch.ones(2, 3) / 3, torch.ones(2) / 2, "tv")
    with pytest.raises(ShapeError):
        environment_relatedness(torch.ones(2, 3) / 3, torch.ones(3) / 3)
    with pytest.raises(ConfigError, match="variances must be > 0"):
        gaussian_mean_kl_relatedness(3, 0.0, 1.0)


# -- minimum excess meta-risk (§4.5) -----------------------------------------------------------------

def _joint_covariance(model: HierarchicalLinearModel, designs: torch.Tensor):
    """Covariance of (ϕ_T, y_1, ..., y_K, y_T) under eq. 4.36 for designs [K + 1, N, d], built entry by
    entry from the generative model (θ shared, ϕ_k independent around it)."""
    tasks, points, dim = designs.shape
    blocks = [[None] * tasks for _ in range(tasks)]
    for i in range(tasks):
        for j in range(tasks):
            weight_cov = model.hyper_var + (model.task_var if i == j else 0.0)
            blocks[i][j] = weight_cov * designs[i] @ designs[j].T + (model.noise_var * torch.eye(points, dtype=F64)
                                                                     if i == j else 0)
    targets = torch.cat([torch.cat(row, 1) for row in blocks], 0)
    cross = torch.cat([(model.hyper_var + (model.task_var if i == tasks - 1 else 0.0)) * designs[i].T
                       for i in range(tasks)], 1)  # Cov(ϕ_T, y)
    return targets, cross


def test_test_task_posterior_matches_generic_gaussian_conditioning():
    model = HierarchicalLinearModel(dim=2, hyper_var=1.5, task_var=0.3, noise_var=0.4)
    g = torch.Generator().manual_seed(3)
    sample = model.sample(1, tasks=2, points=3, generator=g)
    designs = torch.cat([sample["meta_designs"][0], sample["test_design"][0][None]], 0)
    targets = torch.cat([sample["meta_targets"][0].flatten(), sample["test_targets"][0]])
    target_cov, cross = _joint_covariance(model, designs)
    prior_cov = (model.hyper_var + model.task_var) * torch.eye(2, dtype=F64)
    expected_cov = prior_cov - cross @ torch.linalg.solve(target_cov, cross.T)
    expected_mean = cross @ torch.linalg.solve(target_cov, targets)
    cov, mean = model.test_task_posterior(sample["meta_designs"][0], sample["test_design"][0],
                                          sample["meta_targets"][0], sample["test_targets"][0])
    assert torch.allclose(cov, expected_cov, atol=1e-12)
    assert torch.allclose(mean, expected_mean, atol=1e-12)
    # I(θ; D_{1:K}) = h(y_{1:K}) − h(y_{1:K} | θ), both Gaussian given the designs
    meta = designs[:-1]
    meta_cov, _ = _joint_covariance(model, torch.cat([meta, meta[:1]], 0))
    marginal = meta_cov[: 2 * 3, : 2 * 3]
    given_theta = torch.block_diag(*[model.task_var * x @ x.T + model.noise_var * torch.eye(3, dtype=F64)
                                     for x in meta])
    information = 0.5 * (torch.logdet(marginal) - torch.logdet(given_theta))
    assert float(model.environment_information(meta)) == pytest.approx(float(information), abs=1e-12)


def test_predictive_log_loss_matches_the_closed_form_entropy():
    """H(Y|X, D) (eq. 4.38) estimated by the log-loss on sampled targets equals its closed form."""
    model = HierarchicalLinearModel(dim=3)
    g = torch.Generator().manual_seed(4)
    draws, tasks, points = 20000, 3, 4
    sample = model.sample(draws, tasks, points, g)
    x = torch.randn(draws, 1, 3, generator=g, dtype=F64)
    y = (x @ sample["phi"][..., None])[..., 0] + math.sqrt(model.noise_var) * torch.randn(draws, 1, generator=g,
                                                                                          dtype=F64)
    mean, variance = model.predictive(sample["meta_designs"], sample["meta_targets"], sample["test_design"],
                                      sample["test_targets"], x)
    log_loss = 0.5 * torch.log(2 * math.pi * variance) + (y - mean) ** 2 / (2 * variance)
    entropy = 0.5 * torch.log(2 * math.pi * math.e * variance)
    difference = log_loss - entropy
    assert abs(float(difference.mean())) < 4 * float(difference.std()) / math.sqrt(draws)


def test_excess_meta_risk_is_bounded_and_falls_with_tasks_and_points():
    model = HierarchicalLinearModel()
    results = {(k, n): model.excess_meta_risk(k, n, draws=400) for k in (1, 8) for n in (2, 10)}
    for r in results.values():
        assert r["memr"]["mean"] <= r["bound"], "eq. 4.45"
        assert r["predictive_entropy"] == pytest.approx(r["aleatoric_entropy"] + r["memr"]["mean"])
    assert results[(8, 2)]["memr"]["mean"] < results[(1, 2)]["memr"]["mean"]
    assert results[(1, 10)]["memr"]["mean"] < results[(1, 2)]["memr"]["mean"]


def test_bound_formulas_and_their_errors():
    assert bounds.xu_raginsky_bound(0.5, 10) == pytest.approx(math.sqrt(2 * 0.25 * 0.5 / 10))
    assert bounds.pac_bayes_bound(0.3, 4.0, 10, 0.05) == pytest.approx(0.3 + math.log(20) / 4 + 4 * 0.25 / 20)
    assert bounds.excess_meta_risk_bound(2.0, 4, 1.0, 5).bound == pytest.approx(2 / 20 + 1 / 5)
    with pytest.raises(ConfigError, match="δ must lie"):
        bounds.pac_bayes_bound(0.3, 4.0, 10, 1.5)
    with pytest.raises(ConfigError, match=">= 0"):
        bounds.xu_raginsky_bound(-1.0, 10)
    with pytest.raises(ConfigError, match="one mutual information per task"):
        bounds.meta_information_bound(0.1, 3, [0.1], [0.5, 0.5], 10)
    with pytest.raises(ConfigError, match="must be > 0"):
        HierarchicalLinearModel(noise_var=0.0)


# -- meta linear regression (§4.6) ---------------------------------------------------------------------

def test_affine_base_learners_match_their_definitions():
    g = torch.Generator().manual_seed(5)
    x, y = torch.randn(6, 3, generator=g, dtype=F64), torch.randn(6, generator=g, dtype=F64)
    theta = torch.randn(3, generator=g, dtype=F64)
    phi = theta.clone().requires_grad_(True)
    for _ in range(3):  # plain GD on (1/|S|)‖y − Xϕ‖² by autograd
        (grad,) = torch.autograd.grad(((y - x @ phi) ** 2).mean(), phi)
        phi = (phi - 0.07 * grad).detach().requires_grad_(True)
    matrix, offset = gd_adaptation(x, y, 0.07, 3)
    assert torch.allclose(matrix @ theta + offset, phi.detach(), atol=1e-13)
    matrix, offset = proximal_adaptation(x, y, 0.8)
    solution = (matrix @ theta + offset).requires_grad_(True)
    objective = ((y - x @ solution) ** 2).mean() + 0.4 * ((solution - theta) ** 2).sum()
    (grad,) = torch.autograd.grad(objective, solution)
    assert float(grad.abs().max()) < 1e-12, "eq. 2.8's minimizer has zero gradient"


def test_fit_through_adaptation_zeroes_the_meta_gradient():
    g = torch.Generator().manual_seed(6)
    x, y = torch.randn(5, 8, 3, generator=g, dtype=F64), torch.randn(5, 8, generator=g, dtype=F64)
    adaptation = gd_adaptation(x[:, :4], y[:, :4], 0.1, 2)
    theta = fit_through_adaptation(adaptation, x[:, 4:], y[:, 4:]).requires_grad_(True)
    adapted = (adaptation[0] @ theta) + adaptation[1]  # [K, d]
    query_loss = ((y[:, 4:] - (x[:, 4:] @ adapted[..., None])[..., 0]) ** 2).sum()
    (grad,) = torch.autograd.grad(query_loss, theta)
    assert float(grad.abs().max()) < 1e-10


def test_imaml_at_the_bayes_strength_is_the_genie_posterior_mean():
    """With θ = θ* and λ = 2σ²/(N·s_ϕ²), eq. 2.8's solution is the posterior mean given θ* (§4.6)."""
    model = HierarchicalLinearModel(dim=3)
    data = model.sample(50, tasks=1, points=7, generator=torch.Generator().manual_seed(7))
    matrix, offset = proximal_adaptation(data["test_design"], data["test_targets"],
                                         2 * model.noise_var / (7 * model.task_var))
    imaml = (matrix @ data["theta"][..., None])[..., 0] + offset
    x, y = data["test_design"], data["test_targets"]
    precision = torch.eye(3, dtype=F64) / model.task_var + x.transpose(1, 2) @ x / model.noise_var
    posterior = torch.linalg.solve(precision, data["theta"] / model.task_var
                                   + (x.transpose(1, 2) @ y[..., None])[..., 0] / model.noise_var)
    assert torch.allclose(imaml, posterior, atol=1e-12)


def test_bayes_has_the_lowest_meta_risk_and_maml_is_consistent():
    model = HierarchicalLinearModel()
    risks = meta_test_risks(model, 8, 6, 3000, torch.Generator().manual_seed(8), inner_lrs=(0.1, 0.3),
                            strengths=(0.3, 1.0))
    bayes, oracle = risks["bayes"][None], risks["oracle"][None]
    for method, rows in risks.items():
        for risk in rows.values():
            if method not in ("bayes", "oracle"):
                gap = risk - bayes
                assert float(gap.mean()) > 2 * float(gap.std()) / math.sqrt(len(gap)), method
    gap = bayes - oracle
    assert float(gap.mean()) > 0
    many = model.sample(1, tasks=4000, points=20, generator=torch.Generator().manual_seed(9))
    x, y = many["meta_designs"][0], many["meta_targets"][0]
    theta = fit_through_adaptation(gd_adaptation(x[:, :10], y[:, :10], 0.2, 1), x[:, 10:], y[:, 10:])
    assert float((theta - many["theta"][0]).norm()) < 0.05, "MAML's θ̂ → θ* as K grows"


def test_meta_test_risks_rejects_bad_input():
    model = HierarchicalLinearModel()
    with pytest.raises(ConfigError, match="points must be an integer >= 2"):
        meta_test_risks(model, 3, 1, 10, torch.Generator())
    with pytest.raises(ConfigError, match="at least one inner step size"):
        meta_test_risks(model, 3, 4, 10, torch.Generator(), inner_lrs=())
    with pytest.raises(ConfigError, match="λ must be > 0"):
        proximal_adaptation(torch.zeros(2, 3), torch.zeros(2), 0.0)


@pytest.mark.parametrize("dim", [6, 45])
def test_min_norm_risk_matches_monte_carlo_on_both_sides_of_the_threshold(dim):
    """Exact finite-sample risk of X⁺y (Wishart inverse moments; the random row space for the bias)
    against least squares on 20 000 draws, away from the threshold where the tails are light."""
    from innerloop.engine.theory.double_descent import min_norm_risk
    from innerloop.engine.theory.meta_linear_regression import least_squares

    generator, draws, points = torch.Generator().manual_seed(dim), 20_000, 20
    theta = torch.randn(draws, dim, generator=generator, dtype=torch.float64)
    theta = theta / theta.norm(dim=1, keepdim=True) * 2.0  # ‖θ‖² = 4
    design = torch.randn(draws, points, dim, generator=generator, dtype=torch.float64)
    targets = (design @ theta[..., None])[..., 0] + 0.5 * torch.randn(draws, points, generator=generator,
                                                                      dtype=torch.float64)
    risk = 0.25 + ((least_squares(design, targets) - theta) ** 2).sum(-1)
    error = float(risk.std()) / draws ** 0.5
    assert abs(float(risk.mean()) - min_norm_risk(dim, points, 4.0, 0.25)) < 4 * error


def test_min_norm_risk_closed_form_and_errors():
    from innerloop.engine.theory.double_descent import min_norm_risk

    assert min_norm_risk(5, 20, 1.0, 0.25) == pytest.approx(0.25 * (1 + 5 / 14))
    assert min_norm_risk(40, 20, 1.0, 0.25) == pytest.approx(0.25 + 0.5 + 0.25 * 20 / 19)
    assert all(min_norm_risk(d, 20, 1.0, 0.25) == math.inf for d in (19, 20, 21))
    assert min_norm_risk(10_000, 20, 1.0, 0.25) == pytest.approx(1.25, abs=1e-2)  # θ̂ → 0: the null risk ‖θ‖² + σ²
    with pytest.raises(ConfigError, match="positive integer"):
        min_norm_risk(0, 20, 1.0, 0.25)
    with pytest.raises(ConfigError, match="noise_var"):
        min_norm_risk(5, 20, 1.0, 0.0)


def test_double_descent_part_peaks_at_each_learners_interpolation_threshold():
    from innerloop.engine.theory_generalization import double_descent

    document = double_descent(seed=0)
    meta = document["meta"]
    assert meta["peaks"]["maml"] == meta["peaks"]["imaml"] == meta["thresholds"]["maml"] == 20  # K·N/2 query rows
    assert meta["peaks"]["joint"] == meta["peaks"]["joint-gd"] == meta["thresholds"]["joint"] == 40  # K·N rows
    bayes = [row["bayes"]["median"] for row in meta["rows"]]
    assert all(b <= a * 1.1 for a, b in zip(bayes[1:], bayes))  # no peak: non-decreasing up to noise
    for row in document["single"]["rows"]:
        if abs(row["dim"] - document["single"]["points"]) > 5:
            assert abs(row["monte_carlo"]["mean"] - row["exact"]) < 3 * row["monte_carlo"]["ci95"]
    spiked = document["spiked"]["meta"]  # benign: far past both thresholds, back to the small-d risk
    assert spiked[-1]["dim"] >= 1000
    for method in ("joint-gd", "maml"):
        assert spiked[-1][method]["median"] < 1.15 * spiked[0][method]["median"]


def test_least_squares_is_the_pseudo_inverse_for_tall_and_wide_rows():
    from innerloop.engine.theory.meta_linear_regression import least_squares

    generator = torch.Generator().manual_seed(8)
    for rows, dim in ((30, 10), (10, 30)):
        design = torch.randn(4, rows, dim, generator=generator, dtype=torch.float64)
        targets = torch.randn(4, rows, generator=generator, dtype=torch.float64)
        expected = (torch.linalg.pinv(design) @ targets[..., None])[..., 0]
        assert torch.allclose(least_squares(design, targets), expected, atol=1e-12)


def test_matrix_free_one_step_maml_equals_the_affine_base_learner_fit():
    from innerloop.engine.theory.double_descent import one_step_adapt, one_step_maml_rows
    from innerloop.engine.theory.meta_linear_regression import fit_through_adaptation, gd_adaptation, least_squares

    generator = torch.Generator().manual_seed(9)
    xs, xq = (torch.randn(3, 5, 4, 7, generator=generator, dtype=torch.float64) for _ in range(2))
    ys, yq = (torch.randn(3, 5, 4, generator=generator, dtype=torch.float64) for _ in range(2))
    expected = fit_through_adaptation(gd_adaptation(xs, ys, 0.1, 1), xq, yq)
    assert torch.allclose(least_squares(*one_step_maml_rows(xs, ys, xq, yq, 0.1)), expected, atol=1e-12)
    matrix, offset = gd_adaptation(xs[:, 0], ys[:, 0], 0.1, 1)
    adapted = (matrix @ expected[..., None])[..., 0] + offset
    assert torch.allclose(one_step_adapt(expected, xs[:, 0], ys[:, 0], 0.1), adapted, atol=1e-12)


def test_spiked_inputs_make_interpolation_benign():
    """With 3 strong directions and a weak tail of total variance 1, the min-norm interpolator at
    d = 2000 ≫ n = 20 is as good as least squares in the 3 strong directions alone; at d = n it is not."""
    from innerloop.engine.theory.double_descent import spiked_meta_risks, spiked_variances

    variances = spiked_variances(53, 3, 1.0)
    assert torch.equal(variances[:3], torch.ones(3, dtype=torch.float64))
    assert float(variances[3:].sum()) == pytest.approx(1.0)
    with pytest.raises(ConfigError, match="dim >= strong"):
        spiked_variances(2, 3, 1.0)

    def median(dim: int) -> float:
        risks = spiked_meta_risks(dim, 3, 1.0, 1, 20, 300, torch.Generator().manual_seed(dim), spread=0.0)
        return float(risks["joint"].median())

    well_specified, wide = median(3), median(2000)
    assert wide < 1.1 * well_specified and median(20) > 5 * well_specified


def test_misspecified_posterior_is_gaussian_conditioning_and_matches_the_model():
    from innerloop.engine.theory.misspecification import posterior_map

    truth, assumed = HierarchicalLinearModel(dim=3), HierarchicalLinearModel(dim=3, task_var=0.02, noise_var=0.5)
    data = truth.sample(4, 3, 5, torch.Generator().manual_seed(10))
    designs = torch.cat([data["meta_designs"], data["test_design"][:, None]], dim=1)
    targets = torch.cat([data["meta_targets"], data["test_targets"][:, None]], dim=1).flatten(1)
    gain, covariance = posterior_map(assumed, designs)
    expected_cov, expected_mean = assumed.test_task_posterior(data["meta_designs"], data["test_design"],
                                                              data["meta_targets"], data["test_targets"])
    assert torch.allclose(covariance, expected_cov, atol=1e-12)
    assert torch.allclose((gain @ targets[..., None])[..., 0], expected_mean, atol=1e-12)


def test_expected_log_loss_is_exact_and_the_penalty_a_divergence():
    """Well specified: the excess over the aleatoric floor is the MEMR and the penalty is 0. Misspecified:
    the closed-form expected log-loss matches 100 000 sampled meta-datasets; the penalty is >= 0."""
    from innerloop.engine.theory.misspecification import expected_log_losses, posterior_map

    generator = torch.Generator().manual_seed(11)
    truth, assumed = HierarchicalLinearModel(dim=3), HierarchicalLinearModel(dim=3, hyper_var=3.0, task_var=0.01)
    designs = torch.randn(6, 4, 5, 3, generator=generator, dtype=torch.float64)
    inputs = torch.randn(6, 7, 3, generator=generator, dtype=torch.float64)
    same = expected_log_losses(truth, truth, designs, inputs)
    assert torch.allclose(same["actual"] - same["aleatoric"], same["true_memr"], atol=1e-12)
    assert torch.allclose(same["actual"], same["bayes"], atol=1e-12)
    losses = expected_log_losses(truth, assumed, designs, inputs)
    assert float((losses["actual"] - losses["bayes"]).min()) > 0

    draws, design, x = 100_000, designs[:1], inputs[:1, :1]
    theta = torch.randn(draws, 3, generator=generator, dtype=torch.float64)
    phis = theta[:, None] + math.sqrt(truth.task_var) * torch.randn(draws, 4, 3, generator=generator,
                                                                    dtype=torch.float64)
    noise = math.sqrt(truth.noise_var)
    targets = (design @ phis[..., None])[..., 0] + noise * torch.randn(draws, 4, 5, generator=generator,
                                                                       dtype=torch.float64)
    y = (phis[:, -1] @ x[0, 0]) + noise * torch.randn(draws, generator=generator, dtype=torch.float64)
    gain, covariance = posterior_map(assumed, design)
    mean = (targets.flatten(1) @ gain[0].T) @ x[0, 0]
    variance = assumed.noise_var + float(x[0, 0] @ covariance[0] @ x[0, 0])
    sampled = 0.5 * math.log(2 * math.pi * variance) + (y - mean) ** 2 / (2 * variance)
    exact = float(expected_log_losses(truth, assumed, design, x)["actual"])
    assert abs(float(sampled.mean()) - exact) < 4 * float(sampled.std()) / draws ** 0.5


def test_misspecification_part_separates_reported_and_actual_uncertainty():
    from innerloop.engine.theory_generalization import misspecification

    curves = misspecification(seed=0)["curves"]
    for row in curves["well-specified"]:
        assert row["penalty"]["mean"] == pytest.approx(0, abs=1e-12)
        assert row["actual_excess"]["mean"] == pytest.approx(row["reported_memr"]["mean"], abs=1e-12)
    alike = curves["tasks assumed alike (s_ϕ² / 10)"][-1]  # overconfident: reports less than the truth
    assert alike["reported_memr"]["mean"] < alike["true_memr"]["mean"] < alike["actual_excess"]["mean"]
    assert all(row["penalty"]["mean"] > 0 for rows in list(curves.values())[1:] for row in rows)


def _degenerate_problem(seed: int = 0, query_in_row_space: bool = False):
    from innerloop.engine.theory.degenerate_bilevel import DegenerateBilevel

    generator = torch.Generator().manual_seed(seed)
    weights = torch.randn(10, generator=generator, dtype=torch.float64)
    support = torch.randn(4, 10, generator=generator, dtype=torch.float64)
    query = torch.randn(20, 4, generator=generator, dtype=torch.float64) @ support if query_in_row_space \
        else torch.randn(20, 10, generator=generator, dtype=torch.float64)
    def noise(count: int) -> torch.Tensor:
        return 0.1 * torch.randn(count, generator=generator, dtype=torch.float64)

    problem = DegenerateBilevel(support, support @ weights + noise(4), query, query @ weights + noise(20))
    return problem, torch.randn(10, generator=generator, dtype=torch.float64)


def test_gd_selection_and_its_hypergradients_against_autograd():
    problem, theta = _degenerate_problem()
    limit = problem.gd_solution(theta, 0.1, None)
    assert torch.allclose(problem.support_x @ limit, problem.support_y, atol=1e-12)  # in S
    assert torch.allclose(problem.null_projector @ (theta - limit), torch.zeros(10, dtype=torch.float64),
                          atol=1e-12)  # the point of S nearest θ: θ − ϕ ⟂ null(X)
    assert torch.allclose(problem.gd_solution(theta, 0.1, 3000), limit, atol=1e-10)
    for steps in (7, None):
        leaf = theta.clone().requires_grad_(True)
        (expected,) = torch.autograd.grad(problem.upper_loss(problem.gd_solution(leaf, 0.1, steps)), leaf)
        assert torch.allclose(problem.unrolled_hypergradient(theta, 0.1, steps), expected, atol=1e-12)
    leaf = theta.clone().requires_grad_(True)
    (expected,) = torch.autograd.grad(problem.upper_loss(problem.proximal_solution(leaf, 0.3)), leaf)
    assert torch.allclose(problem.proximal_hypergradient(theta, 0.3), expected, atol=1e-12)
    exact = problem.unrolled_hypergradient(theta, 0.1, None)
    assert float((problem.proximal_hypergradient(theta, 1e-7) - exact).norm()) < 1e-5 * float(exact.norm())


def test_neumann_series_diverges_along_the_null_space_of_a_singular_hessian():
    problem, theta = _degenerate_problem(1)
    phi = problem.gd_solution(theta, 0.1, None)
    lipschitz = 1.2 * float(torch.linalg.matrix_norm(problem.hessian, ord=2))
    null_gradient = problem.null_projector @ problem.upper_gradient(phi)
    range_target = torch.linalg.pinv(problem.hessian) @ problem.upper_gradient(phi)
    for terms in (10, 1000):
        estimate = problem.neumann_inverse_gradient(phi, terms, lipschitz)
        assert torch.allclose(problem.null_projector @ estimate, terms / lipschitz * null_gradient, rtol=1e-9)
    range_part = estimate - problem.null_projector @ estimate
    assert torch.allclose(range_part, range_target, atol=1e-8)


def test_optimistic_value_is_the_minimum_over_the_solution_set_and_gd_selection_reaches_it():
    problem, theta = _degenerate_problem(2)
    value, minimizer = problem.optimistic_value()
    assert torch.allclose(problem.support_x @ minimizer, problem.support_y, atol=1e-12)
    generator = torch.Generator().manual_seed(3)
    for _ in range(200):  # random points of S are never better
        point = problem.gd_solution(10 * torch.randn(10, generator=generator, dtype=torch.float64), 0.1, None)
        assert float(problem.upper_loss(point)) >= float(value) - 1e-12
    for _ in range(2000):
        theta = theta - 0.5 * problem.unrolled_hypergradient(theta, 0.1, None)
    assert float(problem.upper_loss(problem.gd_solution(theta, 0.1, None))) == pytest.approx(float(value), rel=1e-8)
    assert problem.pessimistic_is_unbounded()
    blind, _ = _degenerate_problem(4, query_in_row_space=True)
    assert not blind.pessimistic_is_unbounded()  # X_Q sees only the row space of X: f is constant on S


def test_degenerate_bilevel_rejects_well_posed_lower_levels_and_the_part_runs():
    from innerloop.engine.theory.degenerate_bilevel import DegenerateBilevel
    from innerloop.engine.theory_generalization import degenerate_bilevel

    with pytest.raises(ConfigError, match="fewer points than parameters"):
        DegenerateBilevel(torch.randn(5, 3, dtype=torch.float64), torch.zeros(5, dtype=torch.float64),
                          torch.randn(2, 3, dtype=torch.float64), torch.zeros(2, dtype=torch.float64))
    with pytest.raises(ShapeError, match="query X_Q"):
        DegenerateBilevel(torch.randn(2, 3, dtype=torch.float64), torch.zeros(2, dtype=torch.float64),
                          torch.randn(2, 4, dtype=torch.float64), torch.zeros(2, dtype=torch.float64))
    document = degenerate_bilevel(seed=0)
    training = document["training"]
    assert len(set(training["implicit formula (0)"])) == 1  # a zero hypergradient never moves θ
    assert training["unrolled, T = ∞ (P∇f)"][-1] == pytest.approx(document["optimistic"], rel=1e-6)
    # lower levels that stop short of S (T = 5 steps, λ > 0) are not bound by the optimistic value over S
    assert training["unrolled, T = 5"][-1] < document["optimistic"] and training["proximal, λ = 0.1"][-1] < 1
