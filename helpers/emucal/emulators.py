"""Emulators: fast statistical stand-ins for the model's skill as a function of its parameters.

An emulator is trained on an ensemble (parameter sets and the skill of the runs)
and then predicts the skill of parameter sets that were never run, with an
uncertainty. This module has three:

:class:`GPEmulator`
    An exact Gaussian process (GPyTorch): Matern 5/2 kernel with one
    lengthscale per input (ARD), float64, inputs scaled to the unit cube,
    outputs standardised, a noise floor. Give it 2-D inputs ``(n, d)`` for one
    GP, or 3-D inputs ``(basin, n, d)`` for one GP per basin trained together
    as one batched model: the single-site emulators (SSE) of Tang et al. (2025).
:class:`SparseGPEmulator`
    A variational GP with inducing points, trained on minibatches: the
    large-sample emulator (LSE) when the training set is too large for an
    exact GP.
:class:`RandomForestEmulator`
    scikit-learn's random forest (100 trees, as Tang et al.), the baseline.

All follow scikit-learn's conventions: settings in ``__init__``, ``fit(X,
y)``, ``predict(X, return_std=True)``, fitted state in attributes with a
trailing underscore. :func:`make_lse` chooses between the exact and the
variational GP by the size of the training set, and :func:`cross_validate`
scores any of them on held-out runs or held-out basins.

Why a Gaussian process? With a few hundred runs in 16 dimensions, a GP is
the most data-efficient regression we know: it interpolates smoothly, says
how unsure it is away from the runs (which the calibration uses to decide
where to run the model next), and its lengthscales read as sensitivities: a
short lengthscale means the skill changes quickly with that parameter.

Why the exact-to-variational switch? An exact GP costs O(n^3) time and O(n^2)
memory in the number of training runs n: one evaluation of the marginal
likelihood and its gradients on 3,000 runs with 33 inputs (16 parameters and
17 attributes) takes seconds on 2 cores, a fit needs up to 100 of them, and
the cost grows with n^3 (``benchmarks/emulators.py`` measures it; the
cluster appendix of the book scales it up). At the 125,400 runs of 627
basins x 200 members an exact GP is out of reach. The variational GP
(Hensman et al. 2013) summarises the data with m inducing points (here 256)
and costs O(n m^2) per pass, in minibatches, so memory does not grow with
n; the same benchmark times it on the 6,650 runs of 19 basins x 350
members. :func:`make_lse` switches at :data:`EXACT_GP_MAX_N` = 1,000 runs.

References
----------
Rasmussen, C. E. and Williams, C. K. I. (2006). Gaussian Processes for Machine
Learning. MIT Press.
Gardner, J. R. et al. (2018). GPyTorch: blackbox matrix-matrix Gaussian process
inference with GPU acceleration. NeurIPS.
Hensman, J., Fusi, N. and Lawrence, N. D. (2013). Gaussian processes for big
data. UAI.
Hvarfner, C., Hellsten, E. O. and Nardi, L. (2024). Vanilla Bayesian optimization
performs great in high dimensions. ICML.
Breiman, L. (2001). Random forests. Machine Learning 45, 5-32.
Tang, G., Wood, A. W. and Swenson, S. (2025). Water Resour. Res. 61, e2024WR039525.
"""

from __future__ import annotations

import contextlib
import functools
import time
import warnings
from pathlib import Path
from typing import Callable

import gpytorch
import numpy as np
import pandas as pd
import torch
from sklearn.base import BaseEstimator

from . import metrics as skill_metrics
from ._io import atomic_path
from ._threads import size_thread_pools

__all__ = [
    "EXACT_GP_MAX_N",
    "lse_data",
    "lse_features",
    "sse_data",
    "LSE_ATTRIBUTES",
    "BatchedGP",
    "PriorMean",
    "PriorMeanGP",
    "GPEmulator",
    "RandomForestEmulator",
    "SparseGPEmulator",
    "cross_validate",
    "default_dtype",
    "fit_gp",
    "gp_predict",
    "kfold",
    "load",
    "make_lse",
    "matern52",
]

#: Largest training set for which :func:`make_lse` uses an exact GP.
EXACT_GP_MAX_N = 1000

#: GPyTorch solves with conjugate gradients above 800 training points by
#: default; the emulators keep the exact Cholesky factor up to this size.
MAX_CHOLESKY_SIZE = 20_000

#: CAMELS attributes used as large-sample emulator inputs. Tang et al. (2025)
#: used 27; this subset keeps those that describe what the teaching model
#: responds to (climate, snow, topography, soils, vegetation, geology) and
#: exists for every sample basin; no flow signature is used, so the LSE can
#: be applied to ungauged basins.
LSE_ATTRIBUTES = (
    "p_mean", "pet_mean", "aridity", "frac_snow", "p_seasonality", "high_prec_freq",
    "elev_mean", "slope_mean", "soil_depth_pelletier", "soil_porosity",
    "soil_conductivity", "clay_frac", "sand_frac", "frac_forest", "lai_max", "lai_diff",
    "carbonate_rocks_frac",
)


# ------------------------------------------------------------- training data
def sse_data(ens, space, metric: str = "norm_kge", period: str = "calibration"):
    """Training data for single-site emulators from an ensemble.

    Parameters
    ----------
    ens
        Output of :func:`emucal.ensemble.run_ensemble` (``params`` and the metric).
    space
        The :class:`~emucal.parameters.ParameterSpace` of the samples.
    metric, period
        The skill to emulate (normKGE in Tang et al. 2025) and the period.

    Returns
    -------
    X : ndarray ``(basin, member, param)``
        Parameters in the unit cube (log-scaled ones by their logarithm);
        a NaN in ``params`` (the default member) is the basin's own default.
    y : ndarray ``(basin, member)``
        The skill. A run without a score (NaN: its flow does not vary) counts
        as the worst of its basin (normKGE: -1).
    """
    params = ens["params"].transpose("member", "param").values[None]
    if "defaults" in ens:  # NaN in params: the basin's default (the default member)
        base = ens["defaults"].transpose("basin", "param").values[:, None, :]
        params = np.where(np.isnan(params), base, params)
    elif np.isnan(params).any():
        raise ValueError("params has NaN (a basin's default) but the ensemble has no "
                         "'defaults(basin, param)' to resolve it; drop those members.")
    y = ens[metric].sel(period=period).transpose("basin", "member").values
    unit = space.to_unit(np.broadcast_to(params, y.shape + (params.shape[-1],)))
    if not np.isfinite(y).any(axis=1).all():
        bad = ens.basin.values[~np.isfinite(y).any(axis=1)]
        raise ValueError(f"{metric} is NaN in every run of basins {list(bad)} (no observed flow "
                         f"in the {period} period?); drop them with ens.drop_sel(basin=...).")
    if not np.isfinite(y).all():
        # a run whose flow does not vary has no KGE: count it as the worst run of its basin
        # (for normKGE, its floor -1)
        floor = -1.0 if metric == "norm_kge" else np.nanmin(y, axis=1, keepdims=True)
        y = np.where(np.isfinite(y), y, floor)
    return np.ascontiguousarray(unit), y


