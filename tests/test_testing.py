"""sdesolve.testing: the helpers pass correct samplers and catch deliberately broken ones."""

import json

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

import sdesolve.cli.verify as cmd
from sdesolve import VESDE, VPSDE, EulerMaruyama, Gaussian, LangevinCorrector, ProbabilityFlowHeun
from sdesolve._utils import append_dims, batch_time
from sdesolve.cli import app
from sdesolve.testing import (
    ORDER_KINDS,
    assert_moments_close,
    assert_order,
    check_sampler,
    gaussian_data,
    sdes,
    time_grids,
)
from sdesolve.verify import run_suite

DATA = Gaussian(torch.tensor([0.3], dtype=torch.float64), torch.tensor([0.5], dtype=torch.float64))


class BrokenDtHeun(ProbabilityFlowHeun):
    """Heun with dt off by a relative O(h) factor (like dt = -1/N on N-1 intervals): order drops to 1."""

    def step(self, x, t, t_next, score_fn, *, noise):
        t, t_next = batch_time(t, x), batch_time(t_next, x)
        return super().step(x, t, t + (t_next - t) * (1 + (t_next - t).abs()), score_fn, noise=noise)


class BrokenLangevin(LangevinCorrector):
    """Langevin missing the factor 2 in the noise: sqrt(ε) z instead of sqrt(2ε) z."""

    def step(self, x, t, t_next, score_fn, *, noise):
        t = batch_time(t, x)
        for j in range(self.n_steps):
            grad, z = score_fn(x, t), noise.normal(x, j)
            eps = append_dims(self.step_size(grad, z, t, torch.ones_like(t)), x.ndim)
            x = x + eps * grad + eps.sqrt() * z
        return x, x


def test_check_sampler_passes_heun_and_catches_broken_dt():
    sde = VPSDE()
    check_sampler(ProbabilityFlowHeun(sde), sde, DATA)
    with pytest.raises(AssertionError, match="fitted order"):
        check_sampler(BrokenDtHeun(sde), sde, DATA)


@pytest.mark.parametrize("broken", [False, True])
def test_assert_moments_close_catches_missing_factor_two(broken):
    # 300 σ-rule Langevin steps at t = 0.3 from the exact p_t (relaxation ~1/(2 snr²) = 50 steps); the correct
    # corrector's variance bias ≈ snr²σ²/v ≈ 0.6% is below 4 se ≈ 4·√2/64 ≈ 9%; the broken one halves it.
    sde, t, n = VPSDE(), 0.3, 4096
    cls = BrokenLangevin if broken else LangevinCorrector
    corr = cls(sde, snr=0.1, n_steps=300)
    p_t = DATA.marginal(sde, t)
    x0 = p_t.sample(n, torch.Generator().manual_seed(0))
    x, _ = corr.step(x0, t, None, DATA.score_fn(sde), noise=torch.Generator().manual_seed(1))
    if broken:
        with pytest.raises(AssertionError, match="standard errors"):
            assert_moments_close(x, p_t)
    else:
        assert_moments_close(x, p_t)


def test_assert_order():
    steps = [16, 32, 64, 128]
    assert_order([n**-2.0 for n in steps], steps, 2.0, tol=0.1)
    with pytest.raises(AssertionError, match="not within"):
        assert_order([n**-1.0 for n in steps], steps, 2.0, tol=0.15)
    with pytest.raises(AssertionError, match="not within"):  # sharp: above the claim fails too
        assert_order([n**-2.0 for n in steps], steps, 1.0, tol=0.15)
    assert_order([n**-2.0 for n in steps], steps, 1.0, tol=0.15, sharp=False)  # the declared order is a bound
    with pytest.raises(AssertionError, match="at least 2.0"):
        assert_order([n**-1.0 for n in steps], steps, 2.0, tol=0.15, sharp=False)


def test_check_sampler_passes_euler_maruyama_above_its_declared_order():
    # VE with Gaussian data: Euler-Maruyama's leading weak-error term vanishes and it converges at order ~2 over
    # 64-1024 steps; a correct sampler must pass the default check (at least the declared order 1).
    sde = VESDE(sigma_min=0.005, sigma_max=5.0)
    data = Gaussian(torch.tensor([0.2], dtype=torch.float64), torch.tensor([0.2], dtype=torch.float64))
    study = check_sampler(EulerMaruyama(sde), sde, data)
    assert study.fit.slope > 1.5  # the case the ±0.15 check used to fail
    with pytest.raises(AssertionError, match="not within"):
        check_sampler(EulerMaruyama(sde), sde, data, sharp=True)


@settings(max_examples=8, deadline=None, derandomize=True)
@given(sde=sdes(ORDER_KINDS), data=gaussian_data())
def test_the_documented_recipe_passes_the_library_euler_maruyama(sde, data):
    check_sampler(EulerMaruyama(sde), sde, data)


def test_cli_verify_json_plot_and_exit_code(tmp_path, monkeypatch):
    small = lambda quick, progress=None: run_suite(quick, sdes=("vp",), predictors=("pf_heun",), progress=progress)  # noqa: E731
    monkeypatch.setattr(cmd, "run_suite", small)
    out, png = tmp_path / "v.json", tmp_path / "v.png"
    res = CliRunner().invoke(app, ["verify", "--quick", "--json", str(out), "--plot", str(png)])
    assert res.exit_code == 0, res.output
    assert "PASS" in res.output and png.stat().st_size > 0
    rows = json.loads(out.read_text())["rows"]
    assert rows and all(r["passed"] for r in rows)

    def failing(quick, progress=None):
        rows = small(quick, progress=None)
        for r in rows:
            r.study.expected = 3.0  # a wrong claim must FAIL and exit non-zero
        return rows

    monkeypatch.setattr(cmd, "run_suite", failing)
    res = CliRunner().invoke(app, ["verify", "--quick"])
    assert res.exit_code == 1 and "0/1 passed" in res.output


@settings(max_examples=25, deadline=None)
@given(data=st.data(), T=st.sampled_from([1.0, 0.5]), eps=st.sampled_from([1e-3, 1e-5]), lo=st.integers(2, 16))
def test_time_grids_are_strictly_decreasing_from_T_to_eps(data, T, eps, lo):
    hi = lo + data.draw(st.integers(0, 32))
    grid = data.draw(time_grids(T=T, eps=eps, min_steps=lo, max_steps=hi))
    assert grid.dtype == torch.float64 and grid.ndim == 1
    assert grid[0].item() == T and grid[-1].item() == eps
    assert lo + 1 <= grid.numel() <= hi + 1
    assert bool((grid[1:] < grid[:-1]).all())
