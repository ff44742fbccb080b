"""Contender 6: PyTorch on the CPU — ``torch.distributions.Normal``, ``kl_divergence``, Adam.

Uses as many intra-op threads as the machine has cores.
"""

from __future__ import annotations

import os

import numpy as np
import torch
from torch.distributions import Normal, kl_divergence

from bench.runner import LastLoss, check_variant
from bench.workload import LEARNING_RATE, Params, Size, init_params, make_data

__all__ = ["make_runner"]


class TorchRunner(LastLoss):
    """Eager PyTorch step: ``rsample`` S latents per datapoint, backward, ``Adam.step``."""

    def __init__(self, params: Params, x: np.ndarray, num_samples: int, seed: int = 0) -> None:
        torch.set_num_threads(os.cpu_count() or 1)
        torch.manual_seed(seed)
        self._params = {n: torch.tensor(v, requires_grad=True) for n, v in params.items()}
        self._x = torch.from_numpy(x)
        self._num_samples = num_samples
        self._k = params["dec_w"].shape[0]
        self._prior = Normal(torch.zeros(self._k), torch.ones(self._k))
        self._optimizer = torch.optim.Adam(self._params.values(), lr=LEARNING_RATE)

    def step(self) -> None:
        """One update (PyTorch on the CPU is synchronous)."""
        p, k, x = self._params, self._k, self._x
        self._optimizer.zero_grad()
        h = x @ p["enc_w"] + p["enc_b"]
        q = Normal(h[:, :k], torch.exp(0.5 * h[:, k:]))
        z = q.rsample((self._num_samples,))  # (S, B, K)
        log_lik = Normal(z @ p["dec_w"] + p["dec_b"], 1.0).log_prob(x).sum(-1)  # (S, B)
        kl = kl_divergence(q, self._prior).sum(-1)
        loss = -(log_lik.mean(0) - kl).mean()
        loss.backward()
        self._optimizer.step()
        self._loss = loss.item()


def make_runner(variant: str, size: Size) -> TorchRunner:
    """The PyTorch step at ``size`` (``variant`` must be ``"step"``)."""
    check_variant("torch", variant, ("step",))
    return TorchRunner(init_params(size), make_data(size), size.S)
