"""dtype sweep of the bijectors and the objectives (the families' and KL pairs' results are
checked in ``test_sweep_families.py`` and ``test_sweep_kl.py``).

With x64 enabled, float32 inputs must give float32 results and float64 inputs float64:
no Python float or NumPy float64 constant may promote a result. Every public bijector
(found by introspection of ``jelbo.bijectors``) and every objective with each of its
estimators is swept; their gradients must keep the dtype too. Dtypes are decided at trace
time, so these checks trace (``jax.eval_shape``) without compiling or running anything.
"""

from __future__ import annotations

import inspect

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from families import FAMILIES

import jelbo
from jelbo import bijectors as B

DTYPES = (np.float32, np.float64)
IDS = ("f32", "f64")

# name -> (bijector in a dtype, input event shape). Parameters are given both as arrays of
# the dtype and as Python floats (the defaults), which must stay weakly typed.
BIJECTORS = {
    "Identity": (lambda d: B.Identity(), (3,)),
    "Exp": (lambda d: B.Exp(), (3,)),
    "Softplus": (lambda d: B.Softplus(), (3,)),
    "Sigmoid": (lambda d: B.Sigmoid(), (3,)),
    "Sigmoid(low, high)": (lambda d: B.Sigmoid(jnp.asarray(-2.0, d), jnp.asarray(3.0, d)), (3,)),
    "Affine": (lambda d: B.Affine(2.0, -0.5), (3,)),
    "Affine(arrays)": (lambda d: B.Affine(jnp.ones(3, d), jnp.full(3, 2.0, d)), (3,)),
    "Chain": (lambda d: B.Chain([B.Affine(0.5, 2.0), B.Exp()]), (3,)),
    "StickBreaking": (lambda d: B.StickBreaking(), (3,)),
    "Ordered": (lambda d: B.Ordered(), (3,)),
    "PositiveOrdered": (lambda d: B.PositiveOrdered(), (3,)),
    "FillScaleTriL": (lambda d: B.FillScaleTriL(1e-3), (6,)),
    "FillScaleTriL(array)": (lambda d: B.FillScaleTriL(jnp.asarray(1e-3, d)), (6,)),
    "CorrCholesky": (lambda d: B.CorrCholesky(), (3,)),
}


def _public_bijectors() -> set[type]:
    found = set()
    for name in B.__all__:
        obj = getattr(B, name)
        if isinstance(obj, type) and issubclass(obj, B.Bijector) and not inspect.isabstract(obj):
            found.add(obj)
    return found


def test_every_public_bijector_is_swept():
    swept = {type(make(np.float32)) for make, _ in BIJECTORS.values()}
    missing = sorted(cls.__name__ for cls in _public_bijectors() - swept)
    assert not missing, f"bijectors missing from BIJECTORS: {missing}"


@pytest.mark.parametrize("dtype", DTYPES, ids=IDS)
@pytest.mark.parametrize("name", list(BIJECTORS))
def test_bijector_keeps_the_dtype(name, dtype):
    make, shape = BIJECTORS[name]
    bijector = make(dtype)
    x = jnp.asarray(np.linspace(-0.8, 0.9, int(np.prod(shape))).reshape(shape), dtype)

    def results(x):
        y = B.forward(bijector, x)
        return {
            "forward": y,
            "inverse": B.inverse(bijector, y),
            "forward_log_det_jacobian": B.forward_log_det_jacobian(bijector, x),
            "inverse_log_det_jacobian": B.inverse_log_det_jacobian(bijector, y),
            "grad": jax.grad(lambda v: jnp.sum(B.forward(bijector, v)))(x),
        }

    wrong = {k: v.dtype for k, v in jax.eval_shape(results, x).items() if v.dtype != dtype}
    assert not wrong, f"{name} with {np.dtype(dtype).name} inputs: {wrong}"


# --- objectives ------------------------------------------------------------------------------