def lse_features(unit_params, basin_attrs) -> np.ndarray:
    """Large-sample emulator inputs: unit-cube parameters next to basin attributes.

    ``unit_params`` is ``(n, n_param)``; ``basin_attrs`` is ``(n, n_attr)`` (one
    row per run) or ``(n_attr,)`` (one basin for all runs).
    """
    unit_params = np.atleast_2d(np.asarray(unit_params, float))
    basin_attrs = np.asarray(basin_attrs, float)
    if basin_attrs.ndim == 1:
        basin_attrs = np.broadcast_to(basin_attrs, (unit_params.shape[0], basin_attrs.size))
    if not np.isfinite(basin_attrs).all():
        raise ValueError("Basin attributes contain NaN; choose attributes that exist for these "
                         "basins or fill them first.")
    return np.concatenate([unit_params, basin_attrs], axis=1)


def lse_data(ens, attrs: pd.DataFrame, space, metric: str = "norm_kge",
             period: str = "calibration", attributes=LSE_ATTRIBUTES):
    """Training data for a large-sample emulator: every (member, basin) run is one row.

    Returns
    -------
    X : ndarray ``(member * basin, n_param + n_attr)``
    y : ndarray ``(member * basin,)``
    basins : ndarray
        The basin of each row (for grouped cross-validation).
    """
    x_sse, y_sse = sse_data(ens, space, metric, period)  # basin x member x param
    missing = [a for a in attributes if a not in attrs.columns]
    if missing:
        raise KeyError(f"Attributes {missing} are not in the table; see LSE_ATTRIBUTES.")
    table = attrs.loc[ens.basin.values, list(attributes)].to_numpy(dtype=float)
    n_basin, n_member = y_sse.shape
    x = lse_features(x_sse.reshape(n_basin * n_member, -1), np.repeat(table, n_member, axis=0))
    return x, y_sse.ravel(), np.repeat(ens.basin.values, n_member)


class _Scaler:
    """Inputs to the unit cube (given or data bounds), outputs to zero mean, unit sd."""

    def __init__(self, x: np.ndarray, y: np.ndarray, lower=None, upper=None):
        self.lower = np.min(x, axis=-2, keepdims=True) if lower is None else np.asarray(lower, float)
        self.upper = np.max(x, axis=-2, keepdims=True) if upper is None else np.asarray(upper, float)
        self.span = np.where(self.upper > self.lower, self.upper - self.lower, 1.0)
        self.y_mean = y.mean(axis=-1, keepdims=True)
        self.y_std = y.std(axis=-1, keepdims=True)
        self.y_std = np.where(self.y_std > 0, self.y_std, 1.0)

    def x(self, x):
        return (np.asarray(x, float) - self.lower) / self.span

    def y(self, y):
        return (np.asarray(y, float) - self.y_mean) / self.y_std


def _check_xy(x, y):
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    if x.ndim not in (2, 3):
        raise ValueError(f"X must be (n, d) or (batch, n, d); got shape {x.shape}.")
    if y.shape != x.shape[:-1]:
        raise ValueError(f"y must have shape {x.shape[:-1]} to match X {x.shape}; got {y.shape}.")
    if not (np.isfinite(x).all() and np.isfinite(y).all()):
        raise ValueError("X and y must be finite; drop runs whose skill is NaN first.")
    if x.shape[-2] < 3:
        raise ValueError(f"Need at least 3 training runs, got {x.shape[-2]}.")
    return x, y


def _device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(f"device={device!r} but no CUDA GPU is available; use 'cpu' or 'auto'.")
    return torch.device(device)


# --------------------------------------------------------------------- exact GP
# Saved from chapter 4 (book/04_emulators.ipynb, cells marked "#@save emucal.emulators"):
# the chapter writes the model, its fit and its prediction; tests/test_notebook_code.py
# fails when the chapter's cells and these definitions differ.

def matern52(d: int, batch_shape=torch.Size()):
    """A scaled Matern 5/2 kernel with one lengthscale per input (ARD).

    The lengthscales get the log-normal prior of Hvarfner et al. (2024),
    ``log(lengthscale) ~ Normal(sqrt(2) + log(d) / 2, sqrt(3))``: the more
    inputs, the longer the typical lengthscale, which keeps 16 or more ARD
    lengthscales from overfitting a few hundred runs. Lengthscales stay
    within 0.01 and 100 (unit-cube units).

    Parameters
    ----------
    d
        Number of inputs.
    batch_shape
        One independent kernel per batch member (for example per basin).
    """
    prior = gpytorch.priors.LogNormalPrior(np.sqrt(2) + np.log(d) / 2, np.sqrt(3))
    matern = gpytorch.kernels.MaternKernel(
        nu=2.5, ard_num_dims=d, batch_shape=batch_shape, lengthscale_prior=prior,
        lengthscale_constraint=gpytorch.constraints.Interval(0.01, 100.0))
    return gpytorch.kernels.ScaleKernel(matern, batch_shape=batch_shape)


class BatchedGP(gpytorch.models.ExactGP):
    """Independent exact GPs, one per batch member: a constant mean and :func:`matern52`.

    Inputs ``x`` are ``(..., n, d)`` and outputs ``y`` ``(..., n)``; the
    leading dimensions (for example one per basin) are the batch. GPyTorch's
    batched linear algebra then fits and predicts all members at once.
    """

    def __init__(self, x, y, likelihood):
        super().__init__(x, y, likelihood)
        batch_shape = x.shape[:-2]
        self.mean_module = gpytorch.means.ConstantMean(batch_shape=batch_shape)
        self.covar_module = matern52(x.shape[-1], batch_shape)

    def forward(self, x):
        return gpytorch.distributions.MultivariateNormal(self.mean_module(x), self.covar_module(x))


@contextlib.contextmanager
def default_dtype(dtype):
    """Make ``dtype`` torch's default dtype inside the block.

    GPyTorch turns Python numbers (a prior's centre, a constraint's bounds, a
    starting value) into tensors of torch's default dtype, which is float32
    unless a program changed it. Converting the model to float64 afterwards
    keeps those float32-rounded values, so a "float64" fit would depend on a
    global setting that any imported code (a BoTorch script, for instance)
    may change. Building inside ``default_dtype(x.dtype)`` makes the fit the
    same whatever that setting is. The previous default is restored on exit,
    also after an error. The setting is process-wide: two threads that fit GPs
    at once (a dask worker with several threads) would share it.
    """
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(previous)


