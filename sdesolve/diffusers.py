r"""diffusers-compatible score-SDE schedulers and pipeline (Song et al. 2021; diffusers' ``ScoreSde*`` classes).

Drop-ins for diffusers' ``ScoreSdeVeScheduler``, ``ScoreSdeVpScheduler`` and ``ScoreSdeVePipeline``: same
constructor arguments, config fields, methods and, for the VE classes, the same numbers for the same
generator. Where diffusers has a defect that no documented behaviour relies on, it is fixed (the list, with
reasons, is in the docs page "Using sdesolve with diffusers"): clear errors instead of silent broadcasting or
bare ``IndexError``, the true time step in the VP scheduler, a VE grid index that stays right for any
``sampling_eps``.

diffusers is optional (``pip install -e ".[diffusers]"`` from a clone). When it is installed the schedulers subclass its
``SchedulerMixin`` and ``ConfigMixin`` and the pipeline is a real ``DiffusionPipeline``; without it a small
local config mechanism reads and writes the same ``scheduler_config.json``. The core of sdesolve never
imports this module.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ._utils import append_dims, as_batch_tensor, batch_time, check_choice, check_int, check_positive
from .analytic import Gaussian, GaussianMixture
from .sde import VESDE, VPSDE

try:
    from diffusers import ConfigMixin, DiffusionPipeline, SchedulerMixin
    from diffusers.configuration_utils import register_to_config
    from diffusers.utils import BaseOutput

    HAS_DIFFUSERS = True
except ImportError:  # the optional extra is not installed
    from ._diffusers_fallback import BaseOutput, ConfigMixin, SchedulerMixin, register_to_config
    from ._diffusers_fallback import PipelineBase as DiffusionPipeline

    HAS_DIFFUSERS = False

__all__ = [
    "HAS_DIFFUSERS",
    "SdeVeOutput",
    "SchedulerOutput",
    "ImagePipelineOutput",
    "ScoreSdeVeScheduler",
    "ScoreSdeVpScheduler",
    "ScoreSdeVePipeline",
    "SigmaScoreModel",
    "to_images",
]

Generator = torch.Generator | Sequence[torch.Generator] | None

# Grid points computed in float32 sit within a few ulps of their exact position k (Δpos ≲ N·6e-8 ≤ 1e-3 for
# N ≤ 16 000); this slack puts them on k without moving off-grid times (diffusers floors t·(N−1)).
_GRID_SNAP = 1e-3
_OUTPUT_TYPES = ("pil", "np", "numpy", None, "pt", "latent")  # None gives numpy, as in diffusers' pipeline


@dataclass
class SdeVeOutput(BaseOutput):
    """Output of `ScoreSdeVeScheduler.step_pred`.

    Args:
        prev_sample: the next sample $x_{i-1}$ (``[B, *event]``), fed to the model at the next step.
        prev_sample_mean: its noise-free mean (``[B, *event]``); the final one is the sampler's output.
    """

    prev_sample: Tensor
    prev_sample_mean: Tensor


@dataclass
class SchedulerOutput(BaseOutput):
    """Output of `ScoreSdeVeScheduler.step_correct`: the corrected sample ``prev_sample`` (``[B, *event]``)."""

    prev_sample: Tensor


@dataclass
class ImagePipelineOutput(BaseOutput):
    """Output of `ScoreSdeVePipeline`: ``images``, a list of PIL images or a ``[B, H, W, C]`` numpy array."""

    images: Any


def _randn(shape: Sequence[int], generator: Generator, device=None, dtype=None) -> Tensor:
    """Standard normal draw in the order of diffusers' ``randn_tensor``, so equal generators give equal numbers.

    One ``torch.randn`` per generator (per sample for a list), on the generator's device, then moved to
    ``device``; without a generator, torch's default generator on ``device``. (diffusers raises for a CUDA
    generator and a CPU target; drawing on the generator's device makes that case work.)
    """
    shape = tuple(shape)
    if generator is None:
        return torch.randn(shape, device=device, dtype=dtype)
    if isinstance(generator, torch.Generator):
        draw = torch.randn(shape, generator=generator, device=generator.device, dtype=dtype)
    else:
        if len(generator) != shape[0]:
            raise ValueError(f"a list of generators needs one per sample: got {len(generator)} for batch {shape[0]}")
        draw = torch.cat([torch.randn((1, *shape[1:]), generator=g, device=g.device, dtype=dtype) for g in generator])
    return draw.to(device or torch.device("cpu"))


def _check_same_shape(name: str, value: Tensor, sample: Tensor) -> None:
    """diffusers silently broadcasts a mis-shaped model output to a new shape; we refuse it."""
    for arg, tensor in ((name, value), ("sample", sample)):
        if not isinstance(tensor, Tensor) or not tensor.is_floating_point():
            kind = f"dtype {tensor.dtype}" if isinstance(tensor, Tensor) else type(tensor).__name__
            raise TypeError(f"{arg} must be a floating-point torch.Tensor, got {kind}")
    if value.shape != sample.shape:
        raise ValueError(f"{name} must have the sample's shape {tuple(sample.shape)}, got {tuple(value.shape)}")


def _check_unit_interval(name: str, t: Tensor) -> None:
    """Timesteps live in [0, 1] (1 = prior, eps = data end); a small host sync, on the tiny ``t`` only."""
    if not bool(((t >= 0) & (t <= 1)).all()):
        raise ValueError(f"{name} must lie in the schedule's range [0, 1], got {t.flatten().tolist()!r}")


def _check_sigmas(sigma_min: float, sigma_max: float) -> tuple[float, float]:
    sigma_min, sigma_max = check_positive("sigma_min", sigma_min), check_positive("sigma_max", sigma_max)
    if sigma_min > sigma_max:
        raise ValueError(f"sigma_min must be <= sigma_max, got sigma_min={sigma_min!r}, sigma_max={sigma_max!r}")
    return sigma_min, sigma_max


def _check_eps(sampling_eps: float, *, strict: bool) -> float:
    sampling_eps = check_positive("sampling_eps", sampling_eps, strict=strict)
    if sampling_eps >= 1:
        raise ValueError(f"sampling_eps must be < 1 (timesteps run from 1 down to it), got {sampling_eps!r}")
    return sampling_eps


class ScoreSdeVeScheduler(SchedulerMixin, ConfigMixin):
    r"""Predictor–corrector scheduler for the VE SDE (Song et al. 2021, eq. 9, Algorithm 2; diffusers' class).

    Timesteps $t_i$ run over ``linspace(1, sampling_eps, N)``; the predictor steps through the geometric
    discrete levels $\sigma_k = \sigma_{\min}(\sigma_{\max}/\sigma_{\min})^{k/(N-1)}$ (reverse diffusion,
    eq. 47) and the corrector is batch-norm Langevin with step $2(\mathrm{snr}\,\|z\|/\|\nabla\|)^2$.

    Args:
        num_train_timesteps: length of the default schedule set at construction (diffusers' signature default
            2000; its docs say 1000, the signature wins).
        snr: Langevin signal-to-noise ratio, ``>= 0``.
        sigma_min: smallest noise level, ``> 0``.
        sigma_max: largest noise level (also ``init_noise_sigma``), ``>= sigma_min``.
        sampling_eps: last timestep, in ``[0, 1)``.
        correct_steps: Langevin steps per predictor step (read by the pipeline), ``>= 0``.
    """

    order = 1

    @register_to_config
    def __init__(
        self,
        num_train_timesteps: int = 2000,
        snr: float = 0.15,
        sigma_min: float = 0.01,
        sigma_max: float = 1348.0,
        sampling_eps: float = 1e-5,
        correct_steps: int = 1,
    ) -> None:
        check_int("num_train_timesteps", num_train_timesteps)
        check_positive("snr", snr, strict=False)
        check_int("correct_steps", correct_steps, minimum=0)
        _check_sigmas(sigma_min, sigma_max)
        _check_eps(sampling_eps, strict=False)
        self.init_noise_sigma = sigma_max
        self.timesteps: Tensor | None = None
        # As diffusers: a full num_train_timesteps schedule is ready before any set_timesteps call.
        self.set_sigmas(num_train_timesteps, sigma_min, sigma_max, sampling_eps)

    def scale_model_input(self, sample: Tensor, timestep: float | Tensor | None = None) -> Tensor:
        """Identity: the VE model takes the sample unscaled."""
        return sample

    def set_timesteps(
        self, num_inference_steps: int, sampling_eps: float | None = None, device: str | torch.device | None = None
    ) -> None:
        """Set ``timesteps = linspace(1, sampling_eps, num_inference_steps)`` (float32, on ``device``)."""
        check_int("num_inference_steps", num_inference_steps)
        eps = self.config.sampling_eps if sampling_eps is None else _check_eps(sampling_eps, strict=False)
        self.timesteps = torch.linspace(1, eps, num_inference_steps, device=device)
        self._timesteps_eps = eps  # read by `_level_index` without a device sync

    def set_sigmas(
        self,
        num_inference_steps: int,
        sigma_min: float | None = None,
        sigma_max: float | None = None,
        sampling_eps: float | None = None,
    ) -> None:
        r"""Set ``sigmas`` $=\sigma_{\min}(\sigma_{\max}/\sigma_{\min})^{t_i}$ and the N geometric ``discrete_sigmas``.

        As in diffusers, timesteps already set are kept (``sampling_eps`` then only matters when none are):
        call `set_timesteps` first, as the pipeline does. ``sigmas`` live on CPU, like diffusers'.
        """
        check_int("num_inference_steps", num_inference_steps)
        sigma_min, sigma_max = _check_sigmas(
            self.config.sigma_min if sigma_min is None else sigma_min,
            self.config.sigma_max if sigma_max is None else sigma_max,
        )
        if self.timesteps is None:
            self.set_timesteps(num_inference_steps, sampling_eps)
        self.sigmas = _geometric_sigmas(sigma_min, sigma_max, self.timesteps.cpu())
        log_levels = torch.linspace(math.log(sigma_min), math.log(sigma_max), num_inference_steps)
        self.discrete_sigmas = torch.exp(log_levels)

    def _level_index(self, timestep: float | Tensor, batch: int) -> Tensor:
        r"""Index $k$ of the discrete level for ``timestep``: $\lfloor (t-\varepsilon)(N-1)/(1-\varepsilon)\rfloor$.

        Exact on the grid $t_i$ for every ``sampling_eps`` (diffusers' $\lfloor t(N-1)\rfloor$ repeats levels
        and never reaches $k = 0$ once $\varepsilon(N-1) \ge 1$); $t \in [0, \varepsilon]$ is the last level.
        Computed on CPU, where the levels live (diffusers moves the timestep there too).
        """
        n, eps = len(self.timesteps), self._timesteps_eps
        if n != len(self.discrete_sigmas):
            raise ValueError(
                f"{n} timesteps but {len(self.discrete_sigmas)} discrete sigmas: call set_timesteps(n) and then "
                "set_sigmas(n) with the same n"
            )
        t = as_batch_tensor("timestep", timestep, batch, torch.float32).cpu().expand(batch)  # diffusers' float32
        _check_unit_interval("timestep", t)
        pos = (t.double() - eps) * ((n - 1) / (1 - eps))
        return torch.floor(pos + _GRID_SNAP).long().clamp(min=0)  # [0, eps) is the last level, k = 0

    def step_pred(
        self,
        model_output: Tensor,
        timestep: float | Tensor,
        sample: Tensor,
        generator: Generator = None,
        return_dict: bool = True,
    ) -> SdeVeOutput | tuple[Tensor, Tensor]:
        r"""Reverse-diffusion predictor (Song et al. 2021, eq. 47): $\bar x = x + g^2 s_\theta$, $x' = \bar x + g z$.

        $g^2 = \sigma_k^2 - \sigma_{k-1}^2$ ($\sigma_{-1} = 0$) for the level $k$ of ``timestep``.

        Args:
            model_output: the score $s_\theta(x, \sigma)$, shaped like ``sample``.
            timestep: a timestep from ``self.timesteps`` (a float or 0-d tensor in [0, 1]).
            sample: current sample $x$, ``[B, *event]``.
            generator: torch generator(s) for the noise $z$.
            return_dict: return `SdeVeOutput` (else a tuple).

        Returns:
            ``SdeVeOutput(prev_sample, prev_sample_mean)``, both ``[B, *event]``.
        """
        _check_same_shape("model_output", model_output, sample)
        k = self._level_index(timestep, sample.shape[0])
        sigma = self.discrete_sigmas[k]
        sigma_prev = torch.where(k > 0, self.discrete_sigmas[(k - 1).clamp(min=0)], torch.zeros_like(sigma))
        g = append_dims((sigma**2 - sigma_prev**2).sqrt().to(sample.device), sample.ndim)
        noise = _randn(sample.shape, generator, device=sample.device, dtype=sample.dtype)
        mean = sample + g**2 * model_output
        prev = mean + g * noise
        return SdeVeOutput(prev_sample=prev, prev_sample_mean=mean) if return_dict else (prev, mean)

    def step_correct(
        self, model_output: Tensor, sample: Tensor, generator: Generator = None, return_dict: bool = True
    ) -> SchedulerOutput | tuple[Tensor]:
        r"""Langevin corrector (Song et al. 2021, Algorithm 4): $\bar x = x + \epsilon s_\theta$, $x' = \bar x + \sqrt{2\epsilon}z$.

        $\epsilon = 2(\mathrm{snr}\,\overline{\|z\|}/\overline{\|s_\theta\|})^2$ with batch-mean norms (diffusers).
        The noise is drawn in the default dtype and on the generator's device (CPU without one), as diffusers.

        Args:
            model_output: the score $s_\theta(x, \sigma)$, shaped like ``sample``.
            sample: current sample $x$, ``[B, *event]``.
            generator: torch generator(s) for the noise $z$.
            return_dict: return `SchedulerOutput` (else a 1-tuple).

        Returns:
            ``SchedulerOutput(prev_sample)``, ``[B, *event]``.
        """
        _check_same_shape("model_output", model_output, sample)
        noise = _randn(sample.shape, generator).to(sample.device)
        grad_norm = model_output.reshape(sample.shape[0], -1).norm(dim=-1).mean()
        noise_norm = noise.reshape(sample.shape[0], -1).norm(dim=-1).mean()
        step = 2 * (self.config.snr * noise_norm / grad_norm) ** 2
        mean = sample + step * model_output
        prev = mean + (2 * step).sqrt() * noise
        return SchedulerOutput(prev_sample=prev) if return_dict else (prev,)

    def add_noise(
        self, original_samples: Tensor, noise: Tensor | None, timesteps: Tensor, generator: Generator = None
    ) -> Tensor:
        r"""Perturb data to level $k$: $x = x_0 + \sigma_k z$ (``timesteps`` are integer level indices ``[B]``).

        ``noise=None`` draws $z$ from ``generator`` (diffusers uses the global RNG).
        """
        k = as_batch_tensor("timesteps", timesteps, original_samples.shape[0])
        if k.is_floating_point():
            raise TypeError(f"timesteps must be integer level indices (as diffusers' add_noise), got {timesteps!r}")
        k = k.long().cpu()
        if bool(((k < 0) | (k >= len(self.discrete_sigmas))).any()):
            raise ValueError(
                f"timesteps must be level indices in [0, {len(self.discrete_sigmas) - 1}], got {k.tolist()}"
            )
        if noise is None:
            noise = _randn(original_samples.shape, generator, original_samples.device, original_samples.dtype)
        _check_same_shape("noise", noise, original_samples)
        sigma = self.discrete_sigmas[k].to(original_samples.device)
        return original_samples + append_dims(sigma, noise.ndim) * noise

    def __len__(self) -> int:
        return self.config.num_train_timesteps


def _geometric_sigmas(sigma_min: float, sigma_max: float, t: Tensor) -> Tensor:
    r"""$\sigma_{\min}(\sigma_{\max}/\sigma_{\min})^t$ in float32: the power correctly rounded from float64.

    diffusers evaluates float32 ``powf`` per element; the two agree except for rare 1-ulp differences.
    """
    ratio = torch.tensor(sigma_max / sigma_min, dtype=torch.float32).double()
    return torch.tensor(sigma_min, dtype=torch.float32) * (ratio ** t.double()).float()


class ScoreSdeVpScheduler(SchedulerMixin, ConfigMixin):
    r"""Euler–Maruyama on the reverse VP SDE (Song et al. 2021, eqs. 6 and 11; diffusers' class).

    $\bar x = x + [-\tfrac12\beta(t)x - \beta(t)\,s]\,\Delta t$, $x' = \bar x + \sqrt{\beta(t)\,|\Delta t|}\,z$ with
    the true spacing $\Delta t = t_{i+1} - t_i$ of ``linspace(1, sampling_eps, N)``; the step at the last
    timestep lands on $t = 0$. (diffusers uses $\Delta t = -1/N$ on this N-point grid.)

    Args:
        num_train_timesteps: kept for config compatibility (``len(scheduler)``).
        beta_min: $\beta(0)$ of the linear noise rate $\beta(t)$, ``0 <= beta_min <= beta_max``.
        beta_max: $\beta(1)$.
        sampling_eps: last timestep, in ``(0, 1)``.
        prediction_type: ``"epsilon"`` (the model predicts the noise, score $= -\hat\epsilon/\sigma(t)$; what
            diffusers assumes) or ``"score"``.
    """

    order = 1

    @register_to_config
    def __init__(
        self,
        num_train_timesteps: int = 2000,
        beta_min: float = 0.1,
        beta_max: float = 20,
        sampling_eps: float = 1e-3,
        prediction_type: str = "epsilon",
    ) -> None:
        check_int("num_train_timesteps", num_train_timesteps)
        _check_eps(sampling_eps, strict=True)
        check_choice("prediction_type", prediction_type, ("epsilon", "score"))
        self.sde = VPSDE(beta_min=beta_min, beta_max=beta_max)
        self.timesteps: Tensor | None = None

    def set_timesteps(self, num_inference_steps: int, device: str | torch.device | None = None) -> None:
        """Set ``timesteps = linspace(1, sampling_eps, num_inference_steps)`` (float32, on ``device``)."""
        check_int("num_inference_steps", num_inference_steps)
        self.timesteps = torch.linspace(1, self.config.sampling_eps, num_inference_steps, device=device)

    def _next_time(self, t: Tensor) -> Tensor:
        """The grid point after ``t`` (``[B]``): ``t - h`` with ``h = (1 - eps)/(N - 1)``, and 0 after the last."""
        n, eps = len(self.timesteps), self.config.sampling_eps
        if n == 1:
            return torch.zeros_like(t)
        h = (1 - eps) / (n - 1)
        return torch.where(t > eps + 0.5 * h, t - h, torch.zeros_like(t))

    def step_pred(
        self, score: Tensor, x: Tensor, t: float | Tensor, generator: Generator = None
    ) -> tuple[Tensor, Tensor]:
        r"""One Euler–Maruyama step of the reverse VP SDE from timestep ``t`` to the next grid point.

        Args:
            score: model output, shaped like ``x``: a noise prediction $\hat\epsilon$ or a score (``prediction_type``).
            x: current sample, ``[B, *event]``.
            t: a timestep from ``self.timesteps`` (scalar or ``[B]``).
            generator: torch generator(s) for the noise $z$.

        Returns:
            ``(x, x_mean)``, both ``[B, *event]``; the final ``x_mean`` is the noise-free output.
        """
        if self.timesteps is None:
            raise ValueError(
                "`self.timesteps` is not set, you need to run 'set_timesteps' after creating the scheduler"
            )
        _check_same_shape("score", score, x)
        t = batch_time(t, x)
        _check_unit_interval("t", t)
        if self.config.prediction_type == "epsilon":
            score = -score / append_dims(self.sde.std(t), x.ndim)
        drift, g = self.sde.reverse(lambda *_: score).sde(x, t)
        dt = self._next_time(t) - t
        x_mean = x + drift * append_dims(dt, x.ndim)
        noise = _randn(x.shape, generator, device=x.device, dtype=x.dtype)
        return x_mean + append_dims(g * (-dt).sqrt(), x.ndim) * noise, x_mean

    def __len__(self) -> int:
        return self.config.num_train_timesteps


class SigmaScoreModel(torch.nn.Module):
    r"""A score function $s(x, t)$ of a `VESDE` served as a diffusers-style VE model ``model(x, sigma)``.

    ``sigma`` maps to $t = \log(\sigma/\sigma_{\min}) / \log(\sigma_{\max}/\sigma_{\min})$, so exact oracles
    (``Gaussian(...).score_fn(sde)``) run through `ScoreSdeVePipeline` like a trained NCSN++.

    Args:
        score_fn: ``score_fn(x, t) -> tensor like x``, with ``t`` of shape ``[B]``.
        sde: the `VESDE` whose time ``score_fn`` reads.
        sample_size: image side (or ``(height, width)``), read by the pipeline as ``config.sample_size``.
        in_channels: image channels, read as ``config.in_channels``.
    """

    def __init__(
        self,
        score_fn: Callable[[Tensor, Tensor], Tensor],
        sde: VESDE,
        *,
        sample_size: int | tuple[int, int],
        in_channels: int = 3,
    ) -> None:
        super().__init__()
        if not isinstance(sde, VESDE):
            raise TypeError(f"sde must be a VESDE (the model is called with sigma), got {sde!r}")
        self.score_fn, self.sde = score_fn, sde
        self.config = SimpleNamespace(sample_size=sample_size, in_channels=check_int("in_channels", in_channels))
        self.register_buffer("_anchor", torch.empty(0), persistent=False)  # follows .to(device) for `device`

    @property
    def device(self) -> torch.device:
        """Where the pipeline puts samples (diffusers reads ``unet.device``); moved by ``.to(device)``."""
        return self._anchor.device

    @classmethod
    def from_oracle(
        cls, data: Gaussian | GaussianMixture, sde: VESDE, *, sample_size: int | tuple[int, int], in_channels: int = 3
    ) -> SigmaScoreModel:
        """The exact score of ``data`` perturbed by ``sde`` (event shape ``[in_channels, H, W]``)."""
        return cls(data.score_fn(sde), sde, sample_size=sample_size, in_channels=in_channels)

    def forward(self, x: Tensor, sigma: Tensor) -> Tensor:
        """Score at noise level ``sigma`` (``[B]`` or scalar) for ``x`` of shape ``[B, C, H, W]``."""
        sigma = batch_time(sigma, x)
        t = torch.log(sigma / self.sde.sigma_min) / math.log(self.sde.sigma_max / self.sde.sigma_min)
        return self.score_fn(x, t)


class ScoreSdeVePipeline(DiffusionPipeline):
    r"""Unconditional VE predictor–corrector sampling (Song et al. 2021, Algorithm 2; diffusers' pipeline).

    Each timestep runs ``scheduler.config.correct_steps`` Langevin corrections, then the predictor; the
    output is the final noise-free mean clamped to $[0, 1]$, channels last.

    Args:
        unet: a diffusers ``UNet2DModel`` or any ``model(x, sigma)`` returning the score (a tensor or an
            object with ``.sample``) with ``config.sample_size`` and ``config.in_channels``; see `SigmaScoreModel`.
        scheduler: a `ScoreSdeVeScheduler` (ours or diffusers').
    """

    def __init__(self, unet: torch.nn.Module, scheduler: ScoreSdeVeScheduler) -> None:
        super().__init__()
        self.register_modules(unet=unet, scheduler=scheduler)

    def _image_shape(self) -> tuple[int, int, int]:
        config = getattr(self.unet, "config", None)
        size, channels = getattr(config, "sample_size", None), getattr(config, "in_channels", None)
        if size is None or channels is None:
            raise TypeError(
                "unet needs config.sample_size and config.in_channels (as UNet2DModel); wrap a score function "
                "in SigmaScoreModel"
            )
        height, width = (size, size) if isinstance(size, int) else tuple(size)
        return channels, height, width

    def _score(self, sample: Tensor, sigma: Tensor) -> Tensor:
        out = self.unet(sample, sigma)
        return out if isinstance(out, Tensor) else out.sample

    @torch.no_grad()
    def __call__(
        self,
        batch_size: int = 1,
        num_inference_steps: int = 2000,
        generator: Generator = None,
        output_type: str | None = "pil",
        return_dict: bool = True,
    ) -> ImagePipelineOutput | tuple:
        """Sample ``batch_size`` images.

        Args:
            batch_size: number of images.
            num_inference_steps: predictor steps N (each preceded by ``correct_steps`` corrections).
            generator: torch generator (or one per image) for every random draw.
            output_type: ``"pil"`` (list of ``PIL.Image``), ``"np"``, ``"numpy"`` or ``None`` (``[B, H, W, C]``
                float array in [0, 1]), ``"pt"`` (``[B, C, H, W]`` tensor in [0, 1] on the pipeline's device) or
                ``"latent"`` (the final noise-free mean, unclamped), as diffusers' image processor; typos are refused.
            return_dict: return `ImagePipelineOutput` (else a 1-tuple).

        Returns:
            ``ImagePipelineOutput(images)``.

        Raises:
            FloatingPointError: the model returned a non-finite score (checked on device, synced once at the end).
        """
        check_int("batch_size", batch_size)
        check_int("num_inference_steps", num_inference_steps)
        if output_type not in _OUTPUT_TYPES:
            raise ValueError(
                f"unknown output_type {output_type!r}; choose one of: {', '.join(map(repr, _OUTPUT_TYPES))}"
            )
        scheduler = self.scheduler
        sample = (_randn((batch_size, *self._image_shape()), generator) * scheduler.init_noise_sigma).to(self.device)
        scheduler.set_timesteps(num_inference_steps)
        scheduler.set_sigmas(num_inference_steps)
        first_bad = torch.full((), -1, device=self.device)
        for i, t in enumerate(self.progress_bar(scheduler.timesteps)):
            sigma_t = scheduler.sigmas[i] * torch.ones(batch_size, device=self.device)
            for _ in range(scheduler.config.correct_steps):
                score = self._score(sample, sigma_t)
                first_bad = _flag_nonfinite(first_bad, score, i)
                sample = scheduler.step_correct(score, sample, generator=generator).prev_sample
            score = self._score(sample, sigma_t)
            first_bad = _flag_nonfinite(first_bad, score, i)
            out = scheduler.step_pred(score, t, sample, generator=generator)
            sample, mean = out.prev_sample, out.prev_sample_mean
        _raise_if_flagged(first_bad, scheduler)
        if output_type in ("pt", "latent"):
            images = mean if output_type == "latent" else mean.clamp(0, 1)
        else:
            images = mean.clamp(0, 1).cpu().permute(0, 2, 3, 1).numpy()
            if output_type == "pil":
                images = _to_pil(images)
        return ImagePipelineOutput(images=images) if return_dict else (images,)


def _flag_nonfinite(first_bad: Tensor, score: Tensor, step: int) -> Tensor:
    """Record ``step`` on device if ``score`` is the first non-finite one (no host sync)."""
    return torch.where((first_bad < 0) & ~torch.isfinite(score).all(), step, first_bad)


def _raise_if_flagged(first_bad: Tensor, scheduler: Any) -> None:
    step = int(first_bad)  # the loop's single host sync
    if step >= 0:
        t, sigma = float(scheduler.timesteps[step]), float(scheduler.sigmas[step])
        raise FloatingPointError(f"non-finite model output at step {step} (t={t:.6g}, sigma={sigma:.6g})")


def to_images(
    samples: Tensor, value_range: tuple[float, float] = (-1.0, 1.0), output_type: str = "pil"
) -> list | np.ndarray:
    """Samples ``[B, C, H, W]`` in ``value_range`` (model scale; diffusers' UNets: [-1, 1]) as images.

    Values are mapped affinely to [0, 1] and clipped there for display (as diffusers' image processor does).

    Args:
        samples: ``[B, C, H, W]`` with ``C`` 1 or 3.
        value_range: ``(lo, hi)`` of the model scale, ``lo < hi``.
        output_type: ``"pil"`` (list of ``PIL.Image``, mode ``L`` or ``RGB``) or ``"np"`` (``[B, H, W, C]``
            float32 in [0, 1]).
    """
    check_choice("output_type", output_type, ("pil", "np"))
    if samples.ndim != 4 or samples.shape[1] not in (1, 3):
        raise ValueError(f"samples must be [B, C, H, W] with C = 1 or 3, got shape {tuple(samples.shape)}")
    lo, hi = (float(v) for v in value_range)
    if not lo < hi:
        raise ValueError(f"value_range must be (lo, hi) with lo < hi, got {value_range!r}")
    images = ((samples.detach().float().cpu() - lo) / (hi - lo)).clamp(0, 1).permute(0, 2, 3, 1).numpy()
    return _to_pil(images) if output_type == "pil" else images


def _to_pil(images: np.ndarray) -> list:
    """``[B, H, W, C]`` floats in [0, 1] to PIL images (RGB, or ``L`` for one channel), rounding as diffusers."""
    from PIL import Image

    pixels = (images * 255).round().astype(np.uint8)
    if pixels.shape[-1] == 1:
        return [Image.fromarray(p[..., 0]) for p in pixels]  # 2-D uint8 is mode "L"
    return [Image.fromarray(p) for p in pixels]
