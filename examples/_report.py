"""What ``fit_linear_decoder.py`` reports: per-epoch curves, the final comparison with the
closed-form PPCA optimum (``summary.json``), the printed table and the figure."""

from __future__ import annotations

import math
import os
from typing import Any

import _linear as linear
import _training as tr
import numpy as np
import ppca

import jelbo

CURVES = (
    "train_objective",
    "train_elbo",
    "test_elbo",
    "train_log_likelihood",
    "test_log_likelihood",
)


def curves(
    objectives: Any,
    elbo: Any,
    model: dict[str, np.ndarray],
    x_train: np.ndarray,
    x_test: np.ndarray | None,
) -> dict[str, float]:
    """One epoch's values of :data:`CURVES` (``nan`` for a missing test split).

    Args:
        objectives: the epoch's minibatch averages of the training bound.
        elbo: jelbo's ELBO of every train row, then of every test row, ``(N_train + N_test,)``.
        model: the raw-unit parameters (:func:`_linear.export`), for the exact log-likelihood.
        x_train: the training rows.
        x_test: the test rows, or ``None``.
    """
    n, elbo = len(x_train), np.asarray(elbo, np.float64)
    row = {"train_objective": float(np.mean(np.asarray(objectives, np.float64)))}
    for split, rows, values in (("train", x_train, elbo[:n]), ("test", x_test, elbo[n:])):
        row[f"{split}_elbo"] = math.nan if rows is None else float(np.mean(values))
        exact = math.nan if rows is None else linear.exact(model, rows)["log_likelihood"]
        row[f"{split}_log_likelihood"] = exact
    return row


def compare(
    final: jelbo.Bound,
    model: dict[str, np.ndarray],
    optimum: ppca.PPCAFit,
    x_train: np.ndarray,
    x_test: np.ndarray | None,
) -> dict[str, Any]:
    """The final numbers of ``summary.json``, per datapoint in nats.

    Per split: jelbo's ELBO (``{split}_elbo``, the mean of the ``R`` independent estimates
    of ``final``), its standard error from the spread of the estimates (``_stderr``, ``None``
    for ``R = 1``) and from jelbo's ``Bound.stderr`` (``_bound_stderr``), the exact ELBO
    (``_elbo_exact``) and the exact log-likelihood; then the PPCA optimum, the gaps, and
    ``bounds_ordered``: exact ELBO <= log-likelihood <= optimum on the training rows, with
    jelbo's ELBO below the log-likelihood within 5 standard errors.

    Args:
        final: ``R`` estimates of jelbo's ELBO of the train rows, then the test rows,
            fields ``(R, N_train + N_test)``.
        model: the raw-unit parameters (:func:`_linear.export`).
        optimum: the closed-form PPCA fit of the training rows.
        x_train: the training rows.
        x_test: the test rows, or ``None``.
    """
    n = len(x_train)
    summary: dict[str, Any] = {"n_train": n, "n_test": 0 if x_test is None else len(x_test)}
    for split, rows, part in (("train", x_train, slice(0, n)), ("test", x_test, slice(n, None))):
        names = ("elbo", "elbo_stderr", "elbo_bound_stderr", "elbo_exact", "log_likelihood")
        summary |= {f"{split}_{name}": None for name in names}
        if rows is None:
            continue
        estimates = np.asarray(final.value[:, part], np.float64).mean(axis=1)  # (R,)
        stderr = np.asarray(final.stderr[:, part], np.float64)  # of each row's estimate
        repeats, exact = len(estimates), linear.exact(model, rows)
        spread = np.std(estimates, ddof=1) / math.sqrt(repeats) if repeats > 1 else None
        summary |= {
            f"{split}_elbo": float(np.mean(estimates)),
            f"{split}_elbo_stderr": None if spread is None else float(spread),
            f"{split}_elbo_bound_stderr": math.sqrt(np.sum(stderr**2)) / stderr.size,
            f"{split}_elbo_exact": exact["elbo"],
            f"{split}_log_likelihood": exact["log_likelihood"],
        }
    best, log_lik = optimum.max_log_likelihood, summary["train_log_likelihood"]
    within = summary["train_elbo"] <= log_lik + 5 * summary["train_elbo_bound_stderr"]
    return summary | {
        "ppca_optimum": best,
        "gap": best - summary["train_elbo"],
        "gap_exact": best - summary["train_elbo_exact"],
        "bounds_ordered": bool(summary["train_elbo_exact"] <= log_lik <= best and within),
        "sigma2": float(model["sigma2"]),
        "ppca_sigma2": optimum.sigma2,
    }