def fit_gp(x, y, *, make_model=BatchedGP, noise_floor: float = 1e-4, max_iter: int = 100):
    """Fit a GP by maximising its marginal likelihood with L-BFGS.

    Parameters
    ----------
    x, y
        float64 tensors ``(..., n, d)`` (inputs in the unit cube) and
        ``(..., n)`` (standardised outputs); leading dimensions are a batch
        of independent GPs.
    make_model
        Called as ``make_model(x, y, likelihood)``; returns a GPyTorch
        ``ExactGP`` whose ``covar_module`` is a :func:`matern52` kernel.
    noise_floor
        Smallest noise variance (standardised units). The model is
        deterministic, but skill surfaces are rough at small scales; a floor
        keeps the fit stable and the intervals honest.
    max_iter
        Most L-BFGS iterations (torch stops after ``1.25 * max_iter``
        evaluations of the loss at most).

    Returns
    -------
    The fitted model, in evaluation mode; ``model.likelihood`` is its
    Gaussian likelihood.
    """
    with default_dtype(x.dtype):  # priors, bounds and starting values in the dtype of x
        likelihood = gpytorch.likelihoods.GaussianLikelihood(
            batch_shape=x.shape[:-2], noise_constraint=gpytorch.constraints.GreaterThan(noise_floor))
        model = make_model(x, y, likelihood)
        # start smooth, nearly noise-free: from the default noise (0.69) a GP may predict a constant
        likelihood.noise = max(1e-2, 2 * noise_floor)
        model.covar_module.outputscale = 1.0
        model.covar_module.base_kernel.lengthscale = 1.0
    model = model.to(x)  # on the device of x
    mll = gpytorch.mlls.ExactMarginalLogLikelihood(likelihood, model)
    optimizer = torch.optim.LBFGS(model.parameters(), max_iter=max_iter, tolerance_change=1e-5,
                                  line_search_fn="strong_wolfe")

    def closure():
        optimizer.zero_grad()
        loss = -mll(model(x), y).sum()  # the members are independent: one summed loss
        loss.backward()
        return loss

    model.train()
    optimizer.step(closure)
    return model.eval()


def gp_predict(model, x):
    """Predictive mean and standard deviation (noise included) of a fitted GP at ``x``."""
    with torch.no_grad():
        prediction = model.likelihood(model(x))
    return prediction.mean, prediction.variance.clamp_min(0).sqrt()


# ------------------------------------------------- the GP with a prior mean (chapter 6)
# Saved from chapter 6 (book/06_large_sample.ipynb, cells marked "#@save emucal.emulators").

class PriorMean(gpytorch.means.Mean):
    """The mean ``a * x[..., -1] + b``, one ``a`` and ``b`` per batch member.

    The last input column holds a prior prediction (a large-sample
    emulator's), so ``a`` says how far each basin trusts it: Kennedy and
    O'Hagan's autoregressive model, ``f(x) = a g(x) + delta(x)``.

    Parameters
    ----------
    batch_shape
        One ``a`` and ``b`` per batch member (basin).
    weight_sd
        ``None``, or the standard deviation of a normal prior on ``a``,
        centred at 0 (standardised units, one per batch member), which shrinks
        ``a`` towards the plain GP unless the runs clearly support the prior.
    """

    def __init__(self, batch_shape, weight_sd=None):
        super().__init__()
        self.register_parameter("weight", torch.nn.Parameter(torch.zeros(*batch_shape, 1)))
        self.register_parameter("bias", torch.nn.Parameter(torch.zeros(*batch_shape, 1)))
        if weight_sd is not None:
            self.register_prior("weight_prior", gpytorch.priors.NormalPrior(
                torch.zeros_like(weight_sd), weight_sd), "weight")

    def forward(self, x):
        return self.weight * x[..., -1] + self.bias


class PriorMeanGP(gpytorch.models.ExactGP):
    """:class:`BatchedGP` with a :class:`PriorMean`; the kernel sees every input but the last."""

    def __init__(self, x, y, likelihood, weight_sd=None):
        super().__init__(x, y, likelihood)
        d = x.shape[-1]
        self.mean_module = PriorMean(x.shape[:-2], weight_sd)
        self.covar_module = matern52(d - 1, x.shape[:-2])
        self.covar_module.active_dims = torch.arange(d - 1)  # the prior enters the mean only

    def forward(self, x):
        return gpytorch.distributions.MultivariateNormal(self.mean_module(x), self.covar_module(x))


def _predict(em, x: np.ndarray, chunk_size: int, return_std: bool):
    """Predictive mean (and sd) of a fitted emulator, chunk by chunk along axis -2."""
    size_thread_pools()  # a loaded emulator may predict before any fit
    _check_inputs(em, x)
    dev = next(em.model_.parameters()).device
    means, stds = [], []
    # the variance costs far more than the mean: GPyTorch skips it unless asked (half the
    # time of a search on the mean)
    with gpytorch.settings.max_cholesky_size(MAX_CHOLESKY_SIZE), \
            gpytorch.settings.skip_posterior_variances(not return_std), warnings.catch_warnings():
        # predicting at the training inputs is a legitimate use (a prior mean, a fit check)
        warnings.filterwarnings("ignore", category=gpytorch.utils.warnings.GPInputWarning)
        for i in range(0, x.shape[-2], chunk_size):
            part = torch.as_tensor(em.scaler_.x(x[..., i:i + chunk_size, :]),
                                   dtype=torch.float64, device=dev)
            if isinstance(em.model_, gpytorch.models.ExactGP):
                mean, std = gp_predict(em.model_, part)
            else:  # the variational GP keeps its likelihood apart
                with torch.no_grad():
                    pred = em.likelihood_(em.model_(part))
                mean, std = pred.mean, pred.variance.clamp_min(0).sqrt()
            means.append(mean.cpu().numpy())
            if return_std:
                stds.append(std.cpu().numpy())
    y_mean, y_std = em.scaler_.y_mean, em.scaler_.y_std
    if x.ndim == 2:
        y_mean, y_std = y_mean[..., 0], y_std[..., 0]
    mean = np.concatenate(means, axis=-1) * y_std + y_mean
    if not return_std:
        return mean
    return mean, np.concatenate(stds, axis=-1) * y_std


