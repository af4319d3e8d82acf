"""Bad inputs across the public surface: each gets a clear ValueError / TypeError / FloatingPointError.

One table row per bad input: the call, the exception type it must raise, and a word its message must contain
(the argument's name, or what is wrong). The engine entry points (`pc_sample`, `ode_sample`, `log_likelihood`)
call the validators of ``sdesolve/_utils.py``, which are also tested directly below. A second table drives the
CLI (one ``Error:`` line naming the option, exit code 2), and a hypothesis property feeds arbitrary wrong types
and values to each public argument.

Nothing here takes more than a fraction of a second; the two rows that used to hang (scipy RK45 on a NaN score,
dopri5 at a tolerance below float32's resolution) keep their own 5 s timeout.
"""

from __future__ import annotations

import math
import re
import tempfile
import time
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from sdesolve import (
    VESDE,
    VPSDE,
    EDMStochastic,
    EulerMaruyama,
    Gaussian,
    GaussianMixture,
    ImprovedEuler,
    LangevinCorrector,
    LinearObservation,
    MALACorrector,
    Restart,
    SubVPSDE,
    bits_per_dim,
    cosine_grid,
    dequantization_offset,
    distributed,
    dps_score,
    dsm_loss,
    get_sde,
    inpainting_matrix,
    karras_grid,
    log_likelihood,
    make_grid,
    ode_sample,
    pc_sample,
    replacement_sample,
    score_from_denoiser,
    score_from_eps,
    score_from_x0,
    sde_adaptive_sample,
    uniform_grid,
)
from sdesolve._utils import (
    check_all_finite,
    check_built_on,
    check_device,
    check_float_dtype,
    check_generator,
    check_like,
    check_sample,
    check_shape,
    check_time_grid,
    check_tolerance,
)
from sdesolve.cli import app
from sdesolve.diffusers import ScoreSdeVePipeline, ScoreSdeVeScheduler, ScoreSdeVpScheduler, SigmaScoreModel
from sdesolve.digits import WEIGHTS_PATH, load_digits_model, train_digits
from sdesolve.guidance import cfg_score
from sdesolve.losses import flow_matching_loss
from sdesolve.sde import RectifiedFlowSDE
from sdesolve.torchsde import to_torchsde

NAN, INF = float("nan"), float("inf")

SDE = VPSDE()
DATA = Gaussian(0.0, 1.0, event_shape=(2,))
SCORE = DATA.score_fn(SDE)
X = torch.randn(4, 2, generator=torch.Generator().manual_seed(0))
MIX = GaussianMixture([1.0, 1.0], [[0.0, 0.0], [1.0, 1.0]], [0.5, 0.5])


def nan_score(x, t):
    return x * NAN


def f64_score(x, t):
    return SCORE(x, t).double()


def _ve_scheduler(n: int = 5) -> ScoreSdeVeScheduler:
    s = ScoreSdeVeScheduler()
    s.set_timesteps(n)
    s.set_sigmas(n)
    return s


def _vp_scheduler(n: int = 5) -> ScoreSdeVpScheduler:
    s = ScoreSdeVpScheduler()
    s.set_timesteps(n)
    return s


def _pipeline() -> ScoreSdeVePipeline:
    ve = VESDE(0.01, 1348.0)
    model = SigmaScoreModel.from_oracle(Gaussian(0.5, 0.1, event_shape=(1, 2, 2)), ve, sample_size=2, in_channels=1)
    pipe = ScoreSdeVePipeline(unet=model, scheduler=ScoreSdeVeScheduler())
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _bridge_f(score_fn, event_shape=None, y=X):
    return to_torchsde(SDE, score_fn, event_shape=event_shape).f(torch.tensor(0.5), y)


def _inpaint(noise_std: float = 0.0) -> LinearObservation:
    """Observe the first two of four coordinates."""
    return LinearObservation(inpainting_matrix(torch.tensor([True, True, False, False])), torch.ones(2), noise_std)


def _rows(seeds: torch.Tensor) -> torch.Tensor:
    """A sampler for `distributed.sample`: one row per seed."""
    return seeds[:, None].double()


def _weights(keep: int) -> str:
    """A copy of the shipped digits weights cut to ``keep`` bytes, with its record, in a fresh folder."""
    folder = Path(tempfile.mkdtemp())
    (folder / "w.json").write_text(WEIGHTS_PATH.with_suffix(".json").read_text())
    (folder / "w.safetensors").write_bytes(WEIGHTS_PATH.read_bytes()[:keep])
    return str(folder / "w.safetensors")


def row(category: str, name: str, exc: type[Exception], word: str, call, *marks):
    return pytest.param(call, exc, word, id=f"{category}/{name}", marks=marks)


