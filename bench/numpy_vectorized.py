"""Contender 2: the same ELBO value as :mod:`bench.numpy_loop`, with NumPy broadcasting."""

from __future__ import annotations

import numpy as np

from bench.runner import LastLoss, check_variant
from bench.workload import Params, Size, init_params, make_data

__all__ = ["make_runner", "negative_elbo"]


def negative_elbo(
    params: Params, x: np.ndarray, num_samples: int, rng: np.random.Generator
) -> float:
    """Batch-mean negative ELBO (unnormalized reconstruction), all samples at once."""
    b, k = x.shape[0], params["dec_w"].shape[0]
    h = x @ params["enc_w"] + params["enc_b"]
    mu, logvar = h[:, :k], h[:, k:]
    eps = rng.standard_normal((num_samples, b, k), dtype=np.float32)
    z = mu + np.exp(0.5 * logvar) * eps  # (S, B, K)
    mean = (z.reshape(-1, k) @ params["dec_w"] + params["dec_b"]).reshape(num_samples, b, -1)
    recon = -0.5 * np.sum((x - mean) ** 2, axis=-1).mean(axis=0)  # (B,)
    kl = 0.5 * np.sum(np.exp(logvar) + mu**2 - 1.0 - logvar, axis=-1)
    return float(-np.mean(recon - kl))


class VectorizedRunner(LastLoss):
    """Evaluates :func:`negative_elbo` with fresh samples each call."""

    def __init__(self, params: Params, x: np.ndarray, num_samples: int, seed: int = 0) -> None:
        self._params, self._x, self._num_samples = params, x, num_samples
        self._rng = np.random.default_rng(seed)

    def step(self) -> None:
        """One evaluation."""
        self._loss = negative_elbo(self._params, self._x, self._num_samples, self._rng)


def make_runner(variant: str, size: Size) -> VectorizedRunner:
    """The value-only vectorized runner at ``size`` (``variant`` must be ``"value"``)."""
    check_variant("numpy-vectorized", variant, ("value",))
    return VectorizedRunner(init_params(size), make_data(size), size.S)
