"""The one step protocol (`sdesolve.solvers.protocol`): predictors and correctors take ``step(x, t, t_next, score_fn,
*, noise)``; the calls and subclass signatures written before it still work, with a ``DeprecationWarning``, and give
the same numbers as the protocol's (bitwise: the same draws in the same order through the same formulas)."""

import pytest
import torch

from sdesolve import VPSDE, Corrector, EulerMaruyama, Gaussian, LangevinCorrector, Predictor, pc_sample
from sdesolve._utils import append_dims, batch_time

SDE = VPSDE()
DATA = Gaussian(torch.tensor([0.3, -0.2], dtype=torch.float64), torch.tensor([0.5, 1.2], dtype=torch.float64))
SCORE = DATA.score_fn(SDE)
X = DATA.marginal(SDE, 0.5).sample(8, torch.Generator().manual_seed(0))


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_old_call_forms_equal_the_protocol():
    pred, corr = EulerMaruyama(SDE), LangevinCorrector(SDE, n_steps=2)
    new = pred.step(X, 0.5, 0.4, SCORE, noise=gen(1))
    with pytest.warns(DeprecationWarning, match="generator"):
        by_keyword = pred.step(X, 0.5, 0.4, SCORE, generator=gen(1))
    with pytest.warns(DeprecationWarning, match="generator"):
        by_position = pred.step(X, 0.5, 0.4, SCORE, gen(1))
    assert all(torch.equal(new[k], old[k]) for old in (by_keyword, by_position) for k in (0, 1))
    new = corr.step(X, 0.5, 0.4, SCORE, noise=gen(2))
    with pytest.warns(DeprecationWarning, match=r"step\(x, t, score_fn, generator, t_next=...\)"):
        old = corr.step(X, 0.5, SCORE, generator=gen(2), t_next=0.4)
    assert torch.equal(new[0], old[0]) and torch.equal(new[1], old[1])


def test_protocol_argument_errors_name_the_argument():
    pred = EulerMaruyama(SDE)
    with pytest.raises(TypeError, match="unexpected keyword argument 'gen'"):
        pred.step(X, 0.5, 0.4, SCORE, gen=gen(0))
    with pytest.raises(TypeError, match="missing the argument 'score_fn'"):
        pred.step(X, 0.5, 0.4)
    with pytest.warns(DeprecationWarning), pytest.raises(ValueError, match="pass noise= only"):
        pred.step(X, 0.5, 0.4, SCORE, generator=gen(0), noise=gen(1))


def _sigma_rule(sde, x, t, t_next, snr=0.2):
    t = batch_time(t, x)
    alpha = torch.ones_like(t) if t_next is None else sde.mean_ratio(t, batch_time(t_next, x)) ** 2
    return t, append_dims(2 * alpha * (snr * sde.std(t)) ** 2, x.ndim)


def _old_classes():
    """A predictor and a corrector with the signatures before the protocol (as the docs showed them); defining
    them warns once each."""
    with pytest.warns(DeprecationWarning, match="takes generator"):

        class OldEuler(Predictor):
            def step(self, x, t, t_next, score_fn, generator=None, noise=None):
                t, t_next = batch_time(t, x), batch_time(t_next, x)
                z = torch.randn(x.shape, generator=generator, dtype=x.dtype) if noise is None else noise
                dt = append_dims(t_next - t, x.ndim)
                f, g = append_dims(self.sde.drift_coeff(t), x.ndim), append_dims(self.sde.diffusion(t), x.ndim)
                mean = x + (f * x - g**2 * score_fn(x, t)) * dt
                return mean + g * dt.abs().sqrt() * z, mean

    with pytest.warns(DeprecationWarning, match="takes generator"):

        class OldLangevin(Corrector):
            def step(self, x, t, score_fn, generator=None, t_next=None):
                t, eps = _sigma_rule(self.sde, x, t, t_next)
                z = torch.randn(x.shape, generator=generator, dtype=x.dtype)
                return x + eps * score_fn(x, t) + (2 * eps).sqrt() * z, x

    return OldEuler, OldLangevin


class NewLangevin(Corrector):
    """`OldLangevin` under the protocol."""

    def step(self, x, t, t_next, score_fn, *, noise):
        t, eps = _sigma_rule(self.sde, x, t, t_next)
        return x + eps * score_fn(x, t) + (2 * eps).sqrt() * noise.normal(x), x


def _run(predictor, corrector, **kw):
    return pc_sample(SDE, SCORE, (8, 2), predictor=predictor, corrector=corrector, steps=20, dtype=torch.float64, **kw)


def test_old_subclasses_run_and_keep_their_numbers():
    OldEuler, OldLangevin = _old_classes()
    # the old predictor gets the step's draw as its noise tensor: a generator's, or a sample's keyed draw
    torch.testing.assert_close(_run(OldEuler(SDE), None, generator=gen(3)), _run("euler_maruyama", None, generator=gen(3)),
                               rtol=0, atol=1e-12)  # fmt: skip
    seeds = list(range(8))
    torch.testing.assert_close(_run(OldEuler(SDE), None, seeds=seeds), _run("euler_maruyama", None, seeds=seeds),
                               rtol=0, atol=1e-12)  # fmt: skip
    # the old corrector draws from the run's generator itself: the same numbers as the protocol's version
    assert torch.equal(
        _run("none", OldLangevin(SDE), generator=gen(4)), _run("none", NewLangevin(SDE), generator=gen(4))
    )
    with pytest.raises(ValueError, match="cannot key its draws"):
        _run("none", OldLangevin(SDE), seeds=seeds)
