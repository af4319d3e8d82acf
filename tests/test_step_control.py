"""Step-size control of the adaptive solvers (`sdesolve.solvers.step_control`): the mixed-tolerance error norm in
every dtype against a float64 reference, and the controller against its formula."""

import math

import pytest
import torch

from sdesolve.solvers.step_control import StepController, mixed_error


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
def test_mixed_error_in_any_dtype_equals_the_float64_norm(dtype):
    # The inputs are rounded to the dtype first; the norm of those rounded numbers is then computed in at least
    # float32, so it matches float64 to float32 resolution (a float16 norm would overflow at 65504 and lose atol).
    gen = torch.Generator().manual_seed(0)
    low = (torch.randn(6, 3, 8, generator=gen) * 300).to(dtype)
    high = low + (torch.randn(6, 3, 8, generator=gen) * 0.05).to(dtype)
    prev = (torch.randn(6, 3, 8, generator=gen).abs() * 200).to(dtype)
    rtol, atol = 1e-3, 1e-4
    l64, h64, p64 = (v.double() for v in (low, high, prev))
    delta = torch.maximum(atol * torch.ones_like(l64), rtol * torch.maximum(l64.abs(), p64))
    ref = ((h64 - l64) / delta).pow(2).mean(dim=(1, 2)).sqrt()
    got = mixed_error(high, low, prev, rtol, atol)
    assert got.dtype == torch.float64 and got.shape == (6,)
    torch.testing.assert_close(got, ref, rtol=4 * torch.finfo(torch.float32).eps, atol=0)


def test_controller_is_its_formula_clipped():
    c = StepController(safety=0.9, exponent=0.2, max_factor=10.0, min_factor=0.2)
    for err in (1e-30, 1e-6, 0.3, 1.0, 5.0, 1e6):
        expect = min(10.0, max(0.2, 0.9 * err**-0.2))
        assert math.isclose(c.factor(err), expect, rel_tol=1e-15)
        assert math.isclose(float(c.factor(torch.tensor([err], dtype=torch.float64))), expect, rel_tol=1e-14)
    assert c.factor(0.0) == 10.0 and float(c.factor(torch.zeros(1, dtype=torch.float64))) == 10.0
    assert math.isnan(
        float(c.factor(torch.tensor([float("nan")], dtype=torch.float64)))
    )  # a failed estimate stays visible
