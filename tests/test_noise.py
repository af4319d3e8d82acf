"""The noise a step receives (`sdesolve.solvers.noise`): a `StepNoise` names each draw by stream, interval and index,
so the same draw is the same number however a step asks for it; what callers may pass instead, and its errors."""

import pytest
import torch

from sdesolve.solvers.noise import (
    CORRECTOR,
    HOOK,
    PREDICTOR,
    GeneratorNoise,
    GivenNoise,
    StepNoise,
    as_step_noise,
)
from sdesolve.solvers.seeded import SeededNoise, seeds_for, stream_key

SHAPE = (4, 3)


def _seeded() -> SeededNoise:
    return SeededNoise(seeds_for([5, 6, 7, 8], SHAPE, None, "cpu"))


def test_draws_are_named_by_stream_interval_and_index():
    source, like = _seeded(), torch.empty(SHAPE, dtype=torch.float64)
    keyed = source.keyed
    pred = StepNoise(source, PREDICTOR, 3, 0.5, 0.4)
    assert torch.equal(pred.normal(like), keyed.normal_(like.clone(), stream_key(PREDICTOR, 3)))  # the increment
    assert torch.equal(pred.normal(like, 2), keyed.normal_(like.clone(), stream_key(PREDICTOR, 3, 2)))
    corr = StepNoise(source, CORRECTOR, 3, 0.5, 0.4)
    assert torch.equal(corr.normal(like, 1), source.corrector(like.clone(), 3, 1, 0.5))  # the fused kernels' draw
    draws = [pred.normal(like), pred.normal(like, 1), corr.normal(like), StepNoise(source, HOOK, 3).normal(like)]
    assert all(not torch.equal(a, b) for k, a in enumerate(draws) for b in draws[k + 1 :])  # distinct streams
    assert torch.equal(pred.normal(like, 1), pred.normal(like, 1))  # a draw, asked twice, is the same number


def test_a_generator_source_draws_in_call_order():
    gen = torch.Generator().manual_seed(4)
    noise = StepNoise(GeneratorNoise(gen), CORRECTOR)
    a, u = noise.normal(torch.empty(SHAPE)), noise.uniform(torch.empty(4))
    ref = torch.Generator().manual_seed(4)
    assert torch.equal(a, torch.randn(SHAPE, generator=ref)) and torch.equal(u, torch.rand(4, generator=ref))


def test_what_a_caller_may_pass_as_noise():
    z = torch.randn(SHAPE)
    given = as_step_noise(z, PREDICTOR)
    assert isinstance(given.source, GivenNoise) and torch.equal(given.normal(z), z)
    with pytest.raises(ValueError, match="draws more than one normal"):
        given.normal(z, 1)
    with pytest.raises(ValueError, match="noise must have the sample's shape"):
        as_step_noise(torch.zeros(2), PREDICTOR).normal(z)
    gen = as_step_noise(torch.Generator().manual_seed(0), CORRECTOR)
    assert torch.equal(gen.normal(z), torch.randn(SHAPE, generator=torch.Generator().manual_seed(0)))
    assert as_step_noise(None, PREDICTOR).source.generator is None  # torch's default generator, as torch.randn
    handle = StepNoise(_seeded(), PREDICTOR)
    assert as_step_noise(handle, PREDICTOR) is handle
    with pytest.raises(TypeError, match="noise must be"):
        as_step_noise(3, PREDICTOR)