def _check_inputs(em, x: np.ndarray) -> None:
    """Refuse NaN inputs; warn when inputs leave the bounds the emulator was told (extrapolation)."""
    if not np.isfinite(x).all():
        raise ValueError("X holds NaN or infinite values; an emulator cannot predict there "
                         "(map parameter values with ParameterSpace.to_unit, with no NaN).")
    lower, upper = getattr(em, "lower", None), getattr(em, "upper", None)
    if lower is None or upper is None:
        return
    tol = 1e-9
    if np.any(x < np.asarray(lower, float) - tol) or np.any(x > np.asarray(upper, float) + tol):
        warnings.warn(f"Some inputs lie outside the emulator's bounds [{lower}, {upper}]: it "
                      "extrapolates there, and its predictions mean little.", UserWarning,
                      stacklevel=4)


class GPEmulator(BaseEstimator):
    """Exact Gaussian-process emulator (one GP, or a batch of independent GPs).

    The scikit-learn face of chapter 4's GP: :class:`BatchedGP`, fitted by
    :func:`fit_gp` and read by :func:`gp_predict`. This class adds what a
    chapter should not have to show: inputs scaled to the unit cube and
    outputs standardised (and back), batches fitted in groups, devices,
    chunked prediction, joint posterior draws and save/load.

    Parameters
    ----------
    noise_floor
        Smallest noise variance, in units of the standardised output (see
        :func:`fit_gp`).
    max_iter
        Most L-BFGS iterations per fit (see :func:`fit_gp`).
    lower, upper
        Input bounds, mapped to 0 and 1 before fitting. The default, 0 and
        1, is the unit cube of parameters scaled with ``space.to_unit``.
        ``None``: the training data's range, for inputs in their own units
        (for example basin attributes). Predictions outside the bounds warn:
        the GP extrapolates there.
    mean
        The GP's prior mean: ``"constant"`` (default), or ``"last_input"``:
        ``a * x_last + b``, with ``a`` and ``b`` fitted (per batch member)
        and a kernel over the other inputs only. With a cheaper emulator's
        prediction as the last input this is the autoregressive model of
        Kennedy and O'Hagan (2000), ``f(x) = a g(x) + delta(x)``: the GP
        learns how much to trust ``g`` and what it misses, and ``a = 0`` is
        the plain GP, so ``g`` can be ignored where it does not help.
    device
        ``"cpu"``, ``"cuda"`` or ``"auto"``.
    seed
        Seeds torch before training (the same seed gives the same fit).
    group_size
        With batched input ``(batch, n, d)``, fit the independent GPs in groups
        of this many batch members, one after the other; ``None`` fits the
        whole batch as one. The GPs are independent, so grouping changes
        nothing in the model, only the optimisation: L-BFGS on one summed
        loss needs more steps the more members it carries, and the kernel
        matrices of all members are in memory at once, so small groups fit
        faster and in less memory; prediction costs one call per group, so
        groups of 4 balance the two.

    Attributes
    ----------
    lengthscales_ : ndarray
        Fitted ARD lengthscales in unit-cube units, ``(d,)`` or ``(batch, d)``.
        Short means the output is sensitive to that input.
    noise_ : ndarray
        Fitted noise variance (standardised units).
    mean_weight_ : ndarray
        With ``mean="last_input"``: the fitted ``a``, in output units per
        unit of the last input (1: that input is trusted as it is).
    fit_time_ : float
        Seconds the fits took, summed over groups.
    """

    def __init__(self, *, noise_floor: float = 1e-4, max_iter: int = 100, lower=0.0, upper=1.0,
                 mean: str = "constant", device: str = "cpu", seed: int = 0,
                 group_size: int | None = 4):
        if mean not in ("constant", "last_input"):
            raise ValueError(f"mean must be 'constant' or 'last_input', not {mean!r}.")
        self.noise_floor = noise_floor
        self.max_iter = max_iter
        self.lower = lower
        self.upper = upper
        self.mean = mean
        self.device = device
        self.seed = seed
        self.group_size = group_size

    def fit(self, X, y) -> "GPEmulator":
        """Fit to inputs ``X`` ``(n, d)`` or ``(batch, n, d)`` and outputs ``y``."""
        size_thread_pools()  # PyTorch's CPU threads sized to the CPU quota, once
        x, y = _check_xy(X, y)
        if self.mean == "last_input" and x.shape[-1] < 2:
            raise ValueError("mean='last_input' needs at least two inputs: the kernel's and the mean's.")
        if x.ndim == 3 and self.group_size and x.shape[0] > self.group_size:
            return self._fit_groups(x, y)
        self.__dict__.pop("groups_", None)
        torch.manual_seed(self.seed)
        dev = _device(self.device)
        self.scaler_ = _Scaler(x, y, self.lower, self.upper)
        batch_shape = torch.Size(x.shape[:-2])
        tx = torch.as_tensor(self.scaler_.x(x), dtype=torch.float64, device=dev)
        ty = torch.as_tensor(self.scaler_.y(y), dtype=torch.float64, device=dev)
        make_model = BatchedGP
        if self.mean == "last_input":
            make_model = PriorMeanGP
        start = time.perf_counter()
        with gpytorch.settings.max_cholesky_size(MAX_CHOLESKY_SIZE):
            model = fit_gp(tx, ty, make_model=make_model, noise_floor=self.noise_floor,
                           max_iter=self.max_iter)
        self.fit_time_ = time.perf_counter() - start
        self.model_, self.likelihood_ = model, model.likelihood
        self.batch_shape_ = tuple(batch_shape)
        self.n_features_in_ = x.shape[-1]
        self.lengthscales_ = (model.covar_module.base_kernel.lengthscale.detach().cpu()
                              .numpy().reshape(*batch_shape, -1))
        self.noise_ = model.likelihood.noise.detach().cpu().numpy().reshape(tuple(batch_shape))
        if self.mean == "last_input":  # a in f = a g + delta, in the units of y and of g
            weight = model.mean_module.weight.detach().cpu().numpy().reshape(tuple(batch_shape))
            self.mean_weight_ = weight * self.scaler_.y_std[..., 0] / self._last_span(x)
        return self

    def _last_span(self, x):
        """The scaler's span of the last input, per batch member."""
        return np.broadcast_to(self.scaler_.span, x.shape[:-2] + (1, x.shape[-1]))[..., 0, -1]

    def _fit_groups(self, x, y) -> "GPEmulator":
        """Fit batch members in groups of ``group_size`` (see the class docstring)."""
        params = {**self.get_params(), "group_size": None}
        groups = [GPEmulator(**params).fit(x[i:i + self.group_size], y[i:i + self.group_size])
                  for i in range(0, x.shape[0], self.group_size)]
        self._set_groups(groups)
        return self

    def _set_groups(self, groups) -> None:
        self.groups_ = groups
        self.model_ = None  # fitted: the groups hold the models
        self.batch_shape_ = (sum(g.batch_shape_[0] for g in groups),)
        self.n_features_in_ = groups[0].n_features_in_
        self.lengthscales_ = np.concatenate([g.lengthscales_ for g in groups])
        self.noise_ = np.concatenate([g.noise_ for g in groups])
        if self.mean == "last_input":
            self.mean_weight_ = np.concatenate([g.mean_weight_ for g in groups])
        self.fit_time_ = sum(getattr(g, "fit_time_", 0.0) for g in groups)

    def sample_y(self, X, n_samples: int = 1, seed: int = 0) -> np.ndarray:
        """Draw functions from the posterior at the points ``X``, jointly.

        Each draw is one plausible skill surface evaluated at every point of
        ``X`` at once (the latent function, without the noise), which is what
        Thompson sampling needs: the argmax of a draw is a point worth running.
        The cost grows with the cube of the number of points per batch member
        (a Cholesky factor of their joint covariance), so keep ``X`` to a few
        thousand points.

        Parameters
        ----------
        X
            Points in the layout of ``fit``: ``(m, d)`` or ``(batch, m, d)``.
        n_samples
            Draws per batch member.
        seed
            Seed of the draws.

        Returns
        -------
        ndarray
            ``(n_samples, m)`` or ``(batch, n_samples, m)``, in output units.
        """
        _check_fitted(self, "model_")
        x = np.asarray(X, dtype=float)
        if x.ndim < 2 or x.shape[-1] != self.n_features_in_ or tuple(x.shape[:-2]) != self.batch_shape_:
            raise ValueError(f"X must have shape {(*self.batch_shape_, 'm', self.n_features_in_)}; "
                             f"got {x.shape}.")
        if n_samples < 1:
            raise ValueError(f"n_samples must be at least 1; got {n_samples}.")
        _check_inputs(self, x)
        if getattr(self, "groups_", None):
            parts, start = [], 0
            for k, g in enumerate(self.groups_):
                stop = start + g.batch_shape_[0]
                parts.append(g.sample_y(x[start:stop], n_samples, seed=seed + 7919 * k))
                start = stop
            return np.concatenate(parts)
        from linear_operator.utils.cholesky import psd_safe_cholesky

        dev = next(self.model_.parameters()).device
        generator = torch.Generator(device="cpu").manual_seed(int(seed))
        with torch.no_grad(), gpytorch.settings.max_cholesky_size(MAX_CHOLESKY_SIZE), \
                warnings.catch_warnings():
            # close candidates make the joint covariance nearly singular: jitter is expected
            warnings.filterwarnings("ignore", category=gpytorch.utils.warnings.NumericalWarning)
            post = self.model_(torch.as_tensor(self.scaler_.x(x), dtype=torch.float64, device=dev))
            chol = psd_safe_cholesky(post.covariance_matrix)
            z = torch.randn((*chol.shape[:-1], n_samples), generator=generator,
                            dtype=torch.float64).to(dev)
            draws = (post.mean.unsqueeze(-1) + chol @ z).transpose(-1, -2).cpu().numpy()
        y_mean, y_std = self.scaler_.y_mean, self.scaler_.y_std
        if x.ndim == 2:
            y_mean, y_std = y_mean[..., 0], y_std[..., 0]
        return draws * y_std[..., None] + y_mean[..., None]

    def predict(self, X, return_std: bool = False, chunk_size: int = 256):
        """Predict the output at ``X`` (same layout as in ``fit``), in chunks.

        Returns the predictive mean, and with ``return_std=True`` also the
        predictive standard deviation, which includes the fitted noise.
        GPyTorch forms the predictive covariance of each chunk (chunk x chunk
        per batch member), so chunks stay small: memory stays near that of the
        training data, and small chunks are also the fastest here.
        """
        _check_fitted(self, "model_")
        x = np.asarray(X, dtype=float)
        if x.ndim < 2 or x.shape[-1] != self.n_features_in_ or tuple(x.shape[:-2]) != self.batch_shape_:
            raise ValueError(f"X must have shape {(*self.batch_shape_, 'm', self.n_features_in_)}; "
                             f"got {x.shape}.")
        if getattr(self, "groups_", None):
            parts, start = [], 0
            for g in self.groups_:
                stop = start + g.batch_shape_[0]
                parts.append(g.predict(x[start:stop], return_std, chunk_size))
                start = stop
            if not return_std:
                return np.concatenate(parts)
            return np.concatenate([m for m, _ in parts]), np.concatenate([sd for _, sd in parts])
        return _predict(self, x, chunk_size, return_std)

    def _state(self) -> dict:
        if getattr(self, "groups_", None):
            return {"class": "GPEmulator", "params": self.get_params(),
                    "groups": [g._state() for g in self.groups_]}
        return {
            "class": "GPEmulator", "params": self.get_params(), "scaler": self.scaler_.__dict__,
            "train_x": self.model_.train_inputs[0].cpu(), "train_y": self.model_.train_targets.cpu(),
            "model": self.model_.state_dict(), "likelihood": self.likelihood_.state_dict(),
            "batch_shape": self.batch_shape_,
        }

    def save(self, path) -> Path:
        """Save the fitted emulator (settings, scaling, training data, hyperparameters)."""
        _check_fitted(self, "model_")
        return _save_state(self._state(), path)

    @classmethod
    def _restore(cls, state) -> "GPEmulator":
        params = _settings(cls, state)
        params["device"] = "cpu"
        params.setdefault("group_size", None)  # files saved before groups existed
        self = cls(**params)
        if "groups" in state:
            self._set_groups([cls._restore(g) for g in state["groups"]])
            return self
        self.scaler_ = _Scaler.__new__(_Scaler)
        self.scaler_.__dict__.update(_from_plain(state["scaler"]))
        batch_shape = torch.Size(state["batch_shape"])
        with default_dtype(torch.float64):
            likelihood = gpytorch.likelihoods.GaussianLikelihood(
                batch_shape=batch_shape,
                noise_constraint=gpytorch.constraints.GreaterThan(self.noise_floor))
            make_model = PriorMeanGP if self.mean == "last_input" else BatchedGP
            model = make_model(state["train_x"], state["train_y"], likelihood)
        model.load_state_dict(state["model"])
        likelihood.load_state_dict(state["likelihood"])
        model.eval()
        likelihood.eval()
        self.model_, self.likelihood_ = model, likelihood
        self.batch_shape_ = tuple(batch_shape)
        self.n_features_in_ = state["train_x"].shape[-1]
        self.lengthscales_ = (model.covar_module.base_kernel.lengthscale.detach().numpy()
                              .reshape(*batch_shape, -1))
        self.noise_ = likelihood.noise.detach().numpy().reshape(tuple(batch_shape))
        return self


