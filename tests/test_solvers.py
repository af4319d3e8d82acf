"""The solver engine (`sdesolve.solvers`): fused kernels equal the public step formulas, grids keep their precision,
the loop never syncs with the host, and each affine step does a fixed, counted amount of work.

The public `Predictor.step` / `Corrector.step` are checked against score_sde's formulas in test_predictors.py and
test_correctors.py; here the fused loop is checked against those steps, run one by one with the same noise, to
1e-12 in float64 (the two differ only in the order of float64 operations: ~1e-16 per step, 1e-12 leaves a
factor 100 over 100 steps of amplification by |a| <= 1.1).
"""

import contextlib
import gc
import math

import numpy as np
import pytest
import torch
from host_sync import spy_host_syncs
from torch.utils._python_dispatch import TorchDispatchMode

from sdesolve import VESDE, VPSDE, Gaussian, LangevinCorrector, SubVPSDE, get_predictor, ode_sample, pc_sample
from sdesolve.grids import uniform_grid
from sdesolve.likelihood import log_likelihood
from sdesolve.solvers import TimeTable
from sdesolve.solvers.fused import coefficient_table
from sdesolve.solvers.loop import CHECK_EVERY

SDES = {"vp": VPSDE, "subvp": SubVPSDE, "ve": VESDE}
DATA = Gaussian(0.3, 0.5, event_shape=(3,)).to(dtype=torch.float64)
STOCHASTIC = ["euler_maruyama", "reverse_diffusion", "ancestral"]
DETERMINISTIC = ["pf_euler", "pf_heun", "pf_rk4", "none"]


def _reference(sde, pred, corr, x, grid, score, gen, denoise=True):
    """The loop written with the public steps: corrector at t_i, then predictor to t_{i+1}; same draws, same order."""
    x_mean = x
    for i in range(grid.shape[0] - 1):
        t, t_next = grid[i], grid[i + 1]
        if corr is not None:
            x, x_mean = corr.step(x, t, t_next, score, noise=gen)
        x, x_mean = pred.step(x, t, t_next, score, noise=gen)
    return x_mean if denoise else x


# The identity predictor without a corrector returns the prior: not a sampler, left out.
PAIRS = [
    (p, n) for p in STOCHASTIC + DETERMINISTIC for n in (None, "sigma", "batch", "sample") if (p, n) != ("none", None)
]