# fmt: off
ROWS = [
    # -- SDE constructors ---------------------------------------------------------------------------------------
    row("sde-params", "ve-sigma_min>=sigma_max", ValueError, "sigma_min", lambda: VESDE(sigma_min=5.0, sigma_max=5.0)),
    row("sde-params", "ve-sigma_min=0", ValueError, "sigma_min", lambda: VESDE(sigma_min=0.0)),
    row("sde-params", "ve-sigma_max=inf", ValueError, "sigma_max", lambda: VESDE(sigma_max=INF)),
    row("sde-params", "ve-sigma_min-str", TypeError, "sigma_min", lambda: VESDE(sigma_min="small")),
    row("sde-params", "vp-beta_min<0", ValueError, "beta_min", lambda: VPSDE(beta_min=-0.1)),
    row("sde-params", "vp-beta_max<beta_min", ValueError, "beta_max", lambda: VPSDE(beta_min=5.0, beta_max=1.0)),
    row("sde-params", "subvp-beta_max-nan", ValueError, "beta_max", lambda: SubVPSDE(beta_max=NAN)),
    row("sde-params", "N=0", ValueError, "N", lambda: VPSDE(N=0)),
    row("sde-params", "N-float", TypeError, "N", lambda: VPSDE(N=2.5)),
    row("sde-params", "N-bool", TypeError, "N", lambda: VESDE(N=True)),
    row("sde-params", "T=0", ValueError, "T", lambda: VPSDE(T=0.0)),
    row("sde-params", "T-nan", ValueError, "T", lambda: VPSDE(T=NAN)),
    row("sde-params", "get_sde-unknown", ValueError, "choose one of", lambda: get_sde("ddpm")),
    # -- Python times at every SDE formula ----------------------------------------------------------------------
    row("sde-time", "marginal_prob-t>T", ValueError, "[0, T]", lambda: SDE.marginal_prob(X, 1.5)),
    row("sde-time", "marginal_prob-t<0", ValueError, "[0, T]", lambda: SDE.marginal_prob(X, -0.1)),
    row("sde-time", "marginal_prob-t-nan", ValueError, "t must", lambda: SDE.marginal_prob(X, NAN)),
    row("sde-time", "marginal_prob-t-str", TypeError, "t must", lambda: SDE.marginal_prob(X, "0.5")),
    row("sde-time", "ve-marginal_prob-t-inf", ValueError, "[0, T]", lambda: VESDE().marginal_prob(X, INF)),
    row("sde-time", "sde-t>T", ValueError, "[0, T]", lambda: SDE.sde(X, 2.0)),
    row("sde-time", "discretize-t>T", ValueError, "t must", lambda: SDE.discretize(X, 1.2, 0.5)),
    row("sde-time", "discretize-t_next<0", ValueError, "t_next", lambda: SDE.discretize(X, 0.5, -0.1)),
    row("sde-time", "discretize-wrong-order", ValueError, "t_next <= t", lambda: SDE.discretize(X, 0.5, 0.7)),
    row("sde-time", "ve-discretize-wrong-order", ValueError, "t_next <= t", lambda: VESDE().discretize(X, 0.1, 0.9)),
    row("sde-time", "reverse-discretize-order", ValueError, "t_next <= t",
        lambda: SDE.reverse(SCORE).discretize(X, 0.3, 0.6)),
    row("sde-time", "reverse-sde-t<0", ValueError, "[0, T]", lambda: SDE.reverse(SCORE).sde(X, -1.0)),
    row("sde-time", "t-shape", ValueError, "shape [B]", lambda: SDE.marginal_prob(X, torch.ones(3))),
    row("sde-time", "x-0d", ValueError, "[B, *event]", lambda: SDE.marginal_prob(torch.tensor(1.0), 0.5)),
    row("sde-time", "prior-shape-empty", ValueError, "shape", lambda: SDE.prior_sampling(())),
    row("sde-time", "reverse-score-not-callable", TypeError, "score_fn", lambda: SDE.reverse(None)),
    # -- exact oracles ------------------------------------------------------------------------------------------
    row("oracle", "gaussian-mean-nan", ValueError, "mean", lambda: Gaussian(NAN, 1.0)),
    row("oracle", "gaussian-mean-inf", ValueError, "mean", lambda: Gaussian(torch.tensor([0.0, INF]), 1.0)),
    row("oracle", "gaussian-std-0", ValueError, "std", lambda: Gaussian(0.0, 0.0)),
    row("oracle", "gaussian-std-neg", ValueError, "std", lambda: Gaussian(0.0, -1.0)),
    row("oracle", "gaussian-std-nan", ValueError, "std", lambda: Gaussian(0.0, NAN)),
    row("oracle", "gaussian-shape-mismatch", ValueError, "broadcast", lambda: Gaussian(torch.zeros(3), torch.ones(2))),
    row("oracle", "gaussian-event-shape-mismatch", ValueError, "event_shape",
        lambda: Gaussian(torch.zeros(3), 1.0, event_shape=(2,))),
    row("oracle", "gaussian-mean-complex", TypeError, "mean", lambda: Gaussian(torch.zeros(2, dtype=torch.complex64), 1.0)),
    row("oracle", "gaussian-mean-str", TypeError, "mean", lambda: Gaussian("zero", 1.0)),
    row("oracle", "mixture-weights-nan", ValueError, "weights", lambda: GaussianMixture([NAN, 1.0], [[0.0], [1.0]], [1.0, 1.0])),
    row("oracle", "mixture-weights-neg", ValueError, "weights", lambda: GaussianMixture([-1.0, 2.0], [[0.0], [1.0]], [1.0, 1.0])),
    row("oracle", "mixture-weights-zero", ValueError, "weights", lambda: GaussianMixture([0.0, 0.0], [[0.0], [1.0]], [1.0, 1.0])),
    row("oracle", "mixture-weights-shape", ValueError, "weights", lambda: GaussianMixture([1.0], [[0.0], [1.0]], [1.0, 1.0])),
    row("oracle", "mixture-means-1d", ValueError, "means", lambda: GaussianMixture([1.0, 1.0], [0.0, 1.0], [1.0, 1.0])),
    row("oracle", "mixture-means-nan", ValueError, "means", lambda: GaussianMixture([1.0, 1.0], [[0.0], [NAN]], [1.0, 1.0])),
    row("oracle", "mixture-means-inf", ValueError, "means", lambda: GaussianMixture([1.0, 1.0], [[INF], [0.0]], [1.0, 1.0])),
    row("oracle", "mixture-stds-shape", ValueError, "stds", lambda: GaussianMixture([1.0, 1.0], [[0.0], [1.0]], [1.0])),
    row("oracle", "mixture-stds-0", ValueError, "stds", lambda: GaussianMixture([1.0, 1.0], [[0.0], [1.0]], [1.0, 0.0])),
    row("oracle", "marginal-t>T", ValueError, "[0, T]", lambda: DATA.marginal(SDE, 1.5)),
    row("oracle", "marginal-t-tensor-1d", ValueError, "scalar", lambda: DATA.marginal(SDE, torch.ones(2))),
    row("oracle", "marginal-not-linear", TypeError, "LinearSDE", lambda: DATA.marginal(SDE.reverse(SCORE), 0.5)),
    row("oracle", "mixture-marginal-t<0", ValueError, "[0, T]", lambda: MIX.marginal(SDE, -0.5)),
    row("oracle", "flow-s<0-names-s", ValueError, "s must", lambda: DATA.flow(SDE, X, 0.5, -0.1)),
    row("oracle", "flow-t>T-names-t", ValueError, "t must", lambda: DATA.flow(SDE, X, 1.5, 0.5)),
    row("oracle", "sample-n-neg", ValueError, "n must", lambda: DATA.sample(-1)),
    row("oracle", "sample-n-float", TypeError, "n must", lambda: MIX.sample(2.5)),
    # -- time grids ---------------------------------------------------------------------------------------------
    row("grid", "unknown-name", ValueError, "choose one of", lambda: make_grid("quadratic", SDE, 10, 1e-3)),
    row("grid", "steps=0", ValueError, "steps", lambda: make_grid("uniform", SDE, 0, 1e-3)),
    row("grid", "eps=0", ValueError, "eps", lambda: make_grid("karras", SDE, 10, 0.0)),
    row("grid", "eps>=T", ValueError, "eps", lambda: make_grid("log_sigma", SDE, 10, 1.0)),
    row("grid", "tensor-increasing", ValueError, "decreasing", lambda: make_grid(torch.linspace(0.1, 1, 5), SDE, 4, 1e-3)),
    row("grid", "tensor-2d", ValueError, "1-D", lambda: make_grid(torch.ones(2, 2), SDE, 4, 1e-3)),
    # -- torchsde bridge ----------------------------------------------------------------------------------------
    row("torchsde", "sde-not-sde", TypeError, "sde", lambda: to_torchsde("vp")),
    row("torchsde", "score-not-callable", TypeError, "score_fn", lambda: to_torchsde(SDE, 3)),
    row("torchsde", "score-wrong-shape", ValueError, "score_fn", lambda: _bridge_f(lambda x, t: SCORE(x, t)[:, :1])),
    row("torchsde", "score-wrong-dtype", TypeError, "dtype", lambda: _bridge_f(f64_score)),
    row("torchsde", "event_shape-mismatch", ValueError, "event_shape", lambda: _bridge_f(SCORE, event_shape=(3,))),
    row("torchsde", "event_shape-float", TypeError, "event_shape", lambda: to_torchsde(SDE, SCORE, event_shape=(2.5,))),
    row("torchsde", "state-1d", ValueError, "y must", lambda: _bridge_f(SCORE, y=torch.zeros(4))),
    # -- diffusers compatibility --------------------------------------------------------------------------------
    row("diffusers", "ve-sigma_min>sigma_max", ValueError, "sigma_min", lambda: ScoreSdeVeScheduler(sigma_min=10, sigma_max=1)),
    row("diffusers", "ve-sigma_min=0", ValueError, "sigma_min", lambda: ScoreSdeVeScheduler(sigma_min=0.0)),
    row("diffusers", "ve-snr<0", ValueError, "snr", lambda: ScoreSdeVeScheduler(snr=-0.1)),
    row("diffusers", "ve-num_train_timesteps=0", ValueError, "num_train_timesteps",
        lambda: ScoreSdeVeScheduler(num_train_timesteps=0)),
    row("diffusers", "ve-sampling_eps=1", ValueError, "sampling_eps", lambda: ScoreSdeVeScheduler(sampling_eps=1.0)),
    row("diffusers", "ve-set_timesteps-0", ValueError, "num_inference_steps", lambda: _ve_scheduler().set_timesteps(0)),
    row("diffusers", "ve-step_pred-shape", ValueError, "model_output",
        lambda: _ve_scheduler().step_pred(torch.zeros(4, 1), 1.0, X)),
    row("diffusers", "ve-step_pred-timestep>1", ValueError, "timestep",
        lambda: _ve_scheduler().step_pred(torch.zeros_like(X), 1.5, X)),
    row("diffusers", "ve-step_correct-shape", ValueError, "model_output",
        lambda: _ve_scheduler().step_correct(torch.zeros(1, 2), X)),
    row("diffusers", "ve-add_noise-float-timestep", TypeError, "timesteps",
        lambda: _ve_scheduler().add_noise(X, torch.zeros_like(X), torch.full((4,), 0.5))),
    row("diffusers", "ve-add_noise-index-range", ValueError, "timesteps",
        lambda: _ve_scheduler().add_noise(X, torch.zeros_like(X), torch.full((4,), 7))),
    row("diffusers", "ve-add_noise-noise-shape", ValueError, "noise",
        lambda: _ve_scheduler().add_noise(X, torch.zeros(4, 1), torch.zeros(4, dtype=torch.long))),
    row("diffusers", "vp-prediction_type", ValueError, "prediction_type",
        lambda: ScoreSdeVpScheduler(prediction_type="v_prediction")),
    row("diffusers", "vp-sampling_eps=0", ValueError, "sampling_eps", lambda: ScoreSdeVpScheduler(sampling_eps=0.0)),
    row("diffusers", "vp-step-before-set_timesteps", ValueError, "set_timesteps",
        lambda: ScoreSdeVpScheduler().step_pred(torch.zeros_like(X), X, 1.0)),
    row("diffusers", "vp-step_pred-t<0", ValueError, "t must", lambda: _vp_scheduler().step_pred(torch.zeros_like(X), X, -0.5)),
    row("diffusers", "pipeline-output_type", ValueError, "output_type",
        lambda: _pipeline()(batch_size=1, num_inference_steps=2, output_type="pll")),
    row("diffusers", "pipeline-batch_size=0", ValueError, "batch_size", lambda: _pipeline()(batch_size=0, num_inference_steps=2)),
    row("diffusers", "pipeline-steps-float", TypeError, "num_inference_steps",
        lambda: _pipeline()(batch_size=1, num_inference_steps=2.0)),
    row("diffusers", "sigma-model-on-vp", TypeError, "VESDE", lambda: SigmaScoreModel(SCORE, SDE, sample_size=2)),
    # -- likelihood ---------------------------------------------------------------------------------------------
    row("likelihood", "x-0d", ValueError, "[B, *event]", lambda: log_likelihood(SDE, SCORE, torch.tensor(1.0))),
    row("likelihood", "x-empty-batch", ValueError, "B >= 1", lambda: log_likelihood(SDE, SCORE, torch.zeros(0, 2))),
    row("likelihood", "x-int64", TypeError, "floating", lambda: log_likelihood(SDE, SCORE, torch.zeros(4, 2, dtype=torch.long))),
    row("likelihood", "x-complex", TypeError, "floating",
        lambda: log_likelihood(SDE, SCORE, torch.zeros(4, 2, dtype=torch.complex64))),
    row("likelihood", "x-list", TypeError, "torch.Tensor", lambda: log_likelihood(SDE, SCORE, [[0.0, 1.0]])),
    row("likelihood", "eps>=T", ValueError, "eps", lambda: log_likelihood(SDE, SCORE, X, eps=2.0)),
    row("likelihood", "divergence-unknown", ValueError, "divergence", lambda: log_likelihood(SDE, SCORE, X, divergence="skilling")),
    row("likelihood", "rtol=0", ValueError, "rtol", lambda: log_likelihood(SDE, SCORE, X, rtol=0.0)),
    row("likelihood", "batch_size-float", TypeError, "batch_size", lambda: log_likelihood(SDE, SCORE, X, batch_size=2.5)),
    row("likelihood", "x-nan-dopri5", FloatingPointError, "non-finite", lambda: log_likelihood(SDE, SCORE, X * NAN)),
    row("likelihood", "bits_per_dim-batch", ValueError, "same B", lambda: bits_per_dim(torch.zeros(3), X)),
    row("likelihood", "bits_per_dim-offset-nan", ValueError, "offset", lambda: bits_per_dim(torch.zeros(4), X, offset=NAN)),
    # -- engine entry points: validated today ------------------------------------------------------------------
    row("engine", "pc-steps=0", ValueError, "steps", lambda: pc_sample(SDE, SCORE, (4, 2), steps=0)),
    row("engine", "pc-steps-float", TypeError, "steps", lambda: pc_sample(SDE, SCORE, (4, 2), steps=5.0)),
    row("engine", "pc-eps-nan", ValueError, "eps", lambda: pc_sample(SDE, SCORE, (4, 2), steps=5, eps=NAN)),
    row("engine", "pc-eps=T", ValueError, "eps", lambda: pc_sample(SDE, SCORE, (4, 2), steps=5, eps=1.0)),
    row("engine", "pc-snr<0", ValueError, "snr", lambda: pc_sample(SDE, SCORE, (4, 2), steps=5, snr=-1.0)),
    row("engine", "pc-snr-with-instance", ValueError, "snr",
        lambda: pc_sample(SDE, SCORE, (4, 2), steps=5, corrector=LangevinCorrector(SDE), snr=0.1)),
    row("engine", "pc-predictor-name", ValueError, "choose one of", lambda: pc_sample(SDE, SCORE, (4, 2), steps=5, predictor="heun")),
    row("engine", "pc-corrector-name", ValueError, "choose one of", lambda: pc_sample(SDE, SCORE, (4, 2), steps=5, corrector="mala")),
    row("engine", "pc-corrector_steps<1", ValueError, "corrector_steps",
        lambda: pc_sample(SDE, SCORE, (4, 2), steps=5, corrector_steps=-1)),
    row("engine", "pc-shape-no-event", ValueError, "shape", lambda: pc_sample(SDE, SCORE, (4,), steps=5)),
    row("engine", "pc-x_init-shape", ValueError, "x_init", lambda: pc_sample(SDE, SCORE, (4, 2), steps=5, x_init=torch.zeros(3, 2))),
    row("engine", "pc-score-shape", ValueError, "score_fn", lambda: pc_sample(SDE, lambda x, t: x[:, :1], (4, 2), steps=5)),
    row("engine", "pc-score-not-callable", TypeError, "score_fn", lambda: pc_sample(SDE, 3, (4, 2), steps=5)),
    row("engine", "pc-grid-increasing", ValueError, "decreasing",
        lambda: pc_sample(SDE, SCORE, (4, 2), grid=torch.linspace(1e-3, 1, 6))),
    row("engine", "pc-grid-above-T", ValueError, "grid", lambda: pc_sample(SDE, SCORE, (4, 2), grid=torch.linspace(2, 1e-3, 6))),
    row("engine", "pc-grid-name", ValueError, "grid", lambda: pc_sample(SDE, SCORE, (4, 2), steps=5, grid="quadratic")),
    row("engine", "pc-sde-not-sde", TypeError, "sde", lambda: pc_sample("vp", SCORE, (4, 2), steps=5)),
    row("engine", "pc-nan-score", FloatingPointError, "step 0", lambda: pc_sample(SDE, nan_score, (4, 2), steps=5)),
    row("engine", "pc-nan-x_init", FloatingPointError, "non-finite",
        lambda: pc_sample(SDE, SCORE, (4, 2), steps=5, x_init=torch.full((4, 2), NAN))),
    row("engine", "ode-method", ValueError, "choose one of", lambda: ode_sample(SDE, SCORE, (4, 2), method="rk45")),
    row("engine", "ode-rtol=0", ValueError, "rtol", lambda: ode_sample(SDE, SCORE, (4, 2), rtol=0.0)),
    row("engine", "ode-fixed-needs-steps", ValueError, "steps", lambda: ode_sample(SDE, SCORE, (4, 2), method="rk4")),
    row("engine", "ode-dopri5-nan-score", FloatingPointError, "non-finite", lambda: ode_sample(SDE, nan_score, (4, 2))),
    row("engine", "ode-euler-nan-score", FloatingPointError, "non-finite",
        lambda: ode_sample(SDE, nan_score, (4, 2), method="euler", steps=4)),
    # -- engine entry points: the lead wires the validators below into the new engine --------------------------
    row("engine", "pc-shape-float", TypeError, "shape", lambda: pc_sample(SDE, SCORE, (2.7, 2), steps=5)),
    row("engine", "pc-shape-batch<0", ValueError, "shape", lambda: pc_sample(SDE, SCORE, (-1, 2), steps=5)),
    row("engine", "pc-shape-batch=0", ValueError, "shape", lambda: pc_sample(SDE, SCORE, (0, 2), steps=5)),
    row("engine", "pc-shape-str", TypeError, "shape", lambda: pc_sample(SDE, SCORE, "42", steps=5)),
    row("engine", "pc-dtype-int64", TypeError, "dtype", lambda: pc_sample(SDE, SCORE, (4, 2), steps=5, dtype=torch.int64)),
    row("engine", "pc-dtype-complex", TypeError, "dtype",
        lambda: pc_sample(SDE, SCORE, (4, 2), steps=5, dtype=torch.complex64)),
    row("engine", "pc-dtype-str", TypeError, "dtype must", lambda: pc_sample(SDE, SCORE, (4, 2), steps=5, dtype="float32")),
    row("engine", "pc-x_init-int64", TypeError, "x_init",
        lambda: pc_sample(SDE, SCORE, (4, 2), steps=5, x_init=torch.zeros(4, 2, dtype=torch.long))),
    row("engine", "pc-score-dtype", TypeError, "dtype", lambda: pc_sample(SDE, f64_score, (4, 2), steps=5)),
    row("engine", "pc-grid-below-eps", ValueError, "eps",
        lambda: pc_sample(SDE, SCORE, (4, 2), grid=torch.linspace(1, 1e-5, 6), eps=1e-3)),
    row("engine", "pc-predictor-other-sde", ValueError, "built on",
        lambda: pc_sample(SDE, SCORE, (4, 2), steps=5, predictor=EulerMaruyama(VESDE()))),
    row("engine", "pc-generator-int", TypeError, "generator must",
        lambda: pc_sample(SDE, SCORE, (4, 2), steps=5, generator=0)),
    row("engine", "pc-device-unknown", ValueError, "device", lambda: pc_sample(SDE, SCORE, (4, 2), steps=5, device="gpu0")),
    row("engine", "ode-shape-float", TypeError, "shape", lambda: ode_sample(SDE, SCORE, (2.7, 2))),
    row("engine", "ode-shape-batch=0", ValueError, "shape", lambda: ode_sample(SDE, SCORE, (0, 2))),
    row("engine", "ode-dtype-int64", TypeError, "dtype", lambda: ode_sample(SDE, SCORE, (4, 2), dtype=torch.int64)),
    row("engine", "ode-dtype-complex", TypeError, "dtype", lambda: ode_sample(SDE, SCORE, (4, 2), dtype=torch.complex64)),
    row("engine", "ode-score-dtype", TypeError, "dtype", lambda: ode_sample(SDE, f64_score, (4, 2))),
    row("engine", "ode-grid-below-eps", ValueError, "eps",
        lambda: ode_sample(SDE, SCORE, (4, 2), method="euler", grid=torch.linspace(1, 1e-5, 6), eps=1e-3)),
    row("engine", "ode-torchdiffeq-nan-score", FloatingPointError, "non-finite",
        lambda: ode_sample(SDE, nan_score, (4, 2), method="torchdiffeq_dopri5")),
    row("engine", "ode-scipy-nan-score-hangs", FloatingPointError, "non-finite",
        lambda: ode_sample(SDE, nan_score, (4, 2), method="scipy_rk45"), pytest.mark.timeout(5)),
    row("engine", "ode-dopri5-rtol-below-float32", ValueError, "rtol",
        lambda: ode_sample(SDE, SCORE, (4, 2), rtol=1e-14, atol=1e-14), pytest.mark.timeout(5)),
    row("engine", "ll-nan-x-fixed-step", FloatingPointError, "non-finite",
        lambda: log_likelihood(SDE, SCORE, X * NAN, method="euler", steps=4)),
    row("engine", "ll-score-dtype", TypeError, "dtype", lambda: log_likelihood(SDE, f64_score, X)),
    # -- round two: the surfaces added since the first round (issue 26) ------------------------------------------
    # silent wrong answers: a model output of the wrong shape or type is refused, not broadcast
    row("r2-output", "dsm-[B,1]", ValueError, "shape", lambda: dsm_loss(SDE, lambda x, t: x[:, :1], X)),
    row("r2-output", "dsm-eps-scalar", ValueError, "noise-prediction model",
        lambda: dsm_loss(SDE, lambda x, t: x.sum(), X, parameterization="epsilon")),
    row("r2-output", "flow-matching-[B,1]", ValueError, "velocity model",
        lambda: flow_matching_loss(RectifiedFlowSDE(), lambda x, t: x[:, :1], X)),
    row("r2-output", "score_from_x0-[B,1]", ValueError, "data-prediction model",
        lambda: score_from_x0(lambda x, t: x[:, :1], SDE)(X, 0.5)),
    row("r2-output", "score_from_denoiser-scalar", ValueError, "denoiser",
        lambda: score_from_denoiser(lambda x, s: x.sum(), SDE)(X, 0.5)),
    row("r2-output", "score_from_eps-float", TypeError, "torch.Tensor", lambda: score_from_eps(lambda x, t: 1.0, SDE)(X, 0.5)),
    row("r2-output", "replacement-nan-score", FloatingPointError, "non-finite",
        lambda: replacement_sample(SDE, nan_score, _inpaint(), 3, steps=3)),
    row("r2-output", "replacement-f64-score", TypeError, "dtype",
        lambda: replacement_sample(SDE, lambda x, t: x.double(), _inpaint(), 3, steps=3)),
    row("r2-output", "replacement-[B,1]-score", ValueError, "shaped like",
        lambda: replacement_sample(SDE, lambda x, t: x[:, :1], _inpaint(), 3, steps=3)),
    row("r2-output", "mala-log-density-float", ValueError, "log_prob_fn",
        lambda: pc_sample(SDE, SCORE, (4, 2), steps=2, corrector=MALACorrector(SDE, lambda x, t: 1.0))),
    row("r2-output", "mala-log-density-[B,1]", ValueError, "[B]=[4]",
        lambda: pc_sample(SDE, SCORE, (4, 2), steps=2, corrector=MALACorrector(SDE, lambda x, t: x[:, :1]))),
    row("r2-output", "mala-log-density-nan", FloatingPointError, "log_prob_fn",
        lambda: pc_sample(SDE, SCORE, (4, 2), steps=2, corrector=MALACorrector(SDE, lambda x, t: x.sum(1) * NAN))),
    row("r2-output", "cfg-cond-[B,1]", ValueError, "one shape",
        lambda: pc_sample(SDE, cfg_score(lambda x, t: x[:, :1], SCORE, 2.0), (4, 2), steps=2)),
    # silent wrong answers: grids, end times, execution modes, windows, step order, distributed runs
    row("r2-silent", "pc-grid-list>T", ValueError, "[0, T]", lambda: pc_sample(SDE, SCORE, (4, 2), grid=[2.0, 0.5, 1e-3])),
    row("r2-silent", "ode-grid-list>T", ValueError, "[0, T]",
        lambda: ode_sample(SDE, SCORE, (4, 2), method="euler", grid=[2.0, 0.5, 1e-3])),
    row("r2-silent", "dopri5-eps=T", ValueError, "eps", lambda: ode_sample(SDE, SCORE, (4, 2), eps=1.0)),
    row("r2-silent", "scipy-eps>T", ValueError, "eps", lambda: ode_sample(SDE, SCORE, (4, 2), method="scipy_rk45", eps=1.5)),
    row("r2-silent", "dopri5-compile", ValueError, "fixed-step", lambda: ode_sample(SDE, SCORE, (4, 2), execution="compile")),
    row("r2-silent", "dpm-adaptive-compile", ValueError, "fixed-step",
        lambda: ode_sample(SDE, SCORE, (4, 2), method="dpm_solver_adaptive", execution="compile")),
    row("r2-silent", "cosine-grid-zero-interval", ValueError, "zero-length",
        lambda: cosine_grid(RectifiedFlowSDE(), 50, sigma_data=1e6)),
    row("r2-silent", "karras-grid-rho-tiny", ValueError, "non-finite", lambda: karras_grid(SDE, 10, rho=1e-6)),
    row("r2-silent", "improved-euler-step-forward", ValueError, "t_next < t",
        lambda: ImprovedEuler(SDE).step(X, torch.full((4,), 0.3), torch.full((4,), 0.6), SCORE, noise=None)),
    row("r2-silent", "edm-step-zero", ValueError, "t_next < t", lambda: EDMStochastic(SDE).step(X, 0.5, 0.5, SCORE, noise=None)),
    row("r2-silent", "edm-window-empty", ValueError, "s_tmin", lambda: EDMStochastic(SDE, churn=1.0, s_tmin=5.0, s_tmax=1.0)),
    row("r2-silent", "edm-window-above-sigma(T)", ValueError, "s_tmin", lambda: EDMStochastic(SDE, s_tmin=1e3)),
    row("r2-silent", "restart-window-empty", ValueError, "s_min", lambda: Restart(SDE, s_min=0.5, s_max=0.1)),
    row("r2-silent", "restart-window-above-sigma(T)", ValueError, "s_min", lambda: Restart(SDE, s_min=500.0, s_max=1e3)),
    row("r2-silent", "distributed-float-seed", TypeError, "seed", lambda: distributed.sample(_rows, 4, seed=2.7)),
    row("r2-silent", "distributed-root-beyond-world", ValueError, "root", lambda: distributed.sample(_rows, 4, seed=0, root=1)),
    row("r2-silent", "distributed-short-chunk", ValueError, "sampler(seeds)",
        lambda: distributed.sample(lambda s: _rows(s)[:-1], 4, seed=0)),
    # unhelpful errors made clear
    row("r2-message", "meta-device", ValueError, "meta", lambda: pc_sample(SDE, SCORE, (4, 2), steps=2, device="meta")),
    row("r2-message", "adaptive-sde-str", TypeError, "sde must", lambda: sde_adaptive_sample("vp", SCORE, (4, 2))),
    row("r2-message", "dsm-sde-str", TypeError, "sde must", lambda: dsm_loss("vp", lambda x, t: x, X)),
    row("r2-message", "dps-observation-event", ValueError, "observation",
        lambda: pc_sample(SDE, dps_score(SCORE, SDE, _inpaint(noise_std=0.1)), (3, 2), steps=2)),
    row("r2-message", "train-log_every=0", ValueError, "log_every", lambda: train_digits(steps=1, log_every=0)),
    pytest.param(lambda: pc_sample(SDE, SCORE, (4, 2), steps=2, device="cuda"), ValueError, "CUDA is not available",
                 id="r2-message/cuda-without-cuda",
                 marks=pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is available here")),
    # hangs: every adaptive loop returns, with a clear error
    row("r2-hang", "adaptive-nan-score", FloatingPointError, "non-finite", lambda: sde_adaptive_sample(SDE, nan_score, (4, 2))),
    row("r2-hang", "adaptive-inf-score", FloatingPointError, "non-finite",
        lambda: sde_adaptive_sample(SDE, lambda x, t: x * INF, (4, 2))),
    row("r2-hang", "adaptive-nan-x_init", FloatingPointError, "x_init", lambda: sde_adaptive_sample(SDE, SCORE, (4, 2), x_init=X * NAN)),
    row("r2-hang", "adaptive-stiff-score", RuntimeError, "max_iterations",
        lambda: sde_adaptive_sample(SDE, lambda x, t: -1e8 * x, (4, 2), max_iterations=50)),
    row("r2-hang", "adaptive-tol-1e-12", ValueError, "rtol", lambda: sde_adaptive_sample(SDE, SCORE, (4, 2), rtol=1e-12, atol=1e-12)),
    # files: a truncated or empty weights file is refused naming it
    row("r2-files", "truncated-weights", ValueError, "w.safetensors", lambda: load_digits_model(_weights(keep=100))),
    row("r2-files", "empty-weights", ValueError, "w.safetensors", lambda: load_digits_model(_weights(keep=0))),
    # -- the validators the engine will call -------------------------------------------------------------------
    row("validator", "check_shape-float", TypeError, "shape", lambda: check_shape("shape", (2.7, 2))),
    row("validator", "check_shape-negative", ValueError, ">= 1", lambda: check_shape("shape", (-1, 2))),
    row("validator", "check_shape-zero-batch", ValueError, ">= 1", lambda: check_shape("shape", (0, 2))),
    row("validator", "check_shape-str", TypeError, "sequence", lambda: check_shape("shape", "42")),
    row("validator", "check_shape-no-event", ValueError, "event", lambda: check_shape("shape", (4,))),
    row("validator", "check_float_dtype-int", TypeError, "floating", lambda: check_float_dtype("dtype", torch.int64)),
    row("validator", "check_float_dtype-complex", TypeError, "floating", lambda: check_float_dtype("dtype", torch.complex128)),
    row("validator", "check_float_dtype-str", TypeError, "torch.dtype", lambda: check_float_dtype("dtype", "float32")),
    row("validator", "check_sample-int", TypeError, "x_init", lambda: check_sample("x_init", torch.zeros(4, 2, dtype=torch.long))),
    row("validator", "check_sample-0d", ValueError, "x_init", lambda: check_sample("x_init", torch.tensor(1.0))),
    row("validator", "check_like-dtype", TypeError, "dtype", lambda: check_like("score_fn", X.double(), X)),
    row("validator", "check_like-shape", ValueError, "shaped like", lambda: check_like("score_fn", X[:, :1], X)),
    row("validator", "check_like-not-tensor", TypeError, "torch.Tensor", lambda: check_like("score_fn", 1.0, X)),
    row("validator", "check_time_grid-below-eps", ValueError, "eps",
        lambda: check_time_grid("grid", torch.linspace(1, 1e-5, 6), 1e-3, 1.0)),
    row("validator", "check_time_grid-increasing", ValueError, "decreasing",
        lambda: check_time_grid("grid", torch.linspace(0.1, 1, 6), 1e-3, 1.0)),
    row("validator", "check_built_on-other-sde", ValueError, "built on",
        lambda: check_built_on("predictor", EulerMaruyama(VESDE()), SDE)),
    row("validator", "check_tolerance-below-float32", ValueError, "rtol", lambda: check_tolerance("rtol", 1e-14, torch.float32)),
    row("validator", "check_device-unknown", ValueError, "device", lambda: check_device("device", "gpu0")),
    row("validator", "check_device-float", TypeError, "device", lambda: check_device("device", 1.5)),
    row("validator", "check_generator-int", TypeError, "generator must", lambda: check_generator("generator", 0)),
    row("validator", "check_all_finite-nan", FloatingPointError, "x", lambda: check_all_finite("x", X * NAN)),
]
# fmt: on


@pytest.mark.parametrize("call,exc,word", ROWS)
def test_bad_input_raises_a_clear_error(call, exc, word):
    with pytest.raises(exc) as info:
        call()
    assert type(info.value) is exc, f"{type(info.value).__name__} is a subclass of {exc.__name__}, not it"
    assert word.lower() in str(info.value).lower(), str(info.value)


def test_table_size_and_categories():
    categories = {}
    for param in ROWS:
        categories[param.id.split("/")[0]] = categories.get(param.id.split("/")[0], 0) + 1
    assert len(ROWS) >= 80 and len({p.id for p in ROWS}) == len(ROWS), categories


def test_validators_accept_what_is_valid():
    # The negative rows above mean nothing if the validators refuse good input too.
    assert check_shape("shape", [4, 2, 3]) == (4, 2, 3)
    assert check_float_dtype("dtype", None) == torch.get_default_dtype()
    assert check_float_dtype("dtype", torch.bfloat16) is torch.bfloat16
    assert check_sample("x", X) is X and check_like("score_fn", SCORE(X, 0.5), X) is not None
    grid = torch.linspace(1, 1e-3, 6)
    assert check_time_grid("grid", grid, 1e-3, 1.0) is grid
    assert check_time_grid("grid", grid.half(), 1e-3, 1.0) is not None  # 1e-3 rounds below itself in float16
    assert check_built_on("predictor", EulerMaruyama(VPSDE()), SDE) is not None  # an equal SDE, another instance
    assert check_tolerance("rtol", 1e-5, torch.float32) == 1e-5 and check_tolerance("rtol", 1e-14, torch.float64)
    assert check_all_finite("x", X) is X
    assert check_device("device", None) is None and check_device("device", "cpu") == torch.device("cpu")
    assert check_generator("generator", None) is None


def test_valid_edge_inputs_still_work():
    # Left valid on purpose: t = 0 and t = T exactly, t_next == t (a zero step), integer times, tensor times.
    mean, std = SDE.marginal_prob(X, 0)
    assert torch.equal(mean, X) and float(std.max()) == 0.0
    assert torch.isfinite(SDE.marginal_prob(X, 1.0)[1]).all()
    f, G = SDE.discretize(X, 0.5, 0.5)
    assert float(f.abs().max()) == 0.0 and float(G.max()) == 0.0
    assert torch.isfinite(SDE.discretize(X, torch.full((4,), 0.6), torch.full((4,), 0.5))[1]).all()
    assert DATA.flow(SDE, X, 0.5, 0.5).allclose(X)
    assert "T=1.0" in repr(SDE) and "T=2.0" in repr(VESDE(T=2.0))


# -- the CLI ---------------------------------------------------------------------------------------------------
# (arguments, the word the one error line must contain); "{tmp}" is a fresh folder, "{file}" a file in it.
CLI_ROWS = [
    (["sample", "--n", "0"], "--n"),
    (["sample", "--n", "-5"], "--n"),
    (["sample", "--n", "abc"], "--n"),
    (["sample", "--steps", "0"], "--steps"),
    (["sample", "--pc", "--snr", "nan"], "--snr"),
    (["sample", "--sde", "ddpm"], "--sde"),
    (["sample", "--dtype", "int64"], "--dtype"),
    (["sample", "--pc", "--predictor", "heun"], "--predictor"),
    (["sample", "--pc", "--corrector", "mala"], "--corrector"),
    (["sample", "--ode", "--method", "rk45"], "--method"),
    (["sample", "--device", "gpu0"], "--device"),
    (["sample", "--out", "{file}/sub"], "--out"),
    (["sample", "--bogus"], "--bogus"),
    (["sample", "--chunk-size", "0"], "--chunk-size"),
    (["sample", "--seeds", "3-x"], "--seeds"),
    (["sample", "--seeds", "0-9", "--seed", "1"], "--seeds"),
    (["train", "--checkpoint-every", "0"], "--checkpoint-every"),
    (["train", "--resume", "--out", "{tmp}"], "nothing to resume"),
    (["sample", "--threads", "0"], "--threads"),
    (["sample", "--grid", "no_such_grid"], "--grid"),
    (["sample", "--pc", "--method", "heun"], "--method"),
    (["sample", "--predictor", "ancestral"], "--pc"),
    (["likelihood", "--eps", "2"], "--eps"),
    (["likelihood", "--n", "0"], "--n"),
    (["likelihood", "--num-samples", "0"], "--num-samples"),
    (["likelihood", "--divergence", "skilling"], "--divergence"),
    (["likelihood", "--rtol", "0"], "--rtol"),
    (["likelihood", "--data", "digits"], "--data"),
    (["likelihood", "--dim", "0"], "--dim"),
    (["verify", "--json", "{tmp}/missing/rows.json"], "--json"),
    (["verify", "--plot", "{tmp}"], "--plot"),
    (["bench", "--out", "{tmp}"], "--out"),
    (["no-such-command"], "no-such-command"),
    (["train", "--threads", "0", "--out", "{tmp}"], "--threads"),
    (["train", "--out", "{file}/sub"], "--out"),
    pytest.param(
        ["sample", "--device", "cuda"],
        "CUDA is not available",
        marks=pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is available here"),
    ),
]


@pytest.fixture
def no_work(monkeypatch):
    """Any command that starts its work before checking its options fails the test."""

    def refuse(*args, **kwargs):
        raise AssertionError("work started before the options were checked")

    for target in (
        "sdesolve.distributed.sample",  # the run itself: the output folder's manifest, then the chunks
        "sdesolve.cli._run.pc_sample",
        "sdesolve.cli._run.ode_sample",
        "sdesolve.cli.verify.run_suite",
        "sdesolve.cli.likelihood.log_likelihood",
        "sdesolve.cli.bench.load_benchmarks",
        "sdesolve.cli.train.train_digits",
    ):
        monkeypatch.setattr(target, refuse)


@pytest.mark.parametrize("args,word", CLI_ROWS)
def test_cli_bad_option_is_one_line_exit_2_before_any_work(tmp_path, no_work, args, word):
    (tmp_path / "a-file").write_text("")
    args = [a.format(tmp=tmp_path, file=tmp_path / "a-file") for a in args]
    result = CliRunner().invoke(app, args)
    lines = result.stderr.strip().splitlines()
    assert result.exit_code == 2, (result.exit_code, result.output)
    assert len(lines) == 1 and lines[0].startswith("Error: ") and word in lines[0], result.stderr


def test_cli_unexpected_error_is_one_line_exit_1_with_the_installed_typer(tmp_path, monkeypatch):
    """An error no check foresaw (here an OSError naming a file, raised where the work starts) is one ``Error:`` line
    naming its type and file, exit 1 — the handler's except clauses are evaluated against the installed typer."""

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device", str(tmp_path / "rows.json"))

    monkeypatch.setattr("sdesolve.cli.verify.run_suite", disk_full)
    result = CliRunner().invoke(app, ["verify", "--quick"])
    lines = result.stderr.strip().splitlines()
    assert result.exit_code == 1, (result.exit_code, result.output)
    assert lines == [f"Error: OSError {str(tmp_path / 'rows.json')!r}: No space left on device"], result.stderr


def test_train_never_writes_into_the_package_by_default():
    from sdesolve.cli.train import DEFAULT_OUT
    from sdesolve.digits import WEIGHTS_PATH

    assert not Path(DEFAULT_OUT).is_absolute()  # a folder in the working directory
    assert not Path(DEFAULT_OUT).resolve().is_relative_to(WEIGHTS_PATH.parent.parent.resolve())  # not in the package


# -- hypothesis: arbitrary wrong values, only the three clear exceptions, bounded time -----------------------------
ALLOWED = (ValueError, TypeError, FloatingPointError)
BOUND_S = (
    20.0  # every call is a closed form or a tiny loop (<< 0.1 s idle, ~1 s on a loaded 2-core box); a hang is minutes
)

WRONG = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-1000, 1000),
    st.floats(allow_nan=True, allow_infinity=True),
    st.complex_numbers(allow_nan=True, allow_infinity=True),
    st.text(max_size=4),
    st.lists(st.floats(allow_nan=True, allow_infinity=True, width=32), max_size=3),
    st.sampled_from(
        [
            torch.tensor(NAN),
            torch.zeros(0),
            torch.zeros(3, 3, 3),
            torch.ones(4, 2, dtype=torch.long),
            torch.ones(4, 2, dtype=torch.complex64),
            torch.int64,
            torch.float16,
            object(),
            (2.7, 2),
            (-1, 2),
            (),
        ]
    ),
)