def _check_fitted(estimator, attribute: str) -> None:
    if not hasattr(estimator, attribute):
        raise RuntimeError(f"This {type(estimator).__name__} is not fitted yet; call fit(X, y) first.")


# ----------------------------------------------------------------- sparse GP
class _SparseModel(gpytorch.models.ApproximateGP):
    def __init__(self, inducing):
        distribution = gpytorch.variational.CholeskyVariationalDistribution(inducing.shape[0])
        strategy = gpytorch.variational.VariationalStrategy(
            self, inducing, distribution, learn_inducing_locations=True)
        super().__init__(strategy)
        self.mean_module = gpytorch.means.ConstantMean()
        self.covar_module = matern52(inducing.shape[-1])

    def forward(self, x):
        return gpytorch.distributions.MultivariateNormal(self.mean_module(x), self.covar_module(x))


class SparseGPEmulator(BaseEstimator):
    """Variational Gaussian-process emulator for large training sets (Hensman et al. 2013).

    Parameters
    ----------
    n_inducing
        Inducing points (initialised on a random subset of the training inputs).
    batch_size
        Minibatch size.
    max_epochs
        Training stops after ``max_epochs`` passes over the data, or when the
        epoch's mean loss has not improved by :attr:`TOL` (relative) for
        :attr:`PATIENCE` epochs (Adam, learning rate :attr:`LR`).
    noise_floor, lower, upper, device, seed
        As in :class:`GPEmulator`.

    Attributes
    ----------
    lengthscales_, noise_, n_iter_ (epochs), fit_time_
    """

    LR, TOL, PATIENCE = 0.05, 1e-4, 5

    def __init__(self, *, n_inducing: int = 256, batch_size: int = 1024, max_epochs: int = 100,
                 noise_floor: float = 1e-4, lower=None, upper=None, device: str = "cpu",
                 seed: int = 0):
        self.n_inducing = n_inducing
        self.batch_size = batch_size
        self.max_epochs = max_epochs
        self.noise_floor = noise_floor
        self.lower = lower
        self.upper = upper
        self.device = device
        self.seed = seed

    def fit(self, X, y) -> "SparseGPEmulator":
        """Fit to inputs ``X`` ``(n, d)`` and outputs ``y`` ``(n,)``."""
        x, y = _check_xy(X, y)
        if x.ndim != 2:
            raise ValueError("SparseGPEmulator takes 2-D inputs (n, d); batch SSEs use GPEmulator.")
        size_thread_pools()
        torch.manual_seed(self.seed)
        gen = torch.Generator().manual_seed(self.seed)
        dev = _device(self.device)
        self.scaler_ = _Scaler(x, y, self.lower, self.upper)
        tx = torch.as_tensor(self.scaler_.x(x), dtype=torch.float64)
        ty = torch.as_tensor(self.scaler_.y(y), dtype=torch.float64)
        n = tx.shape[0]
        m = min(self.n_inducing, n)
        inducing = tx[torch.randperm(n, generator=gen)[:m]].clone()
        with default_dtype(torch.float64):  # as in fit_gp
            model = _SparseModel(inducing)
            likelihood = gpytorch.likelihoods.GaussianLikelihood(
                noise_constraint=gpytorch.constraints.GreaterThan(self.noise_floor))
            likelihood.noise = max(1e-2, 2 * self.noise_floor)
            model.covar_module.outputscale = 1.0
            model.covar_module.base_kernel.lengthscale = 1.0
        model = model.to(device=dev, dtype=torch.float64)
        likelihood = likelihood.to(device=dev, dtype=torch.float64)
        model.train()
        likelihood.train()
        mll = gpytorch.mlls.VariationalELBO(likelihood, model, num_data=n)
        opt = torch.optim.Adam([*model.parameters(), *likelihood.parameters()], lr=self.LR)
        tx, ty = tx.to(dev), ty.to(dev)
        best, since, epoch = np.inf, 0, 0
        start = time.perf_counter()
        for epoch in range(1, self.max_epochs + 1):
            order = torch.randperm(n, generator=gen).to(dev)
            total = 0.0
            for i in range(0, n, self.batch_size):
                idx = order[i:i + self.batch_size]
                opt.zero_grad()
                loss = -mll(model(tx[idx]), ty[idx])
                loss.backward()
                opt.step()
                total += loss.item() * len(idx)
            mean_loss = total / n
            if not np.isfinite(best) or mean_loss < best - self.TOL * max(1.0, abs(best)):
                best, since = mean_loss, 0
            else:
                since += 1
                if since >= self.PATIENCE:
                    break
        self.fit_time_ = time.perf_counter() - start
        self.n_iter_, self.loss_ = epoch, best
        model.eval()
        likelihood.eval()
        self.model_, self.likelihood_ = model, likelihood
        self.n_features_in_ = x.shape[-1]
        self.lengthscales_ = model.covar_module.base_kernel.lengthscale.detach().cpu().numpy().ravel()
        self.noise_ = float(likelihood.noise.detach().cpu())
        return self

    def predict(self, X, return_std: bool = False, chunk_size: int = 2048):
        """Predictive mean (and standard deviation with ``return_std``) at ``X`` ``(m, d)``."""
        _check_fitted(self, "model_")
        x = np.asarray(X, dtype=float)
        if x.ndim != 2 or x.shape[1] != self.n_features_in_:
            raise ValueError(f"X must have shape (m, {self.n_features_in_}); got {x.shape}.")
        return _predict(self, x, chunk_size, return_std)

    def save(self, path) -> Path:
        """Save the fitted emulator."""
        _check_fitted(self, "model_")
        return _save_state({
            "class": "SparseGPEmulator", "params": self.get_params(),
            "scaler": self.scaler_.__dict__, "model": self.model_.state_dict(),
            "likelihood": self.likelihood_.state_dict(),
            "inducing_shape": tuple(self.model_.variational_strategy.inducing_points.shape)}, path)

    @classmethod
    def _restore(cls, state) -> "SparseGPEmulator":
        params = _settings(cls, state)
        params["device"] = "cpu"
        self = cls(**params)
        self.scaler_ = _Scaler.__new__(_Scaler)
        self.scaler_.__dict__.update(_from_plain(state["scaler"]))
        with default_dtype(torch.float64):
            model = _SparseModel(torch.zeros(state["inducing_shape"], dtype=torch.float64))
            likelihood = gpytorch.likelihoods.GaussianLikelihood(
                noise_constraint=gpytorch.constraints.GreaterThan(self.noise_floor))
        model.load_state_dict(state["model"])
        likelihood.load_state_dict(state["likelihood"])
        model.eval()
        likelihood.eval()
        self.model_, self.likelihood_ = model, likelihood
        self.n_features_in_ = state["inducing_shape"][-1]
        self.lengthscales_ = model.covar_module.base_kernel.lengthscale.detach().numpy().ravel()
        self.noise_ = float(likelihood.noise.detach())
        return self


