"""Neural Processes (seed 000 §4): every term of eq. 4.2/4.4 against independent computations,
permutation invariance, varying context sizes, the exact GP posterior, and a falling training curve."""

from __future__ import annotations

import json
import math

import pytest
import torch
from torch.distributions import Normal, kl_divergence

import innerloop as il
from conftest import gen
from innerloop.engine.algorithms import CNP, AttentiveNP, LatentNP
from innerloop.engine.algorithms.neural_process import predictive_nll
from innerloop.engine.config import TrainConfig
from innerloop.engine.gp_posterior import gp_nll, gp_predictive
from innerloop.engine.neural_processes import NPOutput, gaussian_kl, gaussian_log_prob
from innerloop.engine.trainer import Trainer, train

NP_CLASSES = (CNP, LatentNP, AttentiveNP)


def _algorithm(cls, cpu64, **options):
    family = il.tasks.GaussianProcess1D(shots=12, queries=9)
    net = cls.network(family, hidden=(16, 16), representation_dim=16, latent_dim=8, heads=2)
    algorithm = cls(net, cpu64, **options)
    return algorithm, net.init(gen(0), dtype=torch.float64), family.sample(5, gen(1)).to(torch.float64, "cpu")


def test_gaussian_log_prob_and_kl_match_torch_distributions():
    g = gen(0)
    mu_q, mu_p, y = (torch.randn(50, generator=g, dtype=torch.float64) for _ in range(3))
    s_q, s_p = (0.2 + torch.rand(50, generator=g, dtype=torch.float64) for _ in range(2))
    assert torch.allclose(gaussian_log_prob(y, mu_q, s_q), Normal(mu_q, s_q).log_prob(y), atol=1e-13)
    assert torch.allclose(gaussian_kl(mu_q, s_q, mu_p, s_p), kl_divergence(Normal(mu_q, s_q), Normal(mu_p, s_p)),
                          atol=1e-13)
    # and against a Monte-Carlo estimate E_q[log q − log p] for one pair
    z = mu_q[0] + s_q[0] * torch.randn(400_000, generator=g, dtype=torch.float64)
    mc = (Normal(mu_q[0], s_q[0]).log_prob(z) - Normal(mu_p[0], s_p[0]).log_prob(z)).mean()
    assert abs(float(mc) - float(gaussian_kl(mu_q[0], s_q[0], mu_p[0], s_p[0]))) < 0.02


def test_elbo_terms_assemble_eq_4_4_per_target():
    g = gen(2)
    mean, sigma = torch.randn(3, 4, 7, 1, generator=g), 0.3 + torch.rand(3, 4, 7, 1, generator=g)
    post = (torch.randn(4, 5, generator=g), 0.2 + torch.rand(4, 5, generator=g))
    prior = (torch.randn(4, 5, generator=g), 0.2 + torch.rand(4, 5, generator=g))
    y = torch.randn(4, 7, 1, generator=g)
    terms = LatentNP.elbo_terms(NPOutput(mean, sigma, prior, post), y)
    recon = Normal(mean, sigma).log_prob(y).sum(dim=(2, 3)).mean(dim=0)  # Σ_t log p, averaged over samples
    kl = kl_divergence(Normal(*post), Normal(*prior)).sum(dim=-1)
    assert torch.allclose(terms["nll"], -recon / 7, atol=1e-6)
    assert torch.allclose(terms["kl"], kl / 7, atol=1e-6)
    assert torch.allclose(terms["loss"], (kl - recon) / 7, atol=1e-6)  # −ELBO per target point
    cnp_terms = CNP.elbo_terms(NPOutput(mean[:1], sigma[:1]), y)
    assert set(cnp_terms) == {"nll", "loss"} and torch.equal(cnp_terms["loss"], cnp_terms["nll"])


def test_cnp_objective_is_eq_4_2_from_the_network_parts(cpu64):
    algorithm, params, batch = _algorithm(CNP, cpu64, targets_include_context=True)
    algorithm.seed(11)
    result = algorithm.compute(params, batch)
    k = int(result.diagnostics["context_size"])
    net = algorithm.model.module
    with torch.no_grad():
        cx, cy = batch.support_x[:, :k], batch.support_y[:, :k]
        tx, ty = torch.cat([cx, batch.query_x], 1), torch.cat([cy, batch.query_y], 1)
        h = torch.func.functional_call(net.encoder, _sub(params, "encoder"), (torch.cat([cx, cy], -1),))
        r = h.mean(dim=1, keepdim=True).expand(-1, tx.shape[1], -1)  # eq. 4.1
        raw = torch.func.functional_call(net.decoder, _sub(params, "decoder"), (torch.cat([tx, r], -1),))
        mu, s = raw[..., :1], 0.01 + 0.99 * torch.nn.functional.softplus(raw[..., 1:])
        expected = -Normal(mu, s).log_prob(ty).mean(dim=(1, 2))
    assert torch.allclose(result.task_losses, expected, atol=1e-12)