def _surface():
    """``name -> (call(value), argument)``: one public argument replaced by the wrong value, the rest valid."""
    ve, sched = VESDE(), _ve_scheduler(3)
    return {
        "VPSDE.beta_min": lambda v: VPSDE(beta_min=v),
        "VESDE.sigma_max": lambda v: VESDE(sigma_max=v),
        "SubVPSDE.N": lambda v: SubVPSDE(N=v),
        "VPSDE.T": lambda v: VPSDE(T=v),
        "get_sde.name": lambda v: get_sde(v),
        "marginal_prob.t": lambda v: SDE.marginal_prob(X, v),
        "ve.marginal_prob.t": lambda v: ve.marginal_prob(X, v),
        "sde.t": lambda v: SDE.sde(X, v),
        "discretize.t": lambda v: SDE.discretize(X, v, 0.5),
        "discretize.t_next": lambda v: SDE.discretize(X, 0.5, v),
        "prior_sampling.shape": lambda v: SDE.prior_sampling(v),
        "Gaussian.mean": lambda v: Gaussian(v, 1.0),
        "Gaussian.std": lambda v: Gaussian(0.0, v),
        "Gaussian.event_shape": lambda v: Gaussian(0.0, 1.0, event_shape=v),
        "Gaussian.sample.n": lambda v: DATA.sample(v),
        "Gaussian.marginal.t": lambda v: DATA.marginal(SDE, v),
        "Gaussian.flow.s": lambda v: DATA.flow(SDE, X, 0.5, v),
        "GaussianMixture.weights": lambda v: GaussianMixture(v, [[0.0], [1.0]], [1.0, 1.0]),
        "GaussianMixture.means": lambda v: GaussianMixture([1.0, 1.0], v, [1.0, 1.0]),
        "GaussianMixture.stds": lambda v: GaussianMixture([1.0, 1.0], [[0.0], [1.0]], v),
        "GaussianMixture.marginal.t": lambda v: MIX.marginal(SDE, v),
        "make_grid.grid": lambda v: make_grid(v, SDE, 4, 1e-3),
        "make_grid.steps": lambda v: make_grid("uniform", SDE, v, 1e-3),
        "make_grid.eps": lambda v: make_grid("karras", SDE, 4, v),
        "to_torchsde.event_shape": lambda v: to_torchsde(SDE, SCORE, event_shape=v),
        "bits_per_dim.offset": lambda v: bits_per_dim(torch.zeros(4), X, offset=v),
        "ScoreSdeVeScheduler.snr": lambda v: ScoreSdeVeScheduler(snr=v),
        "ScoreSdeVeScheduler.sigma_min": lambda v: ScoreSdeVeScheduler(sigma_min=v),
        "ScoreSdeVeScheduler.set_timesteps": lambda v: ScoreSdeVeScheduler().set_timesteps(v),
        "ScoreSdeVeScheduler.step_pred.timestep": lambda v: sched.step_pred(torch.zeros_like(X), v, X),
        "ScoreSdeVeScheduler.add_noise.timesteps": lambda v: sched.add_noise(X, torch.zeros_like(X), v),
        "ScoreSdeVpScheduler.sampling_eps": lambda v: ScoreSdeVpScheduler(sampling_eps=v),
        "ScoreSdeVpScheduler.prediction_type": lambda v: ScoreSdeVpScheduler(prediction_type=v),
        "pipeline.output_type": lambda v: _pipeline()(batch_size=1, num_inference_steps=1, output_type=v),
        "pipeline.batch_size": lambda v: _pipeline()(batch_size=v, num_inference_steps=1),
        "pipeline.num_inference_steps": lambda v: _pipeline()(batch_size=1, num_inference_steps=v),
        "ScoreSdeVeScheduler.set_sigmas": lambda v: ScoreSdeVeScheduler().set_sigmas(3, sigma_max=v),
        "ScoreSdeVeScheduler.step_correct.model_output": lambda v: sched.step_correct(v, X),
        "ScoreSdeVpScheduler.step_pred.t": lambda v: _vp_scheduler(3).step_pred(torch.zeros_like(X), X, v),
        "SigmaScoreModel.in_channels": lambda v: SigmaScoreModel(SCORE, ve, sample_size=2, in_channels=v),
        "Gaussian.log_prob.x": lambda v: DATA.log_prob(v),
        "Gaussian.score_fn.t": lambda v: SCORE(X, v),
        "GaussianMixture.score_fn.t": lambda v: MIX.score_fn(SDE)(X, v),
        "prior_logp.z": lambda v: SDE.prior_logp(v),
        "reverse.score_fn": lambda v: SDE.reverse(v),
        "to_torchsde.score_fn": lambda v: to_torchsde(SDE, v),
        "to_torchsde.f.y": lambda v: to_torchsde(SDE, SCORE).f(torch.tensor(0.5), v),
        "dequantization_offset.low": lambda v: dequantization_offset(v, 1.0),
        "dequantization_offset.bits": lambda v: dequantization_offset(0.0, 1.0, bits=v),
        "uniform_grid.eps": lambda v: uniform_grid(SDE, 4, eps=v),
    }