OBJECTIVES = {
    "ELBO(analytic, reparam)": jelbo.ELBO(num_samples=3),
    "ELBO(analytic, score)": jelbo.ELBO(num_samples=3, grad_estimator="score"),
    "ELBO(mc, reparam)": jelbo.ELBO(num_samples=3, kl="mc"),
    "ELBO(mc, stl)": jelbo.ELBO(num_samples=3, kl="mc", grad_estimator="stl"),
    "ELBO(mc, score)": jelbo.ELBO(num_samples=3, kl="mc", grad_estimator="score"),
    "ELBO(score, baseline, beta)": jelbo.ELBO(
        num_samples=3, grad_estimator="score", baseline=0.5, beta=0.7
    ),
    "ELBO(chunked)": jelbo.ELBO(num_samples=4, kl="mc", sample_chunk_size=2),
    "IWAE(reparam)": jelbo.IWAE(num_samples=3),
    "IWAE(dreg)": jelbo.IWAE(num_samples=3, grad_estimator="dreg"),
    "IWAE(vimco)": jelbo.IWAE(num_samples=3, grad_estimator="vimco"),
    "Renyi(0.5)": jelbo.Renyi(alpha=0.5, num_samples=3),
    "Renyi(1)": jelbo.Renyi(alpha=1.0, num_samples=3),
}


def test_every_estimator_is_swept():
    from typing import get_args

    from jelbo import objectives

    swept = {
        (type(o).__name__, getattr(o, "kl", None), o.grad_estimator)
        for o in OBJECTIVES.values()
        if hasattr(o, "grad_estimator")
    }
    wanted = {
        ("ELBO", kl, g)
        for kl in get_args(objectives.KLEstimator)
        for g in get_args(objectives.ELBOGradEstimator)
        if not (kl == "analytic" and g == "stl")  # refused at construction
    } | {("IWAE", None, g) for g in get_args(objectives.IWAEGradEstimator)}
    assert wanted <= swept, sorted(wanted - swept)


def _problem(dtype):
    q = jelbo.Normal(jnp.asarray([[0.1, -0.2], [0.3, 0.0]], dtype), jnp.full((2, 2), 0.8, dtype))
    prior = jelbo.Normal(jnp.zeros(2, dtype), jnp.ones(2, dtype))
    data = jnp.asarray([[0.5, 1.0], [-1.0, 0.2]], dtype)

    def log_likelihood(z, x):
        return -0.5 * jnp.sum((x - z) ** 2)

    return q, prior, data, log_likelihood


@pytest.mark.parametrize("dtype", DTYPES, ids=IDS)
@pytest.mark.parametrize("name", list(OBJECTIVES))
def test_objective_keeps_the_dtype(name, dtype):
    objective = OBJECTIVES[name]
    q, prior, data, log_likelihood = _problem(dtype)
    key = jax.random.key(0)

    def value(q):
        return jnp.sum(objective(key, q, log_likelihood, prior, data).value)

    def results(q):
        bound = objective(key, q, log_likelihood, prior, data)
        fields = {k: v for k, v in bound._asdict().items() if v is not None}
        fields["grad.loc"] = jax.grad(value)(q).loc
        fields["grad.scale"] = jax.grad(value)(q).scale
        return fields

    wrong = {k: v.dtype for k, v in jax.eval_shape(results, q).items() if v.dtype != dtype}
    assert not wrong, f"{name} with {np.dtype(dtype).name} inputs: {wrong}"


@pytest.mark.parametrize("dtype", DTYPES, ids=IDS)
def test_covariance_and_stddev_keep_the_dtype(dtype):
    # The swept methods' dtypes are checked with their values; covariance and stddev here.
    wrong = []
    for fam in FAMILIES:
        if not fam.params:
            continue
        point = next(p for p in fam.points if p.f32)
        theta = jnp.asarray(point.theta, dtype)
        for name in ("covariance", "stddev"):
            try:
                out = jax.eval_shape(lambda t, f=fam, n=name: getattr(f.make(t), n)(), theta)
            except NotImplementedError:
                continue
            if out.dtype != dtype:
                wrong.append(f"{fam.name}.{name}: {out.dtype}")
    assert not wrong, wrong