def test_latent_np_objective_is_the_negative_elbo_from_the_network_parts(cpu64):
    algorithm, params, batch = _algorithm(LatentNP, cpu64, targets_include_context=False)
    algorithm.seed(5)
    result = algorithm.compute(params, batch)
    k = int(result.diagnostics["context_size"])
    replay = torch.Generator().manual_seed(5)
    assert int(torch.randint(3, 13, (), generator=replay)) == k
    eps = torch.randn((1, 5, 8), generator=replay, dtype=torch.float32).double()
    net = algorithm.model.module
    cx, cy, tx, ty = batch.support_x[:, :k], batch.support_y[:, :k], batch.query_x, batch.query_y

    def q(x, y):  # q(z | D): mean-pooled latent encoder, then the Gaussian head
        s = torch.func.functional_call(net.latent_encoder, _sub(params, "latent_encoder"), (torch.cat([x, y], -1),))
        out = torch.func.functional_call(net.latent_head, _sub(params, "latent_head"), (s.mean(1),))
        return out[..., :8], 0.1 + 0.9 * torch.sigmoid(out[..., 8:])

    post, prior = q(torch.cat([cx, tx], 1), torch.cat([cy, ty], 1)), q(cx, cy)
    z = post[0] + post[1] * eps[0]  # the posterior's sample (eq. 4.4 expectation)
    raw = torch.func.functional_call(net.decoder, _sub(params, "decoder"),
                                     (torch.cat([tx, z[:, None].expand(-1, tx.shape[1], -1)], -1),))
    mu, s = raw[..., :1], 0.01 + 0.99 * torch.nn.functional.softplus(raw[..., 1:])
    recon = Normal(mu, s).log_prob(ty).sum(dim=(1, 2))
    kl = kl_divergence(Normal(*post), Normal(*prior)).sum(-1)
    expected = (kl - recon) / ty.shape[1]
    assert torch.allclose(result.task_losses, expected.detach(), atol=1e-12)
    assert result.diagnostics["kl"] > 0


def _sub(params, prefix):
    return {k[len(prefix) + 1:]: v for k, v in params.items() if k.startswith(prefix + ".")}


@pytest.mark.parametrize("cls", NP_CLASSES)
def test_predictions_are_invariant_to_context_order(cls, cpu64):
    algorithm, params, batch = _algorithm(cls, cpu64)
    perm = torch.randperm(12, generator=gen(3))
    base = algorithm.predict(params, batch.support_x, batch.support_y, batch.query_x, generator=gen(4))
    shuffled = algorithm.predict(params, batch.support_x[:, perm], batch.support_y[:, perm], batch.query_x,
                                 generator=gen(4))
    assert torch.allclose(base.mean, shuffled.mean, atol=1e-12)
    assert torch.allclose(base.sigma, shuffled.sigma, atol=1e-12)
    assert base.mean.shape == (algorithm.samples if algorithm.latent else 1, 5, 9, 1)
    # and the training objective is invariant too (same context size, same noise)
    algorithm.seed(9)
    a = algorithm.compute(params, batch).task_losses
    algorithm.seed(9)
    k = int(algorithm.compute(params, batch).diagnostics["context_size"])
    permuted = batch.__class__(torch.cat([batch.support_x[:, :k].flip(1), batch.support_x[:, k:]], 1),
                               torch.cat([batch.support_y[:, :k].flip(1), batch.support_y[:, k:]], 1),
                               batch.query_x, batch.query_y)
    algorithm.seed(9)
    assert torch.allclose(a, algorithm.compute(params, permuted).task_losses, atol=1e-12)


@pytest.mark.parametrize("cls", NP_CLASSES)
def test_context_sizes_vary_between_batches_and_gradients_match_finite_differences(cls, cpu64):
    algorithm, params, batch = _algorithm(cls, cpu64, context_min=2)
    algorithm.seed(0)
    sizes = {algorithm.compute(params, batch).diagnostics["context_size"] for _ in range(12)}
    assert len(sizes) > 3 and min(sizes) >= 2 and max(sizes) <= 12
    for k in (1, 4, 12):
        assert algorithm.evaluate(params, batch, context=k).shape == (5,)
    with pytest.raises(il.ShapeError, match="context size 13 is outside 1..12"):
        algorithm.evaluate(params, batch, context=13)
    # backpropagation through the whole network vs a central finite difference (float64)
    name = "decoder.0.weight"
    direction = torch.randn(params[name].shape, generator=gen(6), dtype=torch.float64)
    algorithm.seed(1)
    grad = algorithm.compute(params, batch).grad[name]

    def loss_at(step):
        algorithm.seed(1)
        shifted = dict(params, **{name: params[name] + step * direction})
        return float(algorithm.compute(shifted, batch).task_losses.mean())

    fd = (loss_at(1e-6) - loss_at(-1e-6)) / 2e-6
    assert abs(fd - float((grad * direction).sum())) < 1e-6 * max(1.0, abs(fd))