SURFACE = _surface()


def assert_clear_error_in_bounded_time(call, name: str, value) -> None:
    """``call(value)`` either works or raises one of ``ALLOWED`` with a message, within ``BOUND_S``."""
    start = time.perf_counter()
    try:
        call(value)
    except ALLOWED as err:
        assert str(err), f"{name}={value!r}: {type(err).__name__} without a message"
    except Exception as err:  # anything else is a bare library error leaking out
        raise AssertionError(f"{name}={value!r} raised {type(err).__name__}: {err}") from err
    assert time.perf_counter() - start < BOUND_S, f"{name}={value!r} ran {time.perf_counter() - start:.1f} s"


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(name=st.sampled_from(sorted(SURFACE)), value=WRONG)
def test_wrong_values_raise_only_clear_errors_in_bounded_time(name, value):
    assert_clear_error_in_bounded_time(SURFACE[name], name, value)


ENGINE_SURFACE = {
    "pc_sample.shape": lambda v: pc_sample(SDE, SCORE, v, steps=3),
    "pc_sample.dtype": lambda v: pc_sample(SDE, SCORE, (4, 2), steps=3, dtype=v),
    "pc_sample.steps": lambda v: pc_sample(SDE, SCORE, (4, 2), steps=v),
    "pc_sample.eps": lambda v: pc_sample(SDE, SCORE, (4, 2), steps=3, eps=v),
    "pc_sample.x_init": lambda v: pc_sample(SDE, SCORE, (4, 2), steps=3, x_init=v),
    "ode_sample.shape": lambda v: ode_sample(SDE, SCORE, v, method="euler", steps=3),
    "ode_sample.rtol": lambda v: ode_sample(SDE, SCORE, (4, 2), rtol=v),
    "log_likelihood.x": lambda v: log_likelihood(SDE, SCORE, v, method="euler", steps=3),
}


