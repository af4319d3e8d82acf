"""Guided scores (`sdesolve.guidance`) against exact answers: scale-1 classifier guidance with the exact p_t(y | x)
is the exact conditional score and samples component y's law; CFG against the exact guided flow; the interval
returns the conditional score bitwise outside; the counts in ``info`` are the counted model calls; bad input."""

import math

import pytest
import torch

from sdesolve import (
    VESDE,
    VPSDE,
    Gaussian,
    GaussianMixture,
    GuidedGaussian,
    SubVPSDE,
    cfg_one_model,
    cfg_score,
    classifier_guidance,
    interval_grid,
    ode_sample,
    pc_sample,
    sde_adaptive_sample,
)
from sdesolve.verify import fit_order
from sdesolve.verify.guidance import (
    GUIDANCE_INTERVAL,
    claimed_order,
    guided_adaptive_errors,
    guided_flow_errors,
    study_methods,
)

SDES = [VESDE(0.01, 50.0), VPSDE(), SubVPSDE()]
IDS = ["ve", "vp", "subvp"]


def mixture(dtype=torch.float64) -> GaussianMixture:
    means = torch.tensor([[1.0, 0.5], [-1.0, 0.0], [0.0, -1.2]], dtype=dtype)
    return GaussianMixture(
        torch.tensor([0.5, 0.3, 0.2], dtype=dtype), means, torch.tensor([0.3, 0.4, 0.25], dtype=dtype)
    )


def points(sde, n=64, seed=0):
    """States and per-row times spread over [eps, T] (float64)."""
    g = torch.Generator().manual_seed(seed)
    t = 1e-3 + (sde.T - 1e-3) * torch.rand(n, generator=g, dtype=torch.float64)
    x = torch.randn(n, 2, generator=g, dtype=torch.float64) * (1 + sde.std(t)[:, None])
    return x, t


class Counted:
    """A score or labelled score, counting calls and rows (the library never sees the counts)."""

    def __init__(self, fn) -> None:
        self.fn, self.calls, self.rows = fn, 0, 0

    def __call__(self, x, t, *y):
        self.calls += 1
        self.rows += x.shape[0]
        return self.fn(x, t, *y)


def labelled(mix: GaussianMixture, sde, null: int):
    """``f(x, t, y)``: component y's exact score, the mixture's for the null label (a perfectly trained CFG model)."""
    comps = [mix.component(k).score_fn(sde) for k in range(mix.weights.shape[0])]
    uncond = mix.score_fn(sde)

    def f(x, t, y):
        out = uncond(x, t)
        for k, s in enumerate(comps):
            rows = y == k
            out[rows] = s(x[rows], t[rows])
        return out

    return f


# -- exactness ------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("sde", SDES, ids=IDS)
@pytest.mark.parametrize("label", [0, 2])
def test_scale_one_classifier_guidance_is_the_component_score(sde, label):
    """∇log p_t(x) + ∇log p_t(y|x) = ∇log p_t(x|y) (Bayes): to float64 round-off, autograd and analytic gradient."""
    mix = mixture()
    x, t = points(sde)
    want = mix.component(label).score_fn(sde)(x, t)
    by_autograd = classifier_guidance(mix.score_fn(sde), mix.class_log_prob_fn(sde, label))(x, t)
    by_grad = classifier_guidance(mix.score_fn(sde), None, grad_fn=mix.class_score_fn(sde, label))(x, t)
    scale = 1 + want.abs()
    torch.testing.assert_close(by_autograd / scale, want / scale, rtol=0, atol=1e-10)
    torch.testing.assert_close(by_grad / scale, want / scale, rtol=0, atol=1e-10)


@pytest.mark.parametrize("sde", SDES, ids=IDS)
def test_scale_one_classifier_guidance_samples_component_law(sde):
    """Probability flow from p_T(x | y) with the guided score, to eps: mean and covariance of component y's
    marginal within 4 standard errors. SE of a mean: sqrt(Σ_ii/n); of a covariance entry: sqrt((Σ_iiΣ_jj + Σ_ij²)/n).
    dopri5 at 1e-8 adds ~1e-8, far below the SE (~2e-3)."""
    mix, label, n = mixture(), 1, 20_000
    comp = mix.component(label)
    x_T = comp.marginal(sde, sde.T).sample(n, torch.Generator().manual_seed(3))
    score = classifier_guidance(mix.score_fn(sde), None, 1.0, grad_fn=mix.class_score_fn(sde, label))
    x = ode_sample(sde, score, x_T.shape, method="dopri5", rtol=1e-8, atol=1e-8, x_init=x_T)
    target = comp.marginal(sde, 1e-3)
    cov = torch.diag(target.var)
    se_mean = (target.var / n).sqrt()
    assert bool(((x.mean(0) - target.mean).abs() <= 4 * se_mean).all()), (x.mean(0), target.mean)
    se_cov = ((torch.outer(target.var, target.var) + cov**2) / n).sqrt()
    assert bool(((torch.cov(x.T) - cov).abs() <= 4 * se_cov).all()), (torch.cov(x.T), cov)


