"""BinaryPrototypeRegression (issue 8): the realizable task family and its exact Bayes posterior."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

import innerloop as il
from conftest import gen


def test_tasks_are_flipped_prototypes_with_gaussian_noise():
    family = il.tasks.make("binary-prototype-regression", shots=3, queries=50)
    batch = family.sample(2000, gen(0))
    bits, proto = batch.task_params["bits"], batch.task_params["prototype"]
    flips = (bits != family.prototypes[proto]).double().mean()
    assert abs(float(flips) - 0.05) < 0.005
    residual = batch.query_y.double() - family.function(bits, batch.query_x.double())
    assert abs(float(residual.std()) - 0.1) < 0.005 and float(batch.query_x.abs().max()) <= math.pi


def test_exact_posterior_by_enumeration():
    family = il.tasks.make("binary-prototype-regression", bits=4, shots=3)
    batch = family.sample(5, gen(1))
    posterior = family.posterior(batch.support_x, batch.support_y)
    assert posterior.shape == (5, 16) and torch.allclose(posterior.sum(-1), torch.ones(5, dtype=torch.float64))
    # brute force: prior × likelihood for every string, independently written
    strings = list(itertools.product([0, 1], repeat=4))
    for b in range(5):
        weights = []
        for s in strings:
            phi = torch.tensor(s[::-1])  # all_strings puts bit k at (i >> k) & 1
            prior = sum(math.prod(0.05 if phi[k] != p[k] else 0.95 for k in range(4)) for p in family.prototypes) / 3
            f = family.function(phi, batch.support_x[b].double())
            like = torch.exp(-0.5 * ((batch.support_y[b].double() - f) / 0.1) ** 2).prod()
            weights.append(prior * float(like))
        brute = torch.tensor(weights, dtype=torch.float64)
        assert torch.allclose(posterior[b], brute / brute.sum(), rtol=1e-9, atol=1e-12)


def test_posterior_concentrates_on_the_true_weights_and_predicts_well():
    family = il.tasks.make("binary-prototype-regression", shots=30, queries=50)
    batch = family.sample(50, gen(2))
    posterior = family.posterior(batch.support_x, batch.support_y)
    index = (batch.task_params["bits"] << torch.arange(family.bits)).sum(-1)
    assert float(posterior.gather(1, index.unsqueeze(1)).mean()) > 0.9
    mse = ((family.predictive_mean(posterior, batch.query_x) - batch.query_y.double()) ** 2).mean()
    assert float(mse) < 0.02  # the noise floor is 0.01
    with pytest.raises(il.ConfigError, match="bits"):
        il.tasks.make("binary-prototype-regression", bits=40)