@pytest.mark.parametrize("kind", sorted(SDES))
@pytest.mark.parametrize("predictor,norm", PAIRS)
def test_fused_loop_equals_the_public_steps(kind, predictor, norm):
    sde = SDES[kind]()
    score = DATA.score_fn(sde)
    x_T = DATA.marginal(sde, sde.T).sample(8, torch.Generator().manual_seed(1))
    corr = None if norm is None else LangevinCorrector(sde, snr=0.16, n_steps=2, norm=norm)
    pred = get_predictor(predictor, sde)
    steps = 100
    with pytest.warns(UserWarning, match="norm='sample'") if norm == "sample" else contextlib.nullcontext():
        fused = pc_sample(
            sde,
            score,
            x_T.shape,
            predictor=pred,
            corrector=corr,
            steps=steps,
            x_init=x_T,
            generator=torch.Generator().manual_seed(2),
            denoise=predictor != "ancestral",
        )
        grid = uniform_grid(sde, steps, 1e-3, dtype=torch.float64)
        ref = _reference(
            sde, pred, corr, x_T, grid, score, torch.Generator().manual_seed(2), denoise=predictor != "ancestral"
        )
    torch.testing.assert_close(fused, ref, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("method", ["euler", "heun", "rk4"])
def test_fixed_step_ode_equals_the_public_flow_steps(method):
    sde = VPSDE()
    score = DATA.score_fn(sde)
    x_T = DATA.marginal(sde, sde.T).sample(8, torch.Generator().manual_seed(3))
    ours = ode_sample(sde, score, x_T.shape, method=method, steps=40, x_init=x_T)
    pred = get_predictor({"euler": "pf_euler", "heun": "pf_heun", "rk4": "pf_rk4"}[method], sde)
    ref = _reference(sde, pred, None, x_T, uniform_grid(sde, 40, 1e-3, dtype=torch.float64), score, None)
    torch.testing.assert_close(ours, ref, rtol=1e-12, atol=1e-12)


def test_x_init_is_not_modified():
    sde = VPSDE()
    x_T = DATA.marginal(sde, sde.T).sample(8, torch.Generator().manual_seed(4))
    before = x_T.clone()
    pc_sample(sde, DATA.score_fn(sde), x_T.shape, steps=5, x_init=x_T)
    ode_sample(sde, DATA.score_fn(sde), x_T.shape, method="heun", steps=5, x_init=x_T)
    assert torch.equal(x_T, before)


def test_a_score_that_returns_its_input_is_not_updated_under_the_loop():
    # s(x) = x aliases the state; the in-place update must see the score of the state before the step.
    sde = VPSDE()
    x_T = torch.full((4, 2), 0.5, dtype=torch.float64)
    ours = pc_sample(sde, lambda x, t: x, x_T.shape, predictor="pf_euler", corrector=None, steps=3, x_init=x_T)
    ref = _reference(
        sde,
        get_predictor("pf_euler", sde),
        None,
        x_T,
        uniform_grid(sde, 3, 1e-3, dtype=torch.float64),
        lambda x, t: x.clone(),
        None,
    )
    torch.testing.assert_close(ours, ref, rtol=1e-14, atol=0)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("predictor", ["euler_maruyama", "pf_heun"])
def test_half_precision_runs_take_every_grid_time_and_keep_the_law(dtype, predictor):
    # A grid held in bfloat16 (8 significand bits) has ~500 distinct values in [0, 1] (the issue: 503 of 1001),
    # and a bfloat16 state rounds away increments below 2^-9 of itself (measured before the float32 master state:
    # variance -15% for EM, +300% for Heun at 1000 steps). Times and the state stay in float32; only the score's
    # input is rounded to `dtype` (2^-9 relative for bfloat16, random in sign), so the variance agrees with the
    # float32 run from the same start and noise within 1% (twice the 0.4% a 2^-9 error per coordinate could give).
    sde, data = VPSDE(), Gaussian(0.3, 0.5, event_shape=(2,))
    seen = set()

    def score(x, t):
        assert x.dtype == dtype
        seen.add(float(t[0]))  # host copy in the test's score only
        return data.score_fn(sde)(x.float(), t).to(dtype)

    x_T = data.marginal(sde, sde.T).sample(4096, torch.Generator().manual_seed(0))

    def sample(dt, fn):
        return pc_sample(
            sde,
            fn,
            x_T.shape,
            predictor=predictor,
            corrector=None,
            steps=1000,
            x_init=x_T.to(dt),
            generator=torch.Generator().manual_seed(1),
            return_info=True,
        )

    x, info = sample(dtype, score)
    ref, _ = sample(torch.float32, data.score_fn(sde))
    assert x.dtype == dtype
    assert info["grid"].dtype == torch.float32 and info["grid"].unique().numel() == 1001
    assert len(seen) == (1001 if predictor == "pf_heun" else 1000)  # Heun also evaluates at t_{i+1}
    assert abs(x.float().var().item() / ref.var().item() - 1) < 0.01


SYNC_METHODS = ("item", "__float__", "__int__", "__index__", "__bool__", "tolist", "cpu", "numpy", "__array__")


def _count_host_calls(monkeypatch, fn) -> list[str]:
    calls = spy_host_syncs(monkeypatch, SYNC_METHODS)
    fn()
    monkeypatch.undo()
    return calls


@pytest.mark.parametrize(
    "call",
    [
        lambda sde, score, n: pc_sample(sde, score, (2, 3), steps=n, predictor="ancestral"),
        lambda sde, score, n: pc_sample(sde, score, (2, 3), steps=n, predictor="pf_rk4", corrector=None),
        lambda sde, score, n: pc_sample(
            sde, score, (2, 3), steps=n, predictor="euler_maruyama", corrector=LangevinCorrector(sde, norm="batch")
        ),
        lambda sde, score, n: ode_sample(sde, score, (2, 3), method="heun", steps=n),
        lambda sde, score, n: log_likelihood(sde, score, torch.zeros(2, 3), method="rk4", steps=n),
    ],
    ids=["pc_ancestral_langevin", "pc_rk4", "pc_em_batch_langevin", "ode_heun", "likelihood_rk4"],
)
def test_host_conversions_do_not_grow_with_the_step_count(monkeypatch, call):
    # Every host conversion a tensor offers (item, float, int, index, bool, tolist, cpu, numpy): the count must
    # not depend on the number of steps (the loop makes none; validation and the final check a fixed few).
    sde = VPSDE()
    score = Gaussian(0.3, 0.5, event_shape=(3,)).score_fn(sde)
    few = _count_host_calls(monkeypatch, lambda: call(sde, score, 3 * CHECK_EVERY))
    many = _count_host_calls(monkeypatch, lambda: call(sde, score, 9 * CHECK_EVERY))
    assert few == many, (few, many)


METADATA_OPS = {"aten.expand", "aten.resize_", "aten.view", "aten.slice", "aten.select", "aten.unsqueeze", "aten.alias"}


class _OpCounter(TorchDispatchMode):
    """Counts the aten ops that touch data (views and randn's resize of its ``out=`` are metadata only)."""

    def __init__(self):
        super().__init__()
        self.ops: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if str(func.overloadpacket) not in METADATA_OPS:
            self.ops.append(str(func.overloadpacket))
        return func(*args, **(kwargs or {}))


def _check_ops() -> int:
    """Ops of the loop's finiteness check (isfinite decomposes into several)."""
    x = torch.zeros(4, 3)
    with _OpCounter() as mode:
        torch.isfinite(x).all()
    return len(mode.ops)


def _ops_per_step(sde, predictor, corrector, slope: float = 0.0) -> float:
    def score(x, t):  # one op per evaluation; slope 0 keeps the state finite on every SDE
        return torch.mul(x, slope)

    counts = []
    for n in (2 * CHECK_EVERY, 6 * CHECK_EVERY):
        with _OpCounter() as mode:
            pc_sample(
                sde,
                score,
                (4, 3),
                predictor=predictor,
                corrector=corrector,
                steps=n,
                generator=torch.Generator().manual_seed(0),
            )
        counts.append(len(mode.ops))
    return (counts[1] - counts[0]) / (4 * CHECK_EVERY)


# Work per interval, from the update x' = a x + b s + c z: mul_ (skipped where a = 1), add_ of the score, randn
# into the buffer and add_ of the noise; the σ-rule Langevin step adds randn + two add_ per corrector step. Each
# score evaluation counts 1 (mul); the finiteness check (`_check_ops`) runs every CHECK_EVERY steps.
BUDGET = [
    ("ve", "reverse_diffusion", None, 3 + 1),  # a = 1 exactly for VE: no mul_
    ("vp", "reverse_diffusion", None, 4 + 1),
    ("vp", "euler_maruyama", None, 4 + 1),
    ("vp", "ancestral", None, 4 + 1),
    ("vp", "pf_euler", None, 2 + 1),  # no noise
    ("ve", "pf_euler", None, 1 + 1),
    ("vp", "reverse_diffusion", "sigma", 4 + 1 + 3 + 1),
    # norm rules (a nonzero score, s = -x): randn, two norms, the ratio (batch: two sums and a div; sample: a
    # div), its square and two addcmul_ with c = 2α snr² and √(2c) as scalars (ε = cρ², never formed)
    ("vp", "reverse_diffusion", "batch", 4 + 1 + 9 + 1),
    ("vp", "reverse_diffusion", "sample", 4 + 1 + 7 + 1),
]


@pytest.mark.filterwarnings("ignore:norm='sample'")
@pytest.mark.parametrize("kind,predictor,norm,ops", BUDGET)
def test_affine_steps_do_the_counted_work(kind, predictor, norm, ops):
    sde = SDES[kind]()
    corr = None if norm is None else LangevinCorrector(sde, norm=norm)
    measured = _ops_per_step(sde, predictor, corr, slope=-1.0 if norm in ("batch", "sample") else 0.0)
    assert measured == pytest.approx(ops + _check_ops() / CHECK_EVERY, abs=1e-9), measured


def test_coefficient_table_flags_skippable_passes():
    cols = [torch.tensor([1.0, 1.0]), torch.tensor([0.0, 0.5]), torch.tensor([0.0, 0.0])]
    table = coefficient_table(cols, torch.zeros(2, 1), compiled=False)
    assert table.rows == [(1.0, 0.0, 0.0), (1.0, 0.5, 0.0)]
    assert table.not_one == (False, True, True) and table.nonzero == (True, True, False)
    compiled = coefficient_table(cols, torch.zeros(2, 1, dtype=torch.bfloat16), compiled=True)
    assert compiled.rows[1][1].dtype == torch.float32 and float(compiled.rows[1][1]) == 0.5


def test_time_table_keeps_float64_on_the_host_and_float32_for_half_states():
    grid = torch.linspace(1.0, 1e-3, 1001, dtype=torch.float64)
    tt = TimeTable(grid, torch.zeros(5, 2, dtype=torch.bfloat16))
    assert tt.host.dtype == torch.float64 and tt.values[3] == grid[3].item()
    assert tt.device.dtype == torch.float32 and tt.batch[7].shape == (5,)


def test_first_non_finite_step_is_named_exactly_past_the_first_check():
    # NaN from t < 0.3 on a 40-step grid t_i = 1 - 0.024975 i: first at i = 29 (t = 0.275725); the on-device
    # check runs every 16 steps and sees it at step 31, the failure-path rerun names step 29.
    sde = VPSDE()
    score = DATA.score_fn(sde)

    def bad(x, t):
        s = score(x, t)
        return torch.where(t[:, None] < 0.3, torch.full_like(s, math.nan), s)

    grid = uniform_grid(sde, 40, 1e-3, dtype=torch.float64)
    first = int(np.argmax(grid.numpy() < 0.3))
    with pytest.raises(FloatingPointError, match=rf"step {first} \(t={grid[first].item():.6g} -> "):
        pc_sample(sde, bad, (4, 3), steps=40, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    # Heun's second stage evaluates at t_{i+1}: its first NaN is in step first - 1.
    with pytest.raises(FloatingPointError, match=rf"step {first - 1} \("):
        ode_sample(sde, bad, (4, 3), method="heun", steps=40, dtype=torch.float64)


def test_compiled_step_equals_eager():
    # torch.compile (inductor on CPU) may reorder float32 operations: equal to eager within a few ulps per step.
    sde = VPSDE()
    data = Gaussian(0.3, 0.5, event_shape=(2,))

    def sample(**kw):
        return pc_sample(
            sde,
            data.score_fn(sde),
            (16, 2),
            steps=8,
            corrector=LangevinCorrector(sde),
            generator=torch.Generator().manual_seed(0),
            **kw,
        )

    eager, compiled = sample(), sample(execution="compile")
    torch.testing.assert_close(compiled, eager, rtol=1e-5, atol=1e-5)


def _cyclic_garbage(fn) -> int:
    """Objects only Python's cyclic collector would free after a second call of ``fn`` (the first warms caches).

    With automatic collection off, everything ``fn`` allocates stays in generation 0, so a young-generation
    collection finds every cycle made by the call (older objects count as outside references) without the
    full collection's cost (0.2 s each with torch imported, twice for each of the ~60 runs below)."""
    gc.disable()
    try:
        fn()
        gc.collect(0)
        fn()
        return gc.collect(0)
    finally:
        gc.enable()


def test_a_run_leaves_no_reference_cycles():
    """A kernel that stored its own bound method kept its buffers (several copies of the state) alive after the run
    until the cyclic collector ran: ~8 MB per 1024×256 chunk, piling up over a long sharded run (issue 25)."""
    from sdesolve import CORRECTORS, ODE_METHODS, PREDICTORS
    from sdesolve.solvers.ode import FIXED_STEP

    sde = VPSDE()
    score = Gaussian(0.3, 0.5, event_shape=(2,)).score_fn(sde)

    def pc(p, c):
        return lambda: pc_sample(sde, score, (8, 2), predictor=p, corrector=c, steps=4, seeds=range(8))

    def ode(m):
        return lambda: ode_sample(sde, score, (8, 2), method=m, steps=4 if m in FIXED_STEP else None)

    runs = {f"{p}+{c}": pc(p, c) for p in PREDICTORS for c in CORRECTORS}
    # scipy's OdeSolver closes over itself: its own cycle, not ours
    runs |= {m: ode(m) for m in ODE_METHODS if m != "scipy_rk45"}
    gc.collect()
    leaks = {name: n for name, fn in runs.items() if (n := _cyclic_garbage(fn))}
    assert leaks == {}