@pytest.mark.parametrize("scale", [0.0, 1.0, 3.0])
def test_classifier_guidance_scale_w_is_cfg_with_the_mixture(scale):
    """s + w∇log p(y|x) = (1 - w)s + w s_y: classifier guidance and CFG agree on a labelled mixture."""
    sde, mix = VPSDE(), mixture()
    x, t = points(sde, seed=1)
    cg = classifier_guidance(mix.score_fn(sde), mix.class_log_prob_fn(sde, 0), scale)(x, t)
    cfg = cfg_score(mix.component(0).score_fn(sde), mix.score_fn(sde), scale)(x, t)
    torch.testing.assert_close(cg / (1 + cfg.abs()), cfg / (1 + cfg.abs()), rtol=0, atol=1e-10)


def test_cfg_one_model_equals_two_calls():
    """The batched null-label form computes the same guided score as two separate calls (elementwise oracles)."""
    sde, mix = VPSDE(), mixture()
    x, t = points(sde, seed=2)
    y = torch.tensor([0, 1, 2, 0] * 16)
    one = cfg_one_model(labelled(mix, sde, 3), y, 3, 2.5)(x, t)
    cond = mix.class_score_fn(sde, y)(x, t) + mix.score_fn(sde)(x, t)
    two = cfg_score(lambda x_, t_: cond, mix.score_fn(sde), 2.5)(x, t)
    torch.testing.assert_close(one, two, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("sde", SDES, ids=IDS)
@pytest.mark.parametrize("method", ["dpm_solver_pp_2m", "heun"])
def test_cfg_flow_order_against_the_exact_guided_flow(sde, method):
    """CFG at w = 3 through ode_sample converges to GuidedGaussian.flow at the method's order (±0.1) on 64..512
    steps (8×): asymptotic there on every SDE (on 32..256, DPM-Solver++(2M) on VE fits 2.11; docs/guidance.md)."""
    cond, uncond = mixture().component(0), Gaussian(mixture().mean, mixture().std)
    score = cfg_score(cond.score_fn(sde), uncond.score_fn(sde), 3.0)
    x_T = sde.prior_sampling((16, 2), generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    exact = GuidedGaussian(cond, uncond, 3.0).flow(sde, x_T, sde.T, 1e-3)
    steps = (64, 128, 256, 512)
    errors = [
        float((ode_sample(sde, score, x_T.shape, method=method, steps=n, grid="logsnr", x_init=x_T) - exact).norm())
        for n in steps
    ]
    assert fit_order(steps, errors).slope == pytest.approx(2.0, abs=0.1)


@pytest.mark.slow
@pytest.mark.parametrize("method", study_methods())
def test_every_method_keeps_its_order_under_cfg(method):
    """Every fixed-step ODE method with CFG at w = 3 (VP, logSNR grid) against the exact guided flow: the fitted
    order over 8x in steps within ±0.1 of the claimed one. 64..512 steps; DPM-Solver++(3M) on 128..1024, where its
    third-order term has taken over (on 64..512 it still fits above 3.1; docs/guidance.md)."""
    steps = (128, 256, 512, 1024) if method == "dpm_solver_pp_3m" else (64, 128, 256, 512)
    nfe, errors = guided_flow_errors(VPSDE(), method, 3.0, steps, n_paths=16)
    assert fit_order(nfe, errors).slope == pytest.approx(claimed_order(method), abs=0.1)


@pytest.mark.parametrize("method", ["heun", "dpm_solver_pp_2m"])
def test_split_solve_restores_the_order_an_interval_breaks(method):
    """CFG at w = 3 on the interval (0.28, 5.42]: on the logSNR grid a step straddles each jump of the guided score, an
    O(h) error that depends on where the jump falls, so the fitted order is off the claim by more than 0.1 and the
    error is larger at every step count; `split_solve` on `interval_grid` (one solve per piece) gets the claimed order
    back within ±0.1. 64..512 steps (8x), against the exact guided flow."""
    steps, claim = (64, 128, 256, 512), claimed_order(method)
    broken = guided_flow_errors(VPSDE(), method, 3.0, steps, interval=GUIDANCE_INTERVAL, n_paths=16)
    split = guided_flow_errors(VPSDE(), method, 3.0, steps, interval=GUIDANCE_INTERVAL, grid="split", n_paths=16)
    assert abs(fit_order(*broken).slope - claim) > 0.1 and bool((broken[1] > split[1]).all()), (broken, split)
    assert fit_order(*split).slope == pytest.approx(claim, abs=0.1)


@pytest.mark.parametrize("scale", [3.0, 15.0])
def test_adaptive_methods_meet_their_tolerance_under_guidance(scale):
    """Without an interval dopri5 and DPM-Solver++'s adaptive solver end within 3x of rtol = atol = tol of the exact
    guided flow (relative to the data's scale ~1.2): local error control at tol, accumulated over the path, with a
    factor 3 for that accumulation."""
    for method in ("dopri5", "dpm_solver_pp_adaptive"):
        _, errors = guided_adaptive_errors(VPSDE(), method, scale, (1e-3, 1e-5), n_paths=16)
        assert errors[0] <= 3e-3 and errors[1] <= 3e-5, (method, errors)


# -- the interval ---------------------------------------------------------------------------------------------------
def _outside_inside(sde, bounds):
    x, t = points(sde, n=256, seed=4)
    level = sde.noise_level(t)
    inside = (level > bounds[0]) & (level <= bounds[1])
    assert 0 < int(inside.sum()) < len(t)  # the batch mixes both
    return x, t, inside


@pytest.mark.parametrize("sde", SDES, ids=IDS)
def test_interval_returns_the_conditional_score_bitwise_outside(sde):
    mix, bounds = mixture(), (0.3, 2.0)
    x, t, inside = _outside_inside(sde, bounds)
    cond, uncond = mix.component(0).score_fn(sde), mix.score_fn(sde)
    out = cfg_score(cond, uncond, 7.5, sde=sde, interval=bounds)(x, t)
    full = cfg_score(cond, uncond, 7.5)(x, t)
    assert torch.equal(out[~inside], cond(x, t)[~inside])
    assert torch.equal(out[inside], full[inside])
    # all rows outside: the conditional call itself, no unconditional call
    far = torch.full_like(t, 1e-3)
    counted = Counted(uncond)
    g = cfg_score(cond, counted, 7.5, sde=sde, interval=bounds)
    assert torch.equal(g(x, far), cond(x, far)) and counted.calls == 0
    # one model: outside rows are the conditional rows of the call, returned as they are
    f = labelled(mix, sde, 3)
    one = cfg_one_model(f, 0, 3, 7.5, sde=sde, interval=bounds)(x, t)
    assert torch.equal(one[~inside], f(x, t, torch.zeros(len(t), dtype=torch.int64))[~inside])
    # classifier guidance: scale 1 (the conditional score) outside
    cg = classifier_guidance(uncond, None, 7.5, grad_fn=mix.class_score_fn(sde, 0), sde=sde, interval=bounds)(x, t)
    one_scale = classifier_guidance(uncond, None, 1.0, grad_fn=mix.class_score_fn(sde, 0))(x, t)
    assert torch.equal(cg[~inside], one_scale[~inside])


def test_interval_grid_puts_nodes_on_the_ends():
    for sde in SDES:
        g = interval_grid(sde, 12, 1e-3, (0.28, 5.42))
        assert g.shape == (13,) and g.dtype == torch.float64 and bool((g[1:] < g[:-1]).all())
        assert float(g[0]) == sde.T and float(g[-1]) == 1e-3
        level = sde.noise_level(g)
        for end in (0.28, 5.42):  # a node on each end, on or just below it (float64 and float32)
            k = int((level - end).abs().argmin())
            assert level[k] <= end and float(level[k]) == pytest.approx(end, rel=1e-6)
            assert float(sde.noise_level(g.float()[k])) <= end


# -- counts ---------------------------------------------------------------------------------------------------------
def _runs():
    shape = (8, 2)
    common = dict(dtype=torch.float64, return_info=True)
    return {
        "pc": lambda s: pc_sample(VPSDE(), s, shape, steps=6, seeds=range(8), **common),
        "ode_fixed": lambda s: ode_sample(
            VPSDE(), s, shape, method="dpm_solver_pp_2m", steps=7, seeds=range(8), **common
        ),
        "ode_dopri5": lambda s: ode_sample(VPSDE(), s, shape, rtol=1e-3, atol=1e-3, seeds=range(8), **common),
        "sde_adaptive": lambda s: sde_adaptive_sample(VPSDE(), s, shape, seeds=range(8), **common),
    }


@pytest.mark.parametrize("interval", [None, (0.3, 2.0)])
@pytest.mark.parametrize("entry", ["pc", "ode_fixed", "ode_dopri5", "sde_adaptive"])
def test_reported_model_calls_are_the_counted_ones(entry, interval):
    sde, mix = VPSDE(), mixture()
    cond, uncond = Counted(mix.component(0).score_fn(sde)), Counted(mix.score_fn(sde))
    guided = cfg_score(cond, uncond, 3.0, sde=sde, interval=interval)
    guided(*points(sde, n=3))  # an earlier call: info counts the run's own
    cond.calls = uncond.calls = cond.rows = uncond.rows = 0
    _, info = _runs()[entry](guided)
    assert info["model_calls"] == cond.calls + uncond.calls and info["model_rows"] == cond.rows + uncond.rows
    assert info["nfe"] == cond.calls  # one conditional call per score evaluation
    model = Counted(labelled(mix, sde, 3))
    _, info = _runs()[entry](cfg_one_model(model, 0, 3, 3.0, sde=sde, interval=interval))
    assert info["model_calls"] == model.calls == info["nfe"] and info["model_rows"] == model.rows
    if interval is None:
        assert model.rows == 2 * 8 * model.calls  # both halves in one call


def test_classifier_guidance_counts_score_and_classifier():
    sde, mix = VPSDE(), mixture()
    score, clf = Counted(mix.score_fn(sde)), Counted(mix.class_log_prob_fn(sde, 1))
    _, info = pc_sample(sde, classifier_guidance(score, clf, 2.0), (5, 2), steps=4, corrector=None,
                        dtype=torch.float64, return_info=True)  # fmt: skip
    assert info["model_calls"] == score.calls + clf.calls == 2 * info["nfe"]
    assert info["model_rows"] == score.rows + clf.rows == 10 * info["nfe"]


def test_plain_scores_report_no_model_counts():
    _, info = ode_sample(VPSDE(), mixture().score_fn(VPSDE()), (2, 2), method="ddim", steps=3, dtype=torch.float64,
                         return_info=True)  # fmt: skip
    assert "model_calls" not in info


# -- bad input ------------------------------------------------------------------------------------------------------
def test_bad_scales_intervals_and_labels_are_clear_errors():
    sde, mix = VPSDE(), mixture()
    s, c = mix.score_fn(sde), mix.component(0).score_fn(sde)
    f = labelled(mix, sde, 3)
    for bad in (-1.0, math.nan, math.inf, "2", True):
        with pytest.raises(ValueError, match="scale"):
            cfg_score(c, s, bad)
    for bad in ((2.0, 1.0), (-0.1, 1.0), (0.1,), "ab", (math.nan, 1.0), (0.1, math.nan)):
        with pytest.raises(ValueError, match="interval"):
            cfg_score(c, s, 2.0, sde=sde, interval=bad)
    with pytest.raises(ValueError, match="sde="):
        cfg_score(c, s, 2.0, interval=(0.1, 1.0))
    with pytest.raises(ValueError, match="null label"):
        cfg_one_model(f, [0, 3], 3, 2.0)
    with pytest.raises(ValueError, match="labels must be >= 0 and < 3"):
        cfg_one_model(f, 5, 3, 2.0, num_classes=3)
    with pytest.raises(ValueError, match="labels must be >= 0"):
        cfg_one_model(f, -1, 3, 2.0)
    with pytest.raises(TypeError, match="integer class labels"):
        cfg_one_model(f, 1.5, 3, 2.0)
    with pytest.raises(TypeError, match="integer class labels"):
        mix.class_log_prob_fn(sde, True)
    with pytest.raises(ValueError, match="labels has 2 entries, the batch has 4"):
        cfg_one_model(f, [0, 1], 3, 2.0)(torch.zeros(4, 2, dtype=torch.float64), torch.full((4,), 0.5))
    with pytest.raises(ValueError, match="label must be >= 0 and < 3"):
        mix.component(3)
    with pytest.raises(ValueError, match="exactly one of log_prob_y_fn"):
        classifier_guidance(s, None, 1.0)
    with pytest.raises(ValueError, match=r"log_prob_y_fn must return \[B\]"):
        classifier_guidance(s, lambda x, t: x.sum(1, keepdim=True))(*points(sde, n=3))
    with pytest.raises(TypeError, match="cond_score_fn must be callable"):
        cfg_score(None, s, 1.0)
    with pytest.raises(ValueError, match="steps must be >= 3"):
        interval_grid(sde, 2, 1e-3, (0.28, 5.42))
