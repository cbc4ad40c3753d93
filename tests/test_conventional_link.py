"""The conventional link of monograph Figs. 7.1–7.2 (BPSK, least-squares channel estimate, ML
decoding) against NumPy's convolution, an exact noiseless estimate and a brute-force search."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from innerloop.engine import tasks
from innerloop.engine.conventional_link import (
    bpsk_codebook,
    conventional_bler,
    convolution_matrix,
    least_squares_channel,
    ml_decisions,
    received,
)
from innerloop.engine.errors import ConfigError


def test_bpsk_codebook_maps_each_bit_to_a_sign():
    book = bpsk_codebook(3)
    assert book.shape == (8, 3)
    assert book[5].tolist() == [-1.0, 1.0, -1.0]  # 5 = 101₂
    assert len({tuple(row.tolist()) for row in book}) == 8
    with pytest.raises(ConfigError, match="bits"):
        bpsk_codebook(0)


def test_convolution_matrix_is_numpys_full_convolution():
    generator = torch.Generator().manual_seed(0)
    symbols = torch.complex(torch.randn(5, generator=generator, dtype=torch.float64),
                            torch.randn(5, generator=generator, dtype=torch.float64))
    taps = torch.complex(torch.randn(3, generator=generator, dtype=torch.float64),
                         torch.randn(3, generator=generator, dtype=torch.float64))
    got = (convolution_matrix(symbols, 3) @ taps).numpy()
    assert np.allclose(got, np.convolve(symbols.numpy(), taps.numpy()), atol=1e-12)


def test_least_squares_recovers_the_channel_without_noise_and_ml_decodes_perfectly():
    family = tasks.make("model-free-link", shots=8, queries=40, bits=4, uses=4, exploration=0.0, snr_db=300.0)
    batch = family.sample(5, torch.Generator().manual_seed(1))
    truth = torch.complex(batch.task_params["channel_real"].double(), batch.task_params["channel_imag"].double())
    estimate = least_squares_channel(family, batch.support_x.double(), batch.support_y)
    assert torch.allclose(estimate, truth, atol=1e-6)
    assert float(conventional_bler(family, batch).max()) == 0.0


def test_ml_decisions_are_the_nearest_candidate_by_brute_force():
    family = tasks.make("model-free-link", shots=2, queries=30, bits=3, uses=3, exploration=0.0, snr_db=0.0)
    batch = family.sample(3, torch.Generator().manual_seed(2))
    channel = torch.complex(batch.task_params["channel_real"].double(), batch.task_params["channel_imag"].double())
    y = received(family, batch.query_x.double(), batch.query_y)
    got = ml_decisions(family, channel, y)
    book = bpsk_codebook(3).numpy()
    for b in range(3):
        candidates = np.stack([np.convolve(book[m], channel[b].numpy()) for m in range(8)])
        for k in range(30):
            expected = np.argmin((np.abs(y[b, k].numpy()[None] - candidates) ** 2).sum(-1))
            assert int(got[b, k]) == int(expected)
    assert 0 < float((got != batch.query_y).double().mean()) < 0.875  # noisy at 0 dB, better than chance
