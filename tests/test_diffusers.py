"""diffusers compatibility: parity with live diffusers, its published test values, and exact Gaussian laws.

References: live diffusers classes run side by side with identical generators (bitwise where we reproduce
its float32 operations), the expected values of diffusers' own ``test_scheduler_score_sde_ve.py``, and closed
forms (Gaussian marginals, an Euler–Maruyama step by hand, an exact second-moment recursion).
"""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from sdesolve import VESDE, VPSDE, Gaussian
from sdesolve import ode_sample as sd_ode_sample

diffusers = pytest.importorskip("diffusers")
sd = pytest.importorskip("sdesolve.diffusers")
from diffusers.schedulers.deprecated.scheduling_sde_vp import ScoreSdeVpScheduler as TheirVp  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
TheirVe = diffusers.ScoreSdeVeScheduler

VE_CONFIGS = [
    {},
    {"sigma_min": 1e-3, "sigma_max": 100.0, "snr": 0.2},
    {"sigma_min": 1e-4, "sigma_max": 1.0, "sampling_eps": 1e-3, "correct_steps": 2},
]


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny tensors: on a shared 2-core runner, torch's thread pool costs 100× the work (measured 2 s vs 20 ms)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def both_ve(config: dict, steps: int):
    ours, theirs = sd.ScoreSdeVeScheduler(**config), TheirVe(**config)
    for s in (ours, theirs):
        s.set_timesteps(steps)
        s.set_sigmas(steps)
    return ours, theirs


def assert_bitwise(a: torch.Tensor, b: torch.Tensor) -> None:
    # atol 1e-6 with rtol 0: at |x| ~ sigma_max = 1e3 (float32 ulp 6e-5) this demands identical bits.
    torch.testing.assert_close(a, b, rtol=0, atol=1e-6)


# ---------------------------------------------------------------------------------------------- VE scheduler


@pytest.mark.parametrize("config", VE_CONFIGS)
@pytest.mark.parametrize("steps", [1, 3, 10, 1000])
def test_ve_schedule_matches_diffusers(config, steps):
    ours, theirs = both_ve(config, steps)
    assert_bitwise(ours.timesteps, theirs.timesteps)
    assert_bitwise(ours.discrete_sigmas, theirs.discrete_sigmas)
    # sigmas: ours is the correctly rounded float32 power, diffusers' per-element powf differs by <= 1 ulp in a
    # handful of entries at N = 1000 (measured), so rtol = 2 float32 ulps.
    torch.testing.assert_close(ours.sigmas, theirs.sigmas, rtol=2.4e-7, atol=0)
    assert ours.init_noise_sigma == theirs.init_noise_sigma and len(ours) == len(theirs)