@pytest.mark.timeout(60)
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(name=st.sampled_from(sorted(ENGINE_SURFACE)), value=WRONG)
def test_engine_wrong_values_raise_only_clear_errors_in_bounded_time(name, value):
    assert_clear_error_in_bounded_time(ENGINE_SURFACE[name], name, value)


def test_message_names_the_value():
    # Errors name the argument *and* its value, so a user sees what was passed.
    with pytest.raises(ValueError, match=re.escape("got 1.5")):
        SDE.marginal_prob(X, 1.5)
    with pytest.raises(ValueError, match=r"t=0\.5, t_next=0\.7"):
        SDE.discretize(X, 0.5, 0.7)
    with pytest.raises(ValueError, match="nan"):
        Gaussian(math.nan, 1.0)


def test_pipeline_output_types_as_diffusers():
    # diffusers returns numpy for every output_type but "pil" (its own pipeline test passes "numpy").
    pipe = _pipeline()
    for output_type in ("np", "numpy", None):
        images = pipe(batch_size=2, num_inference_steps=2, output_type=output_type, generator=torch.Generator()).images
        assert type(images).__module__ == "numpy" and images.shape == (2, 2, 2, 1), output_type
    assert type(pipe(batch_size=1, num_inference_steps=2, output_type="pil").images) is list


def test_add_noise_integer_timesteps_still_work():
    sched = _ve_scheduler()
    k = torch.tensor([0, 1, 2, 4])
    noisy = sched.add_noise(X, torch.ones_like(X), k)  # x0 + sigma_k * 1
    assert torch.equal(noisy, X + sched.discrete_sigmas[k][:, None])
