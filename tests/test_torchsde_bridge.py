"""to_torchsde: our Euler–Maruyama equals torchsde's on the same BrownianInterval; srk's forward law is exact."""

import pytest
import torch
import torchsde

from sdesolve import VESDE, VPSDE, Gaussian, SubVPSDE, pc_sample
from sdesolve.testing import assert_moments_close
from sdesolve.torchsde import to_torchsde

SDES = [VESDE(), VPSDE(), SubVPSDE()]
# Dyadic grid (h = 1/64 from T = 1 to eps = 1/32): torchsde's accumulated times s_k = k·h and our T - t_k are
# the same floats, so both libraries query the BrownianInterval at identical times.
N, EPS, B = 62, 1 / 32, 32
TOL = {torch.float32: 1e-5, torch.float64: 1e-10}  # relative to max |x| (VE states reach σ_max)


def _data(dtype):
    return Gaussian(torch.tensor([0.3, -0.2], dtype=dtype), torch.tensor([0.5, 0.8], dtype=dtype))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("sde", SDES, ids=repr)
def test_reverse_em_matches_torchsde_euler(sde, dtype):
    data = _data(dtype)
    score = data.score_fn(sde)
    x_T = data.marginal(sde, 1.0).sample(B, torch.Generator().manual_seed(0))
    bm = torchsde.BrownianInterval(0.0, 1 - EPS, size=(B, 2), dtype=dtype, entropy=1)
    ts = torch.tensor([0.0, 1 - EPS], dtype=dtype)
    ref = torchsde.sdeint(to_torchsde(sde, score), x_T, ts, bm=bm, method="euler", dt=(1 - EPS) / N)[-1]
    ours = pc_sample(
        sde,
        score,
        (B, 2),
        predictor="euler_maruyama",
        corrector=None,
        steps=N,
        eps=EPS,
        x_init=x_T,
        denoise=False,
        brownian=bm,
    )
    assert (ours - ref).abs().max() <= TOL[dtype] * ref.abs().max()
    assert (ours - x_T).abs().max() > 0.1  # the path moved: not a vacuous comparison


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("sde", SDES, ids=repr)
def test_forward_em_matches_torchsde_euler(sde, dtype):
    # Forward EM from our SDE's own drift and diffusion (`SDE.sde`), x' = x + f dt + g ΔW, on torchsde's Brownian
    # increments (predictors step backward in time only: a forward .step is refused)
    data = _data(dtype)
    x0 = data.sample(B, torch.Generator().manual_seed(1))
    bm = torchsde.BrownianInterval(0.0, 1 - EPS, size=(B, 2), dtype=dtype, entropy=2)
    ts = torch.tensor([0.0, 1 - EPS], dtype=dtype)
    ref = torchsde.sdeint(to_torchsde(sde), x0, ts, bm=bm, method="euler", dt=(1 - EPS) / N)[-1]
    grid = torch.linspace(0.0, 1 - EPS, N + 1, dtype=dtype).tolist()
    x = x0
    for a, b in zip(grid[:-1], grid[1:], strict=True):
        drift, diffusion = sde.sde(x, torch.full((B,), a, dtype=dtype))
        x = x + drift * (b - a) + diffusion[:, None] * bm(a, b)
    assert (x - ref).abs().max() <= TOL[dtype] * ref.abs().max()


@pytest.mark.parametrize("sde", SDES, ids=repr)
def test_forward_srk_reference_has_exact_marginals(sde):
    # Sanity of the strong reference: torchsde srk from p_0 = data.marginal(sde, 0) (VE: data smoothed by σ_min)
    # lands on the exact p_t; moments within 4 standard errors (4096 paths × 2 coordinates).
    data = Gaussian(torch.tensor([0.3, -0.5], dtype=torch.float64), torch.tensor([0.5, 0.2], dtype=torch.float64))
    t1, n = 0.5, 4096
    x0 = data.marginal(sde, 0.0).sample(n, torch.Generator().manual_seed(3))
    bm = torchsde.BrownianInterval(
        0.0, t1, size=(n, 2), dtype=torch.float64, entropy=3, levy_area_approximation="space-time"
    )
    ts = torch.tensor([0.0, t1], dtype=torch.float64)
    x = torchsde.sdeint(to_torchsde(sde), x0, ts, bm=bm, method="srk", dt=t1 / 64)[-1]
    assert_moments_close(x, data.marginal(sde, t1), sigmas=4)


def test_event_shape_and_errors():
    sde = VPSDE()
    data = Gaussian(torch.zeros(2, 3, dtype=torch.float64), 0.5)
    mod = to_torchsde(sde, data.score_fn(sde), event_shape=(2, 3))
    y = torch.randn(4, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    s = torch.tensor(0.25, dtype=torch.float64)
    # reversed time: f(s, y) = -(f - g² score)(y, T - s)
    expect = -sde.reverse(data.score_fn(sde)).drift(y.reshape(4, 2, 3), 0.75).reshape(4, 6)
    torch.testing.assert_close(mod.f(s, y), expect)
    torch.testing.assert_close(mod.g(s, y), sde.diffusion(torch.tensor(0.75, dtype=torch.float64)).expand(4, 6))
    with pytest.raises(TypeError, match="sde"):
        to_torchsde("vp")
    with pytest.raises(TypeError, match="score_fn"):
        to_torchsde(sde, score_fn=3)