@pytest.mark.parametrize("config", VE_CONFIGS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_ve_steps_match_diffusers(config, dtype):
    steps = 10
    ours, theirs = both_ve(config, steps)
    x = 5 * torch.randn(4, 3, 8, 8, generator=gen(1), dtype=dtype)
    score = -x / 30 + 0.1 * torch.randn(x.shape, generator=gen(2), dtype=dtype)
    for t in ours.timesteps:
        a = ours.step_pred(score, t, x, generator=gen(3))
        b = theirs.step_pred(score, t, x, generator=gen(3))
        assert_bitwise(a.prev_sample, b.prev_sample)
        assert_bitwise(a.prev_sample_mean, b.prev_sample_mean)
    assert_bitwise(ours.step_correct(score, x, generator=gen(4))[0], theirs.step_correct(score, x, generator=gen(4))[0])
    gens = [gen(5 + i) for i in range(4)], [gen(5 + i) for i in range(4)]  # one generator per sample
    assert_bitwise(
        ours.step_pred(score, 0.5, x, generator=gens[0])[0], theirs.step_pred(score, 0.5, x, generator=gens[1])[0]
    )
    a, b = (
        ours.step_pred(score, 1.0, x, generator=gen(6), return_dict=False),
        theirs.step_pred(score, 1.0, x, generator=gen(6), return_dict=False),
    )
    assert isinstance(a, tuple) and len(a) == 2
    assert_bitwise(a[0], b[0])


def dummy_sample_deter() -> torch.Tensor:
    """diffusers' test input: arange over (C, H, W, B) / numel, permuted to (B, C, H, W)."""
    n = 4 * 3 * 8 * 8
    return (torch.arange(n).reshape(3, 8, 8, 4) / n).permute(3, 0, 1, 2)


def pc_loop(scheduler, steps: int, sample: torch.Tensor, order=("sigmas", "timesteps")) -> torch.Tensor:
    """The full loop of diffusers' test (model: sample * sigma / (sigma + 1)), generator seeded with 0."""
    for name in order:
        getattr(scheduler, f"set_{name}")(steps)
    generator = torch.manual_seed(0)
    for i, t in enumerate(scheduler.timesteps):
        sigma = scheduler.sigmas[i]
        for _ in range(scheduler.config.correct_steps):
            sample = scheduler.step_correct(sample * sigma / (sigma + 1), sample, generator=generator).prev_sample
        sample = scheduler.step_pred(sample * sigma / (sigma + 1), t, sample, generator=generator).prev_sample
    return sample


def test_ve_full_loop_matches_diffusers_published_values():
    # diffusers tests/schedulers/test_scheduler_score_sde_ve.py::test_full_loop_no_noise (np.isclose: rtol 1e-5).
    config = {"num_train_timesteps": 2000, "snr": 0.15, "sigma_min": 0.01, "sigma_max": 1348, "sampling_eps": 1e-5}
    sample = pc_loop(sd.ScoreSdeVeScheduler(**config), 3, dummy_sample_deter())
    assert np.isclose(sample.abs().sum().item(), 14372758528.0)
    assert np.isclose(sample.abs().mean().item(), 18714530.0)


@pytest.mark.parametrize("config", VE_CONFIGS)
def test_ve_full_pc_loop_matches_live_diffusers(config):
    order = ("timesteps", "sigmas")  # the pipeline's order
    ours = pc_loop(sd.ScoreSdeVeScheduler(**config), 20, dummy_sample_deter(), order)
    theirs = pc_loop(TheirVe(**config), 20, dummy_sample_deter(), order)
    torch.testing.assert_close(ours, theirs, rtol=1e-6, atol=1e-6)  # float32 states up to ~1e3: ~1 ulp relative


def test_ve_fresh_scheduler_steps_like_diffusers():
    """diffusers' test_time_indices / test_step_shape step a new scheduler (its num_train_timesteps schedule)."""
    ours, theirs = sd.ScoreSdeVeScheduler(), TheirVe()
    x = torch.rand(4, 3, 8, 8, generator=gen(1))
    for t in [0, 0.1, 0.5, 0.75, 1]:  # off-grid times keep diffusers' floor(t (N - 1)) level
        assert_bitwise(
            ours.step_pred(0.1 * x, t, x, generator=gen(0))[0], theirs.step_pred(0.1 * x, t, x, generator=gen(0))[0]
        )


def realized_g2(scheduler, t, x) -> torch.Tensor:
    """Predictor variance g^2 read back from a zero-score step: prev - x = g z with z from the same seed."""
    z = torch.randn(x.shape, generator=gen(9))
    return ((scheduler.step_pred(torch.zeros_like(x), t, x, generator=gen(9)).prev_sample - x) / z)[:, 0, 0, 0] ** 2


def test_ve_level_index_fixed_when_eps_times_n_reaches_one():
    """With sampling_eps (N - 1) >= 1 diffusers' floor(t (N - 1)) repeats levels and never reaches sigma_{-1} = 0."""
    steps, config = 200, {"sampling_eps": 0.01, "sigma_min": 0.01, "sigma_max": 10.0}
    ours, theirs = both_ve(config, steps)
    x = torch.zeros(2, 1, 2, 2)
    levels = 0.01 * 1000.0 ** (torch.arange(steps, dtype=torch.float64) / (steps - 1))  # closed form sigma_k
    expected = levels**2 - torch.cat([torch.zeros(1, dtype=torch.float64), levels[:-1] ** 2])  # g_k^2
    for i, t in enumerate(ours.timesteps):
        k = steps - 1 - i
        torch.testing.assert_close(realized_g2(ours, t, x).double(), expected[k].expand(2), rtol=1e-4, atol=0)
    last = theirs.timesteps[-1]
    assert not torch.allclose(realized_g2(theirs, last, x).double(), expected[0].expand(2), rtol=1e-2)


def test_ve_errors():
    for bad in [{"sigma_min": 2.0, "sigma_max": 1.0}, {"sigma_min": 0.0}, {"snr": -0.1}, {"correct_steps": -1}]:
        with pytest.raises(ValueError, match=next(iter(bad))):
            sd.ScoreSdeVeScheduler(**bad)
    s = sd.ScoreSdeVeScheduler()
    for call in (lambda: s.set_timesteps(0), lambda: s.set_sigmas(0), lambda: s.set_sigmas(5, sigma_min=9e9)):
        with pytest.raises(ValueError):
            call()
    x = torch.zeros(2, 3, 4, 4)
    with pytest.raises(ValueError, match="shape"):
        s.step_pred(torch.zeros(1, 3, 4, 4), 0.5, x)  # diffusers broadcasts this silently
    with pytest.raises(ValueError, match="shape"):
        s.step_correct(torch.zeros(2, 3, 4, 1), x)
    for t in (1.5, -0.1, torch.tensor(float("nan"))):  # diffusers: IndexError, or a silently wrapped index
        with pytest.raises(ValueError, match="range"):
            s.step_pred(x, t, x)
    s.set_timesteps(10)  # 10 timesteps but still 2000 discrete sigmas: diffusers would index the wrong levels
    with pytest.raises(ValueError, match="set_sigmas"):
        s.step_pred(x, s.timesteps[0], x)


def test_ve_add_noise_matches_diffusers():
    ours, theirs = both_ve({}, 10)
    x, z, k = torch.rand(3, 1, 4, 4), torch.randn(3, 1, 4, 4, generator=gen(1)), torch.tensor([0, 4, 9])
    assert_bitwise(ours.add_noise(x, z, k), theirs.add_noise(x, z, k))
    with pytest.raises(ValueError, match="level"):
        ours.add_noise(x, z, torch.tensor([10, 0, 0]))


# ------------------------------------------------------------------------------------------------ config I/O


@pytest.mark.parametrize(
    ("ours_cls", "theirs_cls", "config"),
    [
        (sd.ScoreSdeVeScheduler, TheirVe, {"snr": 0.2, "sigma_max": 50.0}),
        (sd.ScoreSdeVpScheduler, TheirVp, {"beta_max": 10.0}),
    ],
)
def test_config_round_trips_with_diffusers(tmp_path, ours_cls, theirs_cls, config):
    ours = ours_cls(**config)
    assert isinstance(ours, diffusers.SchedulerMixin) and isinstance(ours, diffusers.ConfigMixin)
    ours.save_config(tmp_path / "ours")
    theirs = theirs_cls.from_pretrained(tmp_path / "ours")
    shared = {k: v for k, v in theirs.config.items() if not k.startswith("_")}
    assert shared and all(ours.config[k] == v for k, v in shared.items())
    theirs_cls(**config).save_pretrained(tmp_path / "theirs")
    fields = set(json.loads((tmp_path / "theirs" / "scheduler_config.json").read_text()))
    assert fields - {"_diffusers_version"} <= set(json.loads((tmp_path / "ours" / "scheduler_config.json").read_text()))
    back = ours_cls.from_pretrained(tmp_path / "theirs")
    assert all(back.config[k] == ours.config[k] for k in ours.config if not k.startswith("_"))
    assert ours_cls.from_config(ours.config).config == ours.config


# ---------------------------------------------------------------------------------------------- VP scheduler


def vp_step(scheduler, score, x, t, seed=3):
    return scheduler.step_pred(score, x, t, generator=gen(seed))


def test_vp_epsilon_step_differs_from_diffusers_only_by_dt():
    steps, eps = 50, 1e-3
    ours, theirs = sd.ScoreSdeVpScheduler(), TheirVp()
    ours.set_timesteps(steps)
    theirs.set_timesteps(steps)
    x = torch.randn(4, 2, 3, 3, generator=gen(1), dtype=torch.float64)
    eps_hat = torch.randn(x.shape, generator=gen(2), dtype=torch.float64)
    ratio = ((1 - eps) / (steps - 1)) / (1 / steps)  # our |dt| over diffusers' 1/N
    for t in ours.timesteps[:-1:7]:
        t = t.double()
        (a, a_mean), (b, b_mean) = vp_step(ours, eps_hat, x, t), vp_step(theirs, eps_hat, x, t)
        # drift scales with dt, noise with sqrt(dt); float64, so only rounding differs (std via expm1 vs 1 - exp).
        torch.testing.assert_close(a_mean - x, (b_mean - x) * ratio, rtol=1e-9, atol=1e-12)
        torch.testing.assert_close(a - a_mean, (b - b_mean) * math.sqrt(ratio), rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("prediction_type", ["epsilon", "score"])
def test_vp_step_is_euler_maruyama_with_true_spacing(prediction_type):
    steps, eps, beta_min, beta_max = 20, 1e-3, 0.1, 20.0
    s = sd.ScoreSdeVpScheduler(prediction_type=prediction_type)
    s.set_timesteps(steps)
    x = torch.randn(3, 5, generator=gen(1), dtype=torch.float64)
    out = torch.randn(x.shape, generator=gen(2), dtype=torch.float64)
    z = torch.randn(x.shape, generator=gen(3), dtype=torch.float64)
    for i in (0, 7, steps - 1):
        t = 1 - i * (1 - eps) / (steps - 1)
        t_next = 1 - (i + 1) * (1 - eps) / (steps - 1) if i < steps - 1 else 0.0  # the last step lands on t = 0
        beta = beta_min + t * (beta_max - beta_min)
        std = math.sqrt(1 - math.exp(-0.5 * t**2 * (beta_max - beta_min) - t * beta_min))
        score = -out / std if prediction_type == "epsilon" else out
        dt = t_next - t
        mean = x + (-0.5 * beta * x - beta * score) * dt
        got, got_mean = vp_step(s, out, x, torch.tensor(t, dtype=torch.float64))
        torch.testing.assert_close(got_mean, mean, rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(got, mean + math.sqrt(beta * -dt) * z, rtol=1e-10, atol=1e-12)


def test_vp_exact_score_reaches_exact_marginals():
    """1000 steps with the exact Gaussian score: the state at t = eps has law p_eps, and at t = 0 law p_0.

    Tolerance max(4 SE, 0.5%): with n = 65 536 pooled iid coordinates the variance's SE is v sqrt(2/n) = 0.55%,
    the mean's is sqrt(v/n). Euler–Maruyama's O(dt) bias at dt = 1e-3 is ~0.3% in variance (below it).
    """
    sde, data, steps = VPSDE(0.1, 20.0), Gaussian(0.3, 0.5, event_shape=(16,)), 1000
    s = sd.ScoreSdeVpScheduler(prediction_type="score")
    s.set_timesteps(steps)
    score, g = data.score_fn(sde), gen(0)
    x = data.marginal(sde, 1.0).sample(4096, generator=g)  # start from the exact p_1
    for i, t in enumerate(s.timesteps):
        if i == steps - 1:
            assert_moments(x, data.marginal(sde, s.config.sampling_eps))
        x, x_mean = s.step_pred(score(x, t), x, t, generator=g)
    assert_moments(x, data)


def assert_moments(x: torch.Tensor, law: Gaussian) -> None:
    n, mean, var = x.numel(), law.mean.flatten()[0].item(), law.var.flatten()[0].item()
    assert abs(x.mean().item() - mean) <= 4 * math.sqrt(var / n)
    assert abs(x.var().item() / var - 1) <= max(4 * math.sqrt(2 / n), 5e-3)


def test_vp_errors():
    with pytest.raises(ValueError, match="prediction_type"):
        sd.ScoreSdeVpScheduler(prediction_type="v_prediction")
    with pytest.raises(ValueError, match="beta"):
        sd.ScoreSdeVpScheduler(beta_min=2.0, beta_max=1.0)
    s, x = sd.ScoreSdeVpScheduler(), torch.zeros(2, 3)
    with pytest.raises(ValueError, match="set_timesteps"):  # diffusers' message, kept
        s.step_pred(x, x, torch.tensor(0.5))
    with pytest.raises(ValueError):
        s.set_timesteps(0)
    s.set_timesteps(10)
    with pytest.raises(ValueError, match="shape"):
        s.step_pred(torch.zeros(2, 1), x, torch.tensor(0.5))
    with pytest.raises(ValueError, match="range"):
        s.step_pred(x, x, torch.tensor(1.5))


# ---------------------------------------------------------------------------------------------- VE pipeline


@pytest.fixture(scope="module")
def unet():
    torch.manual_seed(0)
    return diffusers.UNet2DModel(
        sample_size=8,
        in_channels=3,
        out_channels=3,
        block_out_channels=(8, 16),
        layers_per_block=1,
        down_block_types=("DownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "UpBlock2D"),
        norm_num_groups=8,
    ).eval()


def quiet(pipe):
    pipe.set_progress_bar_config(disable=True)
    return pipe


def run(pipe, **kwargs):
    return pipe(batch_size=2, num_inference_steps=3, generator=gen(0), **kwargs)


def test_pipeline_outputs_and_parity_with_diffusers(unet):
    ours = quiet(sd.ScoreSdeVePipeline(unet, sd.ScoreSdeVeScheduler()))
    assert isinstance(ours, diffusers.DiffusionPipeline)
    images = run(ours, output_type="np").images
    assert images.shape == (2, 8, 8, 3) and images.dtype == np.float32
    assert images.min() >= 0 and images.max() <= 1
    theirs = quiet(diffusers.ScoreSdeVePipeline(unet=unet, scheduler=diffusers.ScoreSdeVeScheduler()))
    np.testing.assert_array_equal(images, run(theirs, output_type="np").images)
    mixed = quiet(diffusers.ScoreSdeVePipeline(unet=unet, scheduler=sd.ScoreSdeVeScheduler()))  # ours inside theirs
    np.testing.assert_array_equal(images, run(mixed, output_type="np").images)
    pil = run(ours).images
    assert len(pil) == 2 and pil[0].size == (8, 8) and pil[0].mode == "RGB"
    np.testing.assert_array_equal(np.asarray(pil[0]), np.asarray(run(theirs).images[0]))
    (tup,) = run(ours, output_type="np", return_dict=False)
    np.testing.assert_array_equal(tup, images)
    pt, latent = run(ours, output_type="pt").images, run(ours, output_type="latent").images
    assert isinstance(pt, torch.Tensor) and pt.shape == (2, 3, 8, 8)  # diffusers' image processor: [B, C, H, W]
    np.testing.assert_array_equal(pt.permute(0, 2, 3, 1).cpu().numpy(), images)
    torch.testing.assert_close(latent.clamp(0, 1), pt, rtol=0, atol=0)  # the same sample, before the clamp


def test_to_images_maps_the_model_range_to_pixels():
    x = torch.tensor([-1.0, 0.0, 1.0, 3.0]).reshape(1, 1, 2, 2)
    np.testing.assert_array_equal(sd.to_images(x, output_type="np")[0, ..., 0], [[0.0, 0.5], [1.0, 1.0]])
    (img,) = sd.to_images(x)
    assert img.mode == "L" and np.asarray(img).tolist() == [[0, 128], [255, 255]]  # round(0.5 * 255) = 128
    assert sd.to_images(torch.zeros(2, 3, 4, 4), (0.0, 1.0))[1].mode == "RGB"
    with pytest.raises(ValueError, match="value_range"):
        sd.to_images(x, (1.0, 1.0))
    with pytest.raises(ValueError, match="C = 1 or 3"):
        sd.to_images(torch.zeros(1, 2, 4, 4))


def test_pipeline_save_load_round_trip(unet, tmp_path):
    pipe = quiet(sd.ScoreSdeVePipeline(unet, sd.ScoreSdeVeScheduler(snr=0.2)))
    pipe.save_pretrained(tmp_path)
    loaded = quiet(sd.ScoreSdeVePipeline.from_pretrained(tmp_path))
    assert type(loaded.scheduler) is sd.ScoreSdeVeScheduler and loaded.scheduler.config.snr == 0.2
    np.testing.assert_array_equal(run(pipe, output_type="np").images, run(loaded, output_type="np").images)


def exact_pipeline(mu: float, s: float, channels: int = 3, size: int = 8, **scheduler_kwargs):
    scheduler = sd.ScoreSdeVeScheduler(**scheduler_kwargs)
    sde = VESDE(scheduler.config.sigma_min, scheduler.config.sigma_max)
    model = sd.SigmaScoreModel.from_oracle(
        Gaussian(mu, s, event_shape=(channels, size, size)), sde, sample_size=size, in_channels=channels
    )
    return quiet(sd.ScoreSdeVePipeline(model, scheduler))


def pc_second_moments(mu, s, steps, snr=0.15, sigma_min=0.01, sigma_max=1348.0, eps=1e-5):
    """Exact mean and std of the pipeline's output on N(mu, s^2) data, by propagating moments (no sampling).

    Everything is linear in x - mu. Model at sigma_i has variance v = s^2 + sigma_i^2. Corrector: the batch-norm
    step is eps = 2 snr^2 v^2 / V (norms of z and of the score -(x - mu)/v, up to O(1/n)), so
    V <- (1 - eps/v)^2 V + 2 eps. Predictor: g^2 = sigma_k^2 - sigma_{k-1}^2, mean factor 1 - g^2/v,
    V <- (1 - g^2/v)^2 V + g^2. The output is the last predictor mean.
    """
    levels = [sigma_min * (sigma_max / sigma_min) ** (k / (steps - 1)) for k in range(steps)]
    var, m = sigma_max**2, 0.0  # prior N(0, sigma_max^2)
    for i in range(steps):
        v = s**2 + (sigma_min * (sigma_max / sigma_min) ** (1 - i * (1 - eps) / (steps - 1))) ** 2
        step = 2 * snr**2 * v**2 / var
        var, m = (1 - step / v) ** 2 * var + 2 * step, mu + (1 - step / v) * (m - mu)
        k = steps - 1 - i
        g2 = levels[k] ** 2 - (levels[k - 1] ** 2 if k > 0 else 0.0)
        var_mean, m = (1 - g2 / v) ** 2 * var, mu + (1 - g2 / v) * (m - mu)
        var = var_mean + g2
    return m, math.sqrt(var_mean)


def test_pipeline_exact_score_reaches_exact_moments():
    """500 PC steps on N(0.5, 0.1^2) images (well inside [0, 1], so the clamp does not bias).

    Reference: the exact moment recursion of the PC chain (above). Its std is +1.11% from the data law's
    denoised std s^2/sqrt(s^2 + sigma_min^2): the reverse-diffusion predictor's O(log(sigma_max/sigma_min)/N)
    bias (+1.22% alone; one Langevin step per level moves it by -0.1%), stated here as <= 1.5%.
    Tolerance 4 SE on n = 512*3*8*8 = 98 304 pooled coordinates: mean SE s/sqrt(n), std SE std/sqrt(2n) = 0.23%.
    """
    mu, s, steps = 0.5, 0.1, 500
    images = exact_pipeline(mu, s)(batch_size=512, num_inference_steps=steps, generator=gen(0), output_type="np").images
    n = images.size
    m_exact, std_exact = pc_second_moments(mu, s, steps)
    assert abs(std_exact / (s**2 / math.sqrt(s**2 + 0.01**2)) - 1) <= 0.015
    assert abs(images.mean() - m_exact) <= 4 * s / math.sqrt(n)
    assert abs(images.std() / std_exact - 1) <= 4 / math.sqrt(2 * n)


def test_pipeline_single_channel_and_errors(unet):
    pil = exact_pipeline(0.5, 0.1, channels=1)(batch_size=2, num_inference_steps=3, generator=gen(0)).images
    assert pil[0].mode == "L" and pil[0].size == (8, 8)
    pipe = exact_pipeline(0.5, 0.1)
    for kwargs in ({"output_type": "tensor"}, {"num_inference_steps": 0}, {"batch_size": 0}):
        with pytest.raises(ValueError):
            pipe(**kwargs)
    with pytest.raises(TypeError, match="sample_size"):
        sd.ScoreSdeVePipeline(lambda x, sigma: x, sd.ScoreSdeVeScheduler())(num_inference_steps=2)
    wrong = sd.SigmaScoreModel(lambda x, t: x[:, :1], VESDE(0.01, 1348.0), sample_size=8)
    with pytest.raises(ValueError, match="shape"):
        quiet(sd.ScoreSdeVePipeline(wrong, sd.ScoreSdeVeScheduler()))(num_inference_steps=2)


def test_pipeline_nonfinite_score_names_the_step():
    def score(x, t):  # NaN once the noise level falls below sigma ~ 1 (t < 0.55)
        return torch.where(t[:, None, None, None] < 0.55, torch.nan, -x)

    model = sd.SigmaScoreModel(score, VESDE(0.01, 1348.0), sample_size=4, in_channels=1)
    pipe = quiet(sd.ScoreSdeVePipeline(model, sd.ScoreSdeVeScheduler()))
    with pytest.raises(FloatingPointError, match=r"step 5 \(t=0.444"):
        pipe(num_inference_steps=10, output_type="np", generator=gen(0))


# ------------------------------------------------------------------------------- without diffusers, and docs

NO_DIFFUSERS = r"""
import importlib.abc, json, sys, tempfile

class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "diffusers" or name.startswith("diffusers."):
            raise ImportError(f"blocked {name}")

sys.meta_path.insert(0, Block())
import torch
torch.set_num_threads(1)
import sdesolve
assert "sdesolve.diffusers" not in sys.modules and "diffusers" not in sys.modules  # the core never imports it
from sdesolve import VESDE, Gaussian
from sdesolve import diffusers as sd
assert not sd.HAS_DIFFUSERS and "diffusers" not in sys.modules
s = sd.ScoreSdeVeScheduler(snr=0.2)
s.save_config(sys.argv[1])
assert sd.ScoreSdeVeScheduler.from_pretrained(sys.argv[1]).config == s.config
vp = sd.ScoreSdeVpScheduler.from_config({"beta_max": 10.0, "_class_name": "ScoreSdeVpScheduler"})
vp.set_timesteps(4)
x, x_mean = vp.step_pred(torch.zeros(2, 3), torch.ones(2, 3), vp.timesteps[0], generator=torch.manual_seed(0))
out = s.step_pred(torch.zeros(2, 3), 1.0, torch.ones(2, 3), generator=torch.manual_seed(0))
assert out.prev_sample_mean.equal(out[1]) and len(out.to_tuple()) == 2
model = sd.SigmaScoreModel.from_oracle(Gaussian(0.5, 0.1, event_shape=(3, 4, 4)), VESDE(0.01, 1348.0), sample_size=4)
pipe = sd.ScoreSdeVePipeline(model, sd.ScoreSdeVeScheduler())
pipe.set_progress_bar_config(disable=True)
images = pipe(batch_size=2, num_inference_steps=5, generator=torch.manual_seed(0), output_type="np").images
assert images.shape == (2, 4, 4, 3)
assert len(pipe(num_inference_steps=2).images) == 1
print("ok")
"""


def test_works_without_diffusers(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, "-c", NO_DIFFUSERS, str(tmp_path)], capture_output=True, text=True, env=env, cwd=ROOT
    )
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr[-2000:]
    # the folder written without diffusers loads in diffusers with the same fields
    assert TheirVe.from_pretrained(tmp_path).config.snr == 0.2


@pytest.mark.parametrize("shift", [1.0, 3.0])
def test_flow_match_euler_equals_our_euler_on_its_sigmas(shift):
    # FlowMatchEulerDiscreteScheduler's loop (shifted sigmas, final step to σ = 0) on a velocity model called with
    # timesteps 1000σ, against ode_sample(method="euler") on the same sigmas with score_from_velocity(time_scale=1000).
    # diffusers holds its sigmas and timesteps in float32 (one rounding each, 2^-24 relative); over 28 steps with
    # |v| ≲ 5 that is ≲ 28 · 5 · 2^-24 ≈ 1e-5 in the state: atol 2e-5.
    from sdesolve.adapters import score_from_velocity, velocity_from_score
    from sdesolve.sde import RectifiedFlowSDE

    flow = RectifiedFlowSDE()
    data = Gaussian(torch.tensor([0.3, -0.2], dtype=torch.float64), torch.tensor([0.5, 1.2], dtype=torch.float64))
    velocity = velocity_from_score(data.score_fn(flow), flow)

    def model(x, tau):
        return velocity(x, tau.double() / 1000)

    sch = diffusers.FlowMatchEulerDiscreteScheduler(shift=shift)
    sch.set_timesteps(28)
    noise = torch.randn(256, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    x = noise.clone()
    for t in sch.timesteps:
        x = sch.step(model(x, t.expand(len(x))), t, x).prev_sample
    ours = sd_ode_sample(flow, score_from_velocity(model, flow, time_scale=1000), x.shape, method="euler",
                         grid=sch.sigmas.double(), x_init=noise)  # fmt: skip
    assert float(sch.sigmas[-1]) == 0.0
    torch.testing.assert_close(ours, x, rtol=0, atol=2e-5)
