"""ProtoNet and MatchingNet (seed 000 §5): prototypes, distances, attention and gradients checked
against independent loops and finite differences; the conv embedding's support-only statistics."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import innerloop as il
from conftest import gen
from innerloop.engine.algorithms import MatchingNet, ProtoNet
from innerloop.engine.algorithms.metric import nearest_neighbour_predictions, prototypes, squared_distances
from innerloop.engine.conv import Conv4


def _setup(cls, cpu64, family=None, **options):
    family = family or il.tasks.Clusters2D(shots=3, queries=4, ways=4)
    net = cls.network(family, hidden=(8,), embedding_dim=5)
    return cls(net, cpu64, **options), net.init(gen(0), dtype=torch.float64), \
        family.sample(3, gen(1)).to(torch.float64, "cpu")


def test_prototype_is_the_class_mean_of_support_embeddings():
    g = gen(0)
    emb = torch.randn(2, 9, 4, generator=g, dtype=torch.float64)
    labels = torch.tensor([[0, 1, 2, 0, 1, 2, 0, 1, 2], [2, 2, 2, 1, 0, 1, 0, 0, 1]])
    protos = prototypes(emb, labels)
    for b in range(2):
        for k in range(3):
            assert torch.allclose(protos[b, k], emb[b][labels[b] == k].mean(0), atol=1e-15)
    with pytest.raises(il.ShapeError, match="task 0 has no support example of class 1"):
        prototypes(emb[:1, :3], torch.tensor([[0, 2, 2]]))


def test_protonet_log_probs_are_eq_5_3_and_loss_is_eq_5_4(cpu64):
    algorithm, params, batch = _setup(ProtoNet, cpu64)
    log_p = algorithm.class_log_probs(params, batch)
    for b in range(3):  # per task: embeddings, class means, softmax over −squared distances (torch.cdist)
        es, eq = algorithm.model.apply(params, batch.support_x[b]), algorithm.model.apply(params, batch.query_x[b])
        c = torch.stack([es[batch.support_y[b] == k].mean(0) for k in range(4)])
        expected = torch.log_softmax(-torch.cdist(eq, c) ** 2, dim=-1)
        assert torch.allclose(log_p[b], expected, atol=1e-10)
        loss = F.cross_entropy(-torch.cdist(eq, c) ** 2, batch.query_y[b])
        assert torch.allclose(algorithm.evaluate(params, batch)[b], loss, atol=1e-10)
    a = torch.randn(2, 5, 3, generator=gen(4), dtype=torch.float64)
    b_ = torch.randn(2, 4, 3, generator=gen(5), dtype=torch.float64)
    assert torch.allclose(squared_distances(a, b_), torch.cdist(a, b_) ** 2, atol=1e-12)


def test_matching_attention_sums_to_one_and_matches_a_loop(cpu64):
    algorithm, params, batch = _setup(MatchingNet, cpu64, scale=3.0)
    es, eq = algorithm.model.apply(params, batch.support_x), algorithm.model.apply(params, batch.query_x)
    attention = algorithm.attention(es, eq)
    assert torch.allclose(attention.sum(-1), torch.ones(3, 16, dtype=torch.float64), atol=1e-14)
    log_p = algorithm.class_log_probs(params, batch)
    assert torch.allclose(log_p.exp().sum(-1), torch.ones(3, 16, dtype=torch.float64), atol=1e-12)
    b, m = 1, 5
    cos = torch.stack([F.cosine_similarity(eq[b, m], es[b, i], dim=0) for i in range(es.shape[1])])
    weights = torch.softmax(3.0 * cos, 0)
    for k in range(4):
        assert torch.allclose(log_p[b, m, k].exp(), weights[batch.support_y[b] == k].sum(), atol=1e-12)


@pytest.mark.parametrize("cls", [ProtoNet, MatchingNet])
def test_meta_gradient_matches_finite_differences(cls, cpu64):
    """Backprop through support embeddings (prototypes/attention) and query embeddings, float64."""
    algorithm, params, batch = _setup(cls, cpu64)
    grad = algorithm.compute(params, batch).grad
    for name in ("layer0.weight", "layer1.bias"):
        direction = torch.randn(params[name].shape, generator=gen(2), dtype=torch.float64)

        def loss_at(step, name=name, direction=direction):
            return float(algorithm.evaluate(dict(params, **{name: params[name] + step * direction}), batch).mean())

        fd = (loss_at(1e-6) - loss_at(-1e-6)) / 2e-6
        assert abs(fd - float((grad[name] * direction).sum())) < 1e-7 * max(1.0, abs(fd)), name


def test_nearest_neighbour_baseline():
    sx = torch.tensor([[[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]]])
    sy = torch.tensor([[2, 0, 1]])
    qx = torch.tensor([[[1.0, 1.0], [9.0, 1.0], [0.0, 8.0], [6.0, 0.0]]])
    assert nearest_neighbour_predictions(sx, sy, qx).tolist() == [[2, 0, 1, 0]]


def test_conv4_normalizes_with_support_statistics_only():
    net = Conv4((1, 16, 16), channels=6)
    params = net.init(gen(0), dtype=torch.float64)
    support = torch.rand(2, 5, 256, generator=gen(1), dtype=torch.float64)
    query = torch.rand(2, 4, 256, generator=gen(2), dtype=torch.float64)
    s1, q1 = net.embed_support_query(params, support, query)
    assert s1.shape == (2, 5, 6) and q1.shape == (2, 4, 6)
    changed = query.clone()
    changed[:, 1:] = torch.rand(2, 3, 256, generator=gen(3), dtype=torch.float64)
    s2, q2 = net.embed_support_query(params, support, changed)
    assert torch.equal(s1, s2) and torch.allclose(q1[:, 0], q2[:, 0], atol=1e-14)  # no query leaks into another
    assert torch.allclose(net.apply(params, support), s1, atol=1e-14)
    with pytest.raises(il.ConfigError, match="too small for 4"):
        Conv4((1, 8, 8))


def test_conv_without_pooling_keeps_the_feature_map_and_matches_torch_nn():
    """pooling=False: blocks of conv → support-statistics batch norm → ReLU, output C·H·W per image,
    against torch.nn.Conv2d and F.batch_norm on the support images (training-mode statistics)."""
    net = Conv4((1, 8, 8), channels=5, blocks=2, pooling=False)
    params = net.init(gen(0), dtype=torch.float64)
    params = {k: v + 0.1 * torch.randn(v.shape, generator=gen(4), dtype=torch.float64) for k, v in params.items()}
    support = torch.rand(1, 6, 64, generator=gen(1), dtype=torch.float64)
    query = torch.rand(1, 3, 64, generator=gen(2), dtype=torch.float64)
    s, q = net.embed_support_query(params, support, query)
    assert s.shape == (1, 6, 5 * 8 * 8) and q.shape == (1, 3, 5 * 8 * 8)
    h_s, h_q = support[0].reshape(6, 1, 8, 8), query[0].reshape(3, 1, 8, 8)
    for b in range(2):
        conv = torch.nn.Conv2d(5 if b else 1, 5, 3, padding=1).double()
        conv.weight.data, conv.bias.data = params[f"block{b}.conv.weight"], params[f"block{b}.conv.bias"]
        with torch.no_grad():
            c_s, c_q = conv(h_s), conv(h_q)
        mean, var = c_s.mean(dim=(0, 2, 3)), c_s.var(dim=(0, 2, 3), unbiased=False)
        w, bias = params[f"block{b}.norm.weight"], params[f"block{b}.norm.bias"]
        h_s = torch.relu(F.batch_norm(c_s, mean, var, w, bias, eps=1e-5))
        h_q = torch.relu(F.batch_norm(c_q, mean, var, w, bias, eps=1e-5))
    assert torch.allclose(s[0], h_s.flatten(1), atol=1e-12) and torch.allclose(q[0], h_q.flatten(1), atol=1e-12)
    with pytest.raises(il.ConfigError, match="channels and blocks must be positive"):
        Conv4((1, 8, 8), blocks=0, pooling=False)


def test_protonet_learns_clusters_and_refuses_regression(cpu64):
    family = il.tasks.Clusters2D()
    net = ProtoNet.network(family)
    algorithm = ProtoNet(net, il.backends.get("cpu"))
    params = net.init(gen(0))
    optimizer = torch.optim.Adam(list(params.values()), 1e-3)
    stream = family.stream("meta-train", 0)
    held_out = family.stream("meta-test", 0).next(200)
    before = float(algorithm.evaluate(params, held_out).mean())
    for _ in range(150):
        for k, g in algorithm.compute(params, stream.next(4)).grad.items():
            params[k].grad = g
        optimizer.step()
    assert float(algorithm.evaluate(params, held_out).mean()) < 0.5 * before
    # overlapping clusters cap accuracy; nearest class mean in input space is near Bayes-optimal here
    raw = (squared_distances(held_out.query_x, prototypes(held_out.support_x, held_out.support_y)).argmin(-1)
           == held_out.query_y).double().mean()
    assert float(algorithm.accuracy(params, held_out).mean()) > float(raw) - 0.02 > 0.8
    with pytest.raises(il.ConfigError, match="protonet classifies; task 'sinusoid' is regression"):
        ProtoNet.network(il.tasks.Sinusoid())