def show(summary: dict[str, Any], out: str | os.PathLike) -> None:
    """Prints the summary as a table, nats per datapoint."""
    print(
        f"\nK={summary['latent_dim']}, {summary['n_train']} train / {summary['n_test']} test "
        f"rows, {summary['steps']} steps, {summary['seconds']:.1f} s. Nats per datapoint:"
    )
    samples = f"jelbo, {summary['elbo_samples']} samples"
    rows = {
        f"train ELBO ({samples})": "train_elbo",
        "train ELBO (exact, closed form)": "train_elbo_exact",
        "train log-likelihood (exact)": "train_log_likelihood",
        "PPCA optimum (closed form)": "ppca_optimum",
        "gap = optimum − train ELBO": "gap",
        "gap with the exact ELBO": "gap_exact",
        f"test ELBO ({samples})": "test_elbo",
        "test log-likelihood (exact)": "test_log_likelihood",
    }
    for label, key in rows.items():
        value = "n/a" if summary[key] is None else f"{summary[key]:.3f}"
        note = ""
        if key == "train_elbo":
            note = f" ± {summary['train_elbo_bound_stderr']:.4f} (Monte Carlo standard error, "
            note += "jelbo.Bound.stderr)"
            if summary["train_elbo_stderr"] is not None:
                note += f"; ± {summary['train_elbo_stderr']:.4f} from the spread of the repeats"
        print(f"  {label:<36}{value:>10}{note}")
    verdict = "holds" if summary["bounds_ordered"] else "VIOLATED"
    print(f"ELBO <= log-likelihood <= optimum: {verdict}\noutputs in {out}/")


def plot(
    path: str | os.PathLike,
    history: dict[str, np.ndarray],
    summary: dict[str, Any],
    model: dict[str, np.ndarray],
    x_test: np.ndarray | None,
    *,
    num_digits: int = 16,
) -> None:
    """Saves (atomically, PNG) the ELBO curves against the closed-form optimum and, with a
    test split whose rows are square images, test rows beside their reconstructions
    :math:`W\\,\\mathbb E_q[z] + b`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    d = model["b"].shape[0]
    side = math.isqrt(d)
    show_images = x_test is not None and side * side == d
    fig, axes = plt.subplots(
        1, 2 if show_images else 1, figsize=(12 if show_images else 7, 4.5), squeeze=False
    )
    ax = axes[0, 0]
    epochs = np.arange(1, len(history["train_elbo"]) + 1)
    optimum = summary["ppca_optimum"]
    curves = {
        "train ELBO (jelbo)": history["train_elbo"],
        "train log-likelihood (exact)": history["train_log_likelihood"],
    }
    if x_test is not None:
        curves["test ELBO (jelbo)"] = history["test_elbo"]
    for (label, curve), style in zip(curves.items(), ("-", "--", "-"), strict=False):
        ax.plot(epochs, curve, style, label=label)
    ax.axhline(optimum, color="k", lw=1, label=f"PPCA optimum (closed form) {optimum:.2f}")
    tail = np.concatenate([c[len(c) // 10 :] for c in curves.values()])
    low = min(np.nanmin(tail), optimum) if tail.size else optimum - 10
    span = max(optimum - low, 0.5)
    ax.set_ylim(low - 0.1 * span, optimum + 0.1 * span)
    ax.set_xlabel("epoch")
    ax.set_ylabel("nats per datapoint")
    ax.set_title(
        f"K={summary['latent_dim']}: final train ELBO {summary['train_elbo']:.2f}, "
        f"gap {summary['gap']:.3f} nats"
    )
    ax.legend(loc="lower right", fontsize=8)
    ax.grid(alpha=0.3)
    if show_images:
        assert x_test is not None
        rows = x_test[:num_digits]
        recon = (rows @ model["A"].T + model["a"]) @ model["W"].T + model["b"]
        cols, pad = 4, 1
        canvas = np.full(
            (math.ceil(len(rows) / cols) * (side + pad), cols * (2 * side + 3 * pad)), np.nan
        )
        for i, (orig, rec) in enumerate(zip(rows, recon, strict=True)):
            r, c = divmod(i, cols)
            y, x = r * (side + pad), c * (2 * side + 3 * pad)
            canvas[y : y + side, x : x + side] = orig.reshape(side, side)
            canvas[y : y + side, x + side + pad : x + 2 * side + pad] = rec.reshape(side, side)
        axes[0, 1].imshow(canvas, cmap="gray_r", interpolation="nearest")
        axes[0, 1].set_axis_off()
        axes[0, 1].set_title("test digits (left) beside reconstructions W E_q[z] + b (right)")
    fig.tight_layout()
    tr.write_atomic(path, lambda f: fig.savefig(f, format="png", dpi=120))
    plt.close(fig)
