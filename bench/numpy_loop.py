"""Contender 1: the classic NumPy recipe — a Python loop over datapoints and samples, value only.

The functions below are the textbook recipe (``reparameterize`` and ``compute_elbo`` loop over
the samples, with an unnormalized unit-variance Gaussian reconstruction term); the runner
loops over the datapoints of the batch, encoding each one, and averages the ELBO.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from bench.runner import LastLoss, check_variant
from bench.workload import Params, Size, init_params, make_data

__all__ = ["compute_elbo", "kl_divergence_gaussians", "make_runner", "reparameterize"]


def kl_divergence_gaussians(
    mu_q: np.ndarray, logvar_q: np.ndarray, mu_p: float = 0.0, logvar_p: float = 0.0
) -> float:
    """KL(q || p) for diagonal Gaussians, summed over the elements."""
    var_q = np.exp(logvar_q)
    var_p = np.exp(logvar_p)
    kl = 0.5 * (logvar_p - logvar_q + var_q / var_p + (mu_q - mu_p) ** 2 / var_p - 1.0)
    return float(np.sum(kl))


def compute_elbo(
    x: np.ndarray,
    z_samples: list[np.ndarray],
    mu_q: np.ndarray,
    logvar_q: np.ndarray,
    decoder_fn: Callable[[np.ndarray], np.ndarray],
    mu_p: float = 0.0,
    logvar_p: float = 0.0,
) -> tuple[float, float, float]:
    """The recipe: ``recon`` averaged over the samples in a loop, minus the analytic KL."""
    n_samples = len(z_samples)
    recon = 0.0
    for z in z_samples:
        x_recon = decoder_fn(z)
        recon += -0.5 * np.sum((x - x_recon) ** 2)
    recon /= n_samples
    kl = kl_divergence_gaussians(mu_q, logvar_q, mu_p, logvar_p)
    return float(recon - kl), float(recon), float(kl)


def reparameterize(
    rng: np.random.Generator, mu: np.ndarray, logvar: np.ndarray, n_samples: int = 1
) -> list[np.ndarray]:
    """``n_samples`` draws ``mu + exp(logvar / 2) * eps``, one per loop iteration."""
    std = np.exp(0.5 * logvar)
    samples = []
    for _ in range(n_samples):
        eps = rng.standard_normal(mu.shape, dtype=np.float32)
        samples.append(mu + std * eps)
    return samples


class LoopRunner(LastLoss):
    """Evaluates the batch-mean negative ELBO one datapoint and one sample at a time."""

    def __init__(self, params: Params, x: np.ndarray, num_samples: int, seed: int = 0) -> None:
        self._params, self._x, self._num_samples = params, x, num_samples
        self._rng = np.random.default_rng(seed)

    def step(self) -> None:
        """One evaluation of the negative ELBO per datapoint."""
        p, k = self._params, self._params["dec_w"].shape[0]
        decoder = lambda z: z @ p["dec_w"] + p["dec_b"]
        total = 0.0
        for x in self._x:
            h = x @ p["enc_w"] + p["enc_b"]
            mu, logvar = h[:k], h[k:]
            z_samples = reparameterize(self._rng, mu, logvar, self._num_samples)
            total += compute_elbo(x, z_samples, mu, logvar, decoder)[0]
        self._loss = -total / len(self._x)


def make_runner(variant: str, size: Size) -> LoopRunner:
    """The value-only loop runner at ``size`` (``variant`` must be ``"value"``)."""
    check_variant("numpy-loop", variant, ("value",))
    return LoopRunner(init_params(size), make_data(size), size.S)
