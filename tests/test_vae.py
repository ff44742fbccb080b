"""A short run of the nonlinear VAE example, examples/vae.py (a few seconds per
configuration): it trains, reports a finite test-set importance-weighted bound, and writes
summary.json and the figure. Two configurations cover every option value between them
(Dirichlet latent + Bernoulli + IWAE; Gumbel-softmax latent + continuous Bernoulli + ELBO
with the Monte Carlo KL); the Gaussian latent is the default path of the same code."""

from __future__ import annotations

import json

import numpy as np
import pytest
import vae  # the example under test


@pytest.mark.parametrize(
    ("latent", "likelihood", "objective"),
    [("dirichlet", "bernoulli", "iwae"), ("gumbel-softmax", "continuous-bernoulli", "elbo")],
)
def test_short_run_writes_a_finite_bound_and_the_figure(tmp_path, latent, likelihood, objective):
    args = vae.parse_args(
        [
            f"--latent={latent}",
            f"--likelihood={likelihood}",
            f"--objective={objective}",
            "--epochs=2",
            "--hidden=16",
            "--num-samples=2",
            "--eval-samples=20",
            f"--out={tmp_path}",
            "--quiet",
        ]
    )
    summary = vae.train(args)
    saved = json.loads((tmp_path / "summary.json").read_text())
    assert saved == summary
    assert saved["test_iwae_samples"] == 20 and saved["num_test"] == 359
    assert np.isfinite(saved["test_iwae_bound"]) and saved["test_iwae_bound_stderr"] > 0
    if likelihood == "bernoulli":  # a log-probability of binary pixels
        assert saved["test_iwae_bound"] < 0
    assert (tmp_path / "vae.png").stat().st_size > 1000


def test_iaf_posterior_short_run(tmp_path):
    """--posterior iaf: the encoder's context conditions an IAF on the Gaussian (one context
    per digit); the ELBO (Monte Carlo KL) trains and the test bound is finite."""
    args = vae.parse_args(
        [
            "--posterior=iaf",
            "--epochs=1",
            "--hidden=16",
            "--context-dim=4",
            "--eval-samples=20",
            f"--out={tmp_path}",
            "--quiet",
        ]
    )
    flow = vae.make_flow(args)
    model = vae.VAE(args, np.zeros(64), vae.nnx.Rngs(0))
    q = model.posterior(np.zeros((5, 64), np.float32), 1.0, flow)
    assert q.batch_shape == (5,) and q.event_shape == (args.latent_dim,)
    assert vae.objective_for(args).kl == "mc"
    summary = vae.train(args)
    assert summary["posterior"] == "iaf" and summary["context_dim"] == 4
    assert np.isfinite(summary["test_iwae_bound"]) and summary["test_iwae_bound"] < 0
    assert (tmp_path / "vae.png").stat().st_size > 1000


def test_bad_options_are_rejected():
    with pytest.raises(SystemExit):
        vae.parse_args(["--latent", "vmf"])
    with pytest.raises(SystemExit):
        vae.parse_args(["--latent", "dirichlet", "--posterior", "iaf"])