def _to_plain(obj):
    """A state made of tensors and plain Python types only, which ``torch.load`` reads
    with ``weights_only=True`` (numpy arrays become tensors)."""
    if isinstance(obj, dict):
        return {k: _to_plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_to_plain(v) for v in obj)
    if isinstance(obj, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(obj))
    if isinstance(obj, np.generic):
        return obj.item()
    return obj


def _from_plain(obj):
    """Tensors back to numpy arrays (for the scaler and the settings)."""
    if isinstance(obj, dict):
        return {k: _from_plain(v) for k, v in obj.items()}
    if isinstance(obj, torch.Tensor):
        return obj.numpy()
    return obj


# settings that earlier versions saved and this one fixes: files keep loading when
# they hold these values, the only ones those versions' emulators were ever fitted with
_FIXED_SETTINGS = {"optimizer": "lbfgs", "lr": 0.05, "tol": (1e-5, 1e-4), "patience": (20, 5),
                   "max_cholesky_size": 20_000, "lengthscale_bounds": (0.01, 100.0),
                   "lengthscale_prior": True, "mean_weight_sd": None}


def _settings(cls, state) -> dict:
    """The saved settings of an emulator file, checked against what ``cls`` takes."""
    params = _from_plain(dict(state["params"]))
    known = cls().get_params()
    for name in [p for p in params if p not in known]:
        value, fixed = params.pop(name), _FIXED_SETTINGS.get(name)
        allowed = fixed if isinstance(fixed, tuple) and name != "lengthscale_bounds" else (fixed,)
        value = tuple(value) if isinstance(value, (list, np.ndarray)) else value
        if name not in _FIXED_SETTINGS or value not in allowed:
            raise ValueError(f"This emulator file has the setting {name}={value!r}, which "
                             f"{cls.__name__} of this emucal version does not have; refit the "
                             f"emulator and save it again.")
    return params


