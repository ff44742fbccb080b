r"""The Laplace start shared by :func:`jelbo.fit.dadvi`, :func:`~jelbo.fit.batch_and_match`
and :func:`~jelbo.fit.advi` (internal).

From ``init`` it finds the mode :math:`\hat z` of ``log_joint`` by L-BFGS and the precision
:math:`P = -\nabla^2\log p(x, \hat z)` by ``D`` Hessian-vector products (one per column, in a
``lax.map``, so that each is one counted evaluation and a counter inside ``log_joint`` sees
``D`` of them). Its eigenvalues are made positive (absolute values, floored at
``1e-8`` times the largest, as :func:`jelbo.laplace_approximation` does) and the symmetric
square root :math:`W = P^{-1/2}` whitens the posterior: in :math:`u` with
:math:`z = \hat z + W u` a near-Gaussian posterior is close to :math:`\mathcal N(0, I)`, so
that the algorithms' optimizers see a well-conditioned problem whatever the scales and
correlations of :math:`z` (diamonds' regression coefficients differ by orders of magnitude
and are strongly correlated: the mean-field DADVI objective took 938 L-BFGS iterations from
``(0, I)`` and 5 after this start, see ``docs/fit.md``).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp

from jelbo._typing import Array
from jelbo.fit import _lbfgs
from jelbo.fit._common import CountedLogJoint

_EIGEN_FLOOR = 1e-8


class Start(NamedTuple):
    r"""The Laplace start.

    Attributes:
        loc: the mode :math:`\hat z` (``init`` if no finite point was found), ``(D,)``.
        scale: :math:`W = P^{-1/2}` (symmetric, of the repaired precision), ``(D, D)``.
        log_det_scale: :math:`\log|W|`.
        precision_diag: the diagonal of the repaired precision, ``(D,)``.
        log_joint: :math:`\log p(x, \hat z)`.
        grad_norm: :math:`\lVert\nabla\log p(x,\hat z)\rVert_2`.
        converged: the mode search's stopping rule was met.
        hessian_ok: :math:`P` was positive definite (no repair).
        num_iters: L-BFGS iterations.
        num_evals: evaluations of ``log_joint`` (mode search + ``D`` for the Hessian).
    """

    loc: Array
    scale: Array
    log_det_scale: Array
    precision_diag: Array
    log_joint: Array
    grad_norm: Array
    converged: Array
    hessian_ok: Array
    num_iters: Array
    num_evals: Array


def hessian_by_columns(
    model: CountedLogJoint, z: Array, count: Array
) -> tuple[Array, Array, Array]:
    """The gradient and Hessian of ``log_joint`` at ``z`` by ``D`` forward-over-reverse
    products, counted ``D`` (one ``lax.map`` step per column, so that a counter inside
    ``log_joint`` sees ``D`` too). Returns ``(grad, hessian, count)``."""
    dim = z.shape[-1]
    grad = jax.grad(model._one)

    def column(e: Array) -> tuple[Array, Array]:
        return jax.jvp(grad, (z,), (e,))

    grads, hess = jax.lax.map(column, jnp.eye(dim, dtype=z.dtype))
    return grads[0], 0.5 * (hess + hess.T), count + dim


def laplace_start(
    model: CountedLogJoint, init: Array, count: Array, *, max_iters: int, tol: float
) -> tuple[Start, Array]:
    """Mode by L-BFGS from ``init``, precision by :func:`hessian_by_columns`; see the module
    docstring. Returns ``(start, count)``."""
    before = count

    def negative(z: Array) -> tuple[Array, Array]:
        value, grad = jax.value_and_grad(model._one)(z)
        return -value, -grad

    res = _lbfgs.minimize(negative, init, lbfgs_options(max_iters=max_iters, tol=tol))
    count = count + res.num_evals.astype(count.dtype)
    finite = jnp.isfinite(res.value)
    loc = jnp.where(finite, res.x, init)
    _, hess, count = hessian_by_columns(model, loc, count)
    precision = -hess
    eigenvalues, vectors = jnp.linalg.eigh(precision)
    ok = jnp.all(eigenvalues > 0) & jnp.all(jnp.isfinite(eigenvalues))
    magnitude = jnp.where(jnp.isfinite(eigenvalues), jnp.abs(eigenvalues), 0.0)
    top = jnp.max(magnitude)
    floor = jnp.where(top > 0, _EIGEN_FLOOR * top, 1.0)
    fixed = jnp.maximum(magnitude, floor)
    eye = jnp.eye(init.shape[0], dtype=init.dtype)
    vectors = jnp.where(jnp.all(jnp.isfinite(vectors)), vectors, eye)
    scale = (vectors * jax.lax.rsqrt(fixed)) @ vectors.T
    precision_diag = jnp.einsum("ij,j,ij->i", vectors, fixed, vectors)
    start = Start(
        loc=loc,
        scale=scale,
        log_det_scale=-0.5 * jnp.sum(jnp.log(fixed)),
        precision_diag=precision_diag,
        log_joint=-res.value,
        grad_norm=jnp.linalg.norm(res.grad),
        converged=res.converged & finite,
        hessian_ok=ok,
        num_iters=res.num_iters,
        num_evals=count - before,
    )
    return start, count


def tril_from_square_root(a: Array) -> Array:
    r"""The lower-triangular :math:`L` with :math:`LL^\top = AA^\top` and a positive diagonal,
    from the QR decomposition :math:`A^\top = QR` (:math:`L = R^\top`, signs fixed), which
    does not square :math:`A`'s condition number."""
    r = jnp.linalg.qr(a.T, mode="r")
    signs = jnp.where(jnp.diagonal(r) < 0, -1.0, 1.0).astype(a.dtype)
    return (r * signs[:, None]).T


def lbfgs_options(
    *, max_iters: int, tol: float, history: int = 10, confirm: bool = True
) -> _lbfgs.Options:
    r"""The :mod:`jelbo.fit._lbfgs` options for a stopping rule in nats: the predicted
    decrease of the quadratic model to its minimum, :math:`\tfrac12\lambda^2 =
    \tfrac12\nabla f^\top H\nabla f`, at most ``tol``, i.e. the decrement
    :math:`\lambda \le \sqrt{2\,\mathrm{tol}}` (plus the L-BFGS's relative-objective
    rule at 100 float epsilons, what the objective can resolve). ``confirm``: see
    :class:`jelbo.fit._lbfgs.Options`."""
    return _lbfgs.Options(
        max_iters=max_iters, history=history, gtol=math.sqrt(2.0 * tol), confirm=confirm
    )