def test_predictive_nll_marginalizes_latent_samples():
    g = gen(8)
    mean, sigma = torch.randn(6, 2, 3, 1, generator=g), 0.5 + torch.rand(6, 2, 3, 1, generator=g)
    y = torch.randn(2, 3, 1, generator=g)
    density = Normal(mean, sigma).log_prob(y).exp().squeeze(-1).mean(0)  # (1/S) Σ_s N(y; μ_s, σ_s²)
    assert torch.allclose(predictive_nll(NPOutput(mean, sigma), y), -density.log().mean(-1), atol=1e-6)
    single = predictive_nll(NPOutput(mean[:1], sigma[:1]), y)
    assert torch.allclose(single, -Normal(mean[0], sigma[0]).log_prob(y).mean(dim=(1, 2)), atol=1e-6)


def test_exact_gp_posterior_matches_scikit_learn():
    from sklearn.gaussian_process import GaussianProcessRegressor
    from sklearn.gaussian_process.kernels import RBF, ConstantKernel

    family = il.tasks.GaussianProcess1D(shots=9, queries=15, output_scale=1.3, noise=0.2)
    batch = family.sample(3, gen(5))
    mean, std = gp_predictive(batch.support_x, batch.support_y, batch.query_x, batch.task_params["lengthscale"],
                              1.3, 0.2)
    for b in range(3):
        kernel = ConstantKernel(1.3**2, "fixed") * RBF(float(batch.task_params["lengthscale"][b]), "fixed")
        gpr = GaussianProcessRegressor(kernel, alpha=0.2**2, optimizer=None, normalize_y=False)
        gpr.fit(batch.support_x[b].double().numpy(), batch.support_y[b, :, 0].double().numpy())
        sk_mean, sk_std = gpr.predict(batch.query_x[b].double().numpy(), return_std=True)
        assert torch.allclose(mean[b, :, 0], torch.from_numpy(sk_mean), atol=1e-9)
        # sklearn's std is the latent f's; the predictive adds the observation noise
        assert torch.allclose(std[b, :, 0] ** 2, torch.from_numpy(sk_std) ** 2 + 0.2**2, atol=1e-9)


def test_exact_gp_with_true_lengthscale_beats_misspecified_ones():
    family = il.tasks.GaussianProcess1D(shots=8, queries=30)
    batch = family.sample(200, gen(12))
    args = (batch.support_x, batch.support_y, batch.query_x, batch.query_y)
    true = gp_nll(*args, batch.task_params["lengthscale"], 1.0, 0.1).mean()
    for wrong in (0.3, 3.0):
        assert true < gp_nll(*args, torch.full((200,), wrong), 1.0, 0.1).mean()
    assert math.isfinite(float(true))


def test_np_training_curve_goes_down_and_resume_is_exact(tmp_path):
    """Many tasks per batch (unlike the seed's one-task-per-epoch notebook): the curve falls."""
    config = dict(algo="latent-np", task="gp", shots=10, queries=10, hidden=(32, 32), meta_batch=16,
                  iters=160, eval_every=40, checkpoint_every=40, eval_tasks=16, outer_lr=2e-3, seed=1,
                  algo_options={"representation_dim": 32, "latent_dim": 8})
    full = train(TrainConfig(**config), tmp_path / "full", progress=False)
    rows = [json.loads(line) for line in (tmp_path / "full" / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in rows]
    assert sum(losses[-30:]) / 30 < sum(losses[:30]) / 30 - 0.1
    assert len({r["context_size"] for r in rows}) > 3
    train(TrainConfig(**{**config, "iters": 80}), tmp_path / "part", progress=False)
    resumed = Trainer.resume(tmp_path / "part", iters=160, progress=False).run()
    for k in full.params:
        assert torch.equal(full.params[k], resumed.params[k]), k
    for name in ("training_curve.png", "adaptation.png"):
        assert (tmp_path / "full" / name).is_file()


def test_amortized_algorithms_refuse_backends_without_autograd():
    family = il.tasks.GaussianProcess1D()
    restricted = il.backends.get("cpu", capabilities="loss,loss_and_grad,hvp")
    with pytest.raises(il.CapabilityError, match="CNP needs autograd, which backend 'cpu' does not offer") as err:
        CNP(CNP.network(family), restricted)
    runnable = str(err.value).split("algorithms that run on this backend: ")[1].split(", ")
    assert {"maml", "fomaml", "imaml"} <= set(runnable) and not {"cnp", "protonet"} & set(runnable)
    with pytest.raises(il.ConfigError, match="Neural Processes model real-valued outputs"):
        CNP.network(il.tasks.Clusters2D())