def _save_state(state: dict, path) -> Path:
    """Save ``state`` to ``path`` atomically: a failed save leaves the earlier file whole."""
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"{path} is a folder; save to a file in it, e.g. "
                                f"{path / 'emulator.pt'}.")
    with atomic_path(path) as tmp:
        torch.save(_to_plain(state), tmp)
    return path


def load(path) -> GPEmulator | SparseGPEmulator:
    """Load an emulator saved with ``save``; it predicts the same numbers.

    The file is read with ``torch.load(..., weights_only=True)``: it may hold
    only tensors and plain Python values, so a crafted file cannot run code.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"No emulator file at {path}" + (" (it is a folder)" if path.is_dir() else "")
                                + "; pass the path that emulator.save() returned.")
    try:
        # map_location: a GPU-trained emulator loads anywhere
        state = torch.load(path, weights_only=True, map_location="cpu")
    except Exception as err:  # torch raises UnpicklingError and others for foreign files
        raise ValueError(f"{path} is not an emucal emulator file that can be loaded safely "
                         f"(saved by emulator.save() of this version?): {err}") from err
    kinds = {"GPEmulator": GPEmulator, "SparseGPEmulator": SparseGPEmulator}
    if not isinstance(state, dict) or state.get("class") not in kinds:
        raise ValueError(f"{path} is not an emucal emulator file.")
    try:
        return kinds[state["class"]]._restore(state)
    except (KeyError, RuntimeError, TypeError) as err:  # a missing entry, weights of another shape
        raise ValueError(f"{path} is a damaged or edited {state['class']} file and cannot be "
                         f"restored ({type(err).__name__}: {str(err).splitlines()[0]}); fit the "
                         "emulator again and save it.") from err


# --------------------------------------------------------------- random forest
class RandomForestEmulator(BaseEstimator):
    """Random-forest baseline (Breiman 2001) with the interface of the GP emulators.

    ``predict(X, return_std=True)`` returns the spread of the trees'
    predictions as the standard deviation: a rough uncertainty, not a
    calibrated predictive interval (its coverage shows how rough).
    Batched inputs ``(batch, n, d)`` fit one forest per batch member.

    The trees are grown in parallel on the threads emucal chose
    (:func:`emucal.size_thread_pools`); that changes nothing in them, as each
    tree's random state is drawn before. Predictions are parallel over
    blocks of rows, and each row adds its trees in tree order, as
    scikit-learn does on one thread: the same inputs always give the same
    bits, whatever the number of threads. A search that compares predictions
    (:func:`emucal.calibrate.search`) must not see ties broken by the order
    in which threads finish.

    Parameters
    ----------
    n_estimators
        Trees (100, as Tang et al. 2025).
    max_depth, min_samples_leaf, max_features
        As in ``sklearn.ensemble.RandomForestRegressor`` (Tang et al.'s
        large-sample forest used ``max_depth=40``).
    seed
        Random state.
    """

    def __init__(self, n_estimators: int = 100, *, max_depth: int | None = None,
                 min_samples_leaf: int = 1, max_features: float | str | None = 1.0, seed: int = 0):
        self.n_estimators = n_estimators
        self.max_depth = max_depth
        self.min_samples_leaf = min_samples_leaf
        self.max_features = max_features
        self.seed = seed

    def _forest(self, x, y):
        from sklearn.ensemble import RandomForestRegressor

        forest = RandomForestRegressor(n_estimators=self.n_estimators, max_depth=self.max_depth,
                                       min_samples_leaf=self.min_samples_leaf,
                                       max_features=self.max_features, random_state=self.seed,
                                       n_jobs=size_thread_pools().threads).fit(x, y)
        forest.n_jobs = 1  # predict: one thread, the same sum every time
        return forest

    def fit(self, X, y) -> "RandomForestEmulator":
        x, y = _check_xy(X, y)
        start = time.perf_counter()
        self.forests_ = [self._forest(xb, yb) for xb, yb in zip(*((x, y) if x.ndim == 3 else ([x], [y])))]
        self.batched_ = x.ndim == 3
        self.fit_time_ = time.perf_counter() - start
        return self

    def predict(self, X, return_std: bool = False):
        _check_fitted(self, "forests_")
        x = np.asarray(X, dtype=float)
        if x.ndim != (3 if self.batched_ else 2) or (self.batched_ and len(x) != len(self.forests_)):
            raise ValueError(f"X must be {'(batch, m, d) with batch ' + str(len(self.forests_)) if self.batched_ else '(m, d)'}"
                             f", as the training inputs; got shape {x.shape}.")
        xs = x if self.batched_ else x[None]
        if return_std:
            trees = [np.stack([t.predict(xb) for t in forest.estimators_])
                     for forest, xb in zip(self.forests_, xs)]
            mean = np.stack([t.mean(0) for t in trees])
            std = np.stack([t.std(0) for t in trees])
        else:
            mean = np.stack([_mean_of_trees(forest, xb) for forest, xb in zip(self.forests_, xs)])
        if not self.batched_:
            mean = mean[0]
            if return_std:
                std = std[0]
        return (mean, std) if return_std else mean


def _mean_of_trees(forest, x: np.ndarray) -> np.ndarray:
    """``forest.predict(x)`` bit for bit, over blocks of rows on emucal's threads.

    scikit-learn's forest on one thread starts from zeros, adds each tree's
    prediction in tree order and divides by the number of trees; every row
    here does the same, and a row's sum does not depend on the other rows.
    The traversal of a tree runs without the GIL, so the blocks run in
    parallel.
    """
    from concurrent.futures import ThreadPoolExecutor

    x32 = np.ascontiguousarray(x, dtype=np.float32)
    if x32.ndim != 2 or x32.shape[1] != forest.n_features_in_:
        raise ValueError(f"X must have {forest.n_features_in_} columns, as the training inputs; "
                         f"got shape {x32.shape}.")
    if not np.isfinite(x32).all():
        raise ValueError("X contains NaN or infinity; a forest cannot place such a point.")

    def block(rows):
        out = np.zeros(rows.stop - rows.start)
        for tree in forest.estimators_:
            out += tree.tree_.predict(x32[rows])[:, 0]
        return out / len(forest.estimators_)

    threads = size_thread_pools().threads
    edges = np.linspace(0, len(x32), min(threads, max(len(x32) // 256, 1)) + 1).astype(int)
    blocks = [slice(a, b) for a, b in zip(edges[:-1], edges[1:])]
    if len(blocks) == 1:
        return block(blocks[0])
    with ThreadPoolExecutor(len(blocks)) as pool:
        return np.concatenate(list(pool.map(block, blocks)))


# ---------------------------------------------------------------- choosing
def make_lse(n_train: int, *, seed: int = 0, device: str = "cpu", **kwargs):
    """The large-sample emulator for a training set of ``n_train`` runs.

    An exact :class:`GPEmulator` up to :data:`EXACT_GP_MAX_N` runs, a
    :class:`SparseGPEmulator` above (see the module docstring for why).
    """
    if n_train <= EXACT_GP_MAX_N:  # attributes in their own units: scale by the data's range
        return GPEmulator(seed=seed, device=device, **{"lower": None, "upper": None, **kwargs})
    return SparseGPEmulator(seed=seed, device=device, **kwargs)


# ------------------------------------------------------------ cross-validation
def kfold(n: int, n_splits: int = 5, *, groups=None, seed: int = 0) -> list[np.ndarray]:
    """Split ``n`` items into ``n_splits`` test folds (index arrays), shuffled with ``seed``.

    The items (or, with ``groups``, the group labels) are shuffled with
    NumPy's generator and cut into consecutive folds by scikit-learn's
    :class:`~sklearn.model_selection.KFold`. With ``groups`` (one label per
    item, e.g. the basin of each run), whole groups go to the same fold:
    grouped, or spatial, cross-validation, which tests prediction in basins
    the emulator has never seen. (The shuffle is NumPy's so that a seed gives
    the same folds as in the book's earlier releases and benchmark results.)
    """
    from sklearn.model_selection import KFold

    rng = np.random.default_rng(seed)
    if groups is None:
        if n_splits < 2 or n_splits > n:
            raise ValueError(f"n_splits must be in [2, {n}], got {n_splits}.")
        order = rng.permutation(n)
        return [np.sort(order[test]) for _, test in KFold(n_splits).split(order)]
    groups = np.asarray(groups)
    if len(groups) != n:
        raise ValueError(f"groups has {len(groups)} labels for {n} items.")
    labels = np.unique(groups)
    if n_splits < 2 or n_splits > len(labels):
        raise ValueError(f"n_splits must be in [2, {len(labels)}] (number of groups), got {n_splits}.")
    order = rng.permutation(labels)
    return [np.flatnonzero(np.isin(groups, order[test])) for _, test in KFold(n_splits).split(order)]


def cross_validate(make_emulator: Callable[[], object], X, y, *, n_splits: int = 5,
                   groups=None, seed: int = 0, level: float = 0.9) -> pd.DataFrame:
    """K-fold cross-validation of an emulator: R2, RMSE and interval coverage per fold.

    Parameters
    ----------
    make_emulator
        A function returning a new, unfitted emulator (e.g. ``GPEmulator``).
    X, y
        ``(n, d)`` and ``(n,)``, or batched ``(batch, n, d)`` and ``(batch, n)``:
        then the folds split the runs (axis -2) and the scores are per batch
        member (e.g. per basin for SSEs).
    n_splits, seed
        Folds and shuffling seed.
    groups
        One label per run (2-D inputs only): grouped cross-validation (whole
        basins held out).
    level
        Predictive interval level for ``coverage``.

    Returns
    -------
    pandas.DataFrame
        One row per fold (and batch member): ``fold``, ``batch`` (for batched
        inputs), ``r2``, ``rmse``, ``coverage``, ``n_test``.
    """
    x, y = _check_xy(X, y)
    if groups is not None and x.ndim == 3:
        raise ValueError("groups applies to 2-D inputs; batched SSEs are split by run.")
    folds = kfold(x.shape[-2], n_splits, groups=groups, seed=seed)
    rows = []
    for k, test in enumerate(folds):
        train = np.setdiff1d(np.arange(x.shape[-2]), test)
        em = make_emulator().fit(x[..., train, :], y[..., train])
        mean, std = em.predict(x[..., test, :], return_std=True)
        truth = y[..., test]
        scores = {"r2": skill_metrics.r2_score(truth, mean), "rmse": skill_metrics.rmse(truth, mean),
                  "coverage": skill_metrics.coverage(truth, mean, std, level)}
        if x.ndim == 3:
            for b in range(x.shape[0]):
                rows.append({"fold": k, "batch": b, **{s: float(v[b]) for s, v in scores.items()},
                             "n_test": len(test)})
        else:
            rows.append({"fold": k, **{s: float(v) for s, v in scores.items()}, "n_test": len(test)})
    return pd.DataFrame(rows)
