"""Noise keyed by sample (`seeds=`): the hash against a pure-Python reference, the draws' law, row independence
of every stochastic predictor with every corrector (a user's own among them) and in conditional sampling, probes,
errors, and the per-sample Brownian tree."""

import math

import pytest
import torch

from sdesolve import (
    PREDICTORS,
    VPSDE,
    Corrector,
    Gaussian,
    GridLangevin,
    LinearObservation,
    MALACorrector,
    get_predictor,
    inpainting_matrix,
    log_likelihood,
    ode_sample,
    pc_sample,
    replacement_sample,
)
from sdesolve._utils import batch_time
from sdesolve.solvers.brownian_tree import SampleBrownianTree
from sdesolve.solvers.seeded import KeyedNormal, check_seeds, mix64, stream_key
from sdesolve.verify import fit_order

SDE = VPSDE()
DATA = Gaussian(torch.tensor([0.3, -0.2], dtype=torch.float64), torch.tensor([0.5, 1.2], dtype=torch.float64))
SCORE = DATA.score_fn(SDE)
STOCHASTIC = [name for name, cls in PREDICTORS.items() if get_predictor(name, SDE).stochastic]


def splitmix64_finaliser(v: int) -> int:
    """Steele et al. 2014 in Python integers mod 2^64 (independent of the torch implementation)."""
    m = (1 << 64) - 1
    v &= m
    v = ((v ^ (v >> 30)) * 0xBF58476D1CE4E5B9) & m
    v = ((v ^ (v >> 27)) * 0x94D049BB133111EB) & m
    return v ^ (v >> 31)


def test_mix64_matches_the_python_reference():
    vals = [0, 1, -1, 7, 2**62 + 3, -(2**63), 2**63 - 1, 123456789123]
    got = mix64(torch.tensor(vals, dtype=torch.int64)).tolist()
    assert [g & ((1 << 64) - 1) for g in got] == [splitmix64_finaliser(v) for v in vals]


def test_keyed_normals_are_standard_normal():
    # 2e5 x 3 draws: mean SE 1/sqrt(6e5) = 1.3e-3, variance SE sqrt(2/6e5) = 1.8e-3, 4th moment SE sqrt(96/6e5) = 0.013
    z = KeyedNormal(torch.arange(200_000)).normal_(torch.empty(200_000, 3, dtype=torch.float64), stream_key(9))
    n = z.numel()
    assert abs(z.mean()) < 4 / math.sqrt(n)
    assert abs(z.var() - 1) < 4 * math.sqrt(2 / n)
    assert abs((z**4).mean() - 3) < 4 * math.sqrt(96 / n)
    # neighbouring seeds and elements are uncorrelated: SE of a correlation 1/sqrt(n_pairs)
    assert abs(torch.corrcoef(torch.stack([z[:-1, 0], z[1:, 0]]))[0, 1]) < 4 / math.sqrt(2e5)
    assert abs(torch.corrcoef(torch.stack([z[:, 0], z[:, 1]]))[0, 1]) < 4 / math.sqrt(2e5)
    other = KeyedNormal(torch.arange(200_000)).normal_(torch.empty(200_000, 3, dtype=torch.float64), stream_key(10))
    assert abs(torch.corrcoef(torch.stack([z.flatten(), other.flatten()]))[0, 1]) < 4 / math.sqrt(n)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.float16])
def test_keyed_uniforms_are_uniform_and_never_one(dtype):
    # MALA's acceptance draws. 2e5 x 2 uniforms: the fraction below q has SE sqrt(q(1-q)/n); the top b bits of a word
    # (b the dtype's significand) are exact in the dtype, so no draw rounds up to 1 (float32 would from 53 bits).
    u = KeyedNormal(torch.arange(200_000)).uniform_(torch.empty(200_000, 2, dtype=dtype), stream_key(11)).double()
    n = u.numel()
    assert float(u.min()) >= 0 and float(u.max()) < 1
    for q in (0.1, 0.5, 0.9):
        assert abs(float((u < q).double().mean()) - q) < 4 * math.sqrt(q * (1 - q) / n)
    other = KeyedNormal(torch.arange(200_000)).uniform_(torch.empty(200_000, 2, dtype=dtype), stream_key(12)).double()
    assert abs(torch.corrcoef(torch.stack([u.flatten(), other.flatten()]))[0, 1]) < 4 / math.sqrt(n)


def _rows_agree(run, seeds):
    """Row 5 of a batch of 16 equals seed 5 alone; a shuffled batch gives the same rows, shuffled; torch's global
    generator, reseeded, changes nothing (no draw of the run comes from it)."""
    torch.manual_seed(0)
    full = run(seeds)
    alone = run(seeds[5:6])
    perm = torch.randperm(len(seeds), generator=torch.Generator().manual_seed(3))
    shuffled = run(seeds[perm])
    torch.manual_seed(1)
    again = run(seeds)
    torch.testing.assert_close(full[5:6], alone, rtol=0, atol=1e-12)
    torch.testing.assert_close(full[perm], shuffled, rtol=0, atol=1e-12)
    assert torch.equal(full, again)
    assert (full[0] - full[1]).abs().max() > 0  # distinct seeds, distinct samples


class UserLangevin(Corrector):
    """A corrector written against the public base only: one Langevin step of size 0.1·σ(t)² per call."""

    def step(self, x, t, t_next, score_fn, *, noise):
        eps = 0.1 * self.sde.std(batch_time(t, x)).reshape(-1, *([1] * (x.ndim - 1))) ** 2
        x_mean = x + eps * score_fn(x, t)
        return x_mean + (2 * eps).sqrt() * noise.normal(x), x_mean


CORRECTORS = {
    "none": lambda: None,
    "langevin": lambda: "langevin",
    "grid_langevin": lambda: GridLangevin(SDE, n_steps=2),
    "mala": lambda: MALACorrector(SDE, DATA.log_prob_fn(SDE), snr=0.3, n_steps=2),
    "user": lambda: UserLangevin(SDE),
}


@pytest.mark.parametrize("brownian", [None, "per_sample"])
@pytest.mark.parametrize("corrector", sorted(CORRECTORS))
@pytest.mark.parametrize("predictor", STOCHASTIC)
def test_row_depends_only_on_its_seed(predictor, corrector, brownian):
    def run(s):
        return pc_sample(SDE, SCORE, (len(s), 2), predictor=predictor, corrector=CORRECTORS[corrector](), steps=12,
                         seeds=s, brownian=brownian, dtype=torch.float64)  # fmt: skip

    _rows_agree(run, torch.arange(100, 116))


@pytest.mark.parametrize("corrector", ["langevin", "grid_langevin", "user"])
@pytest.mark.parametrize("predictor", STOCHASTIC)
def test_replacement_row_depends_only_on_its_seed(predictor, corrector):
    # the hook's draws are keyed too (stream HOOK): conditional sampling keeps per-sample seeds
    obs = LinearObservation(inpainting_matrix(torch.tensor([True, False])).double(), [0.4])
    corr = CORRECTORS[corrector]()

    def run(s):
        return replacement_sample(SDE, SCORE, obs, len(s), predictor=predictor, corrector=corr, steps=12, seeds=s)

    _rows_agree(run, torch.arange(100, 116))


def test_ode_sample_and_likelihood_rows_depend_only_on_their_seed():
    _rows_agree(lambda s: ode_sample(SDE, SCORE, (len(s), 2), method="heun", steps=8, seeds=s,
                                     dtype=torch.float64), torch.arange(16))  # fmt: skip
    x = DATA.sample(16, generator=torch.Generator().manual_seed(0))
    for divergence in ("hutchinson_rademacher", "hutchinson_gaussian"):
        full = log_likelihood(SDE, SCORE, x, seeds=list(range(16)), divergence=divergence, method="rk4", steps=8)
        alone = log_likelihood(SDE, SCORE, x[5:6], seeds=[5], divergence=divergence, method="rk4", steps=8)
        torch.testing.assert_close(full[5:6], alone, rtol=0, atol=1e-12)


def test_rademacher_probes_are_signs_with_mean_zero():
    r = KeyedNormal(torch.arange(4000)).rademacher(stream_key(4), torch.empty(4000, 25))
    assert set(r.unique().tolist()) == {-1.0, 1.0}
    assert abs(r.mean()) < 4 / math.sqrt(r.numel())  # SE of a mean of ±1: 1/sqrt(n)


@pytest.mark.parametrize(
    "call",
    [
        lambda: pc_sample(SDE, SCORE, (4, 2), steps=2, seeds=[1, 2, 3, 4], generator=torch.Generator()),
        lambda: pc_sample(SDE, SCORE, (4, 2), steps=2, seeds=[1, 2, 3]),
        lambda: ode_sample(SDE, SCORE, (4, 2), seeds=torch.arange(5)),
        lambda: log_likelihood(SDE, SCORE, torch.zeros(4, 2, dtype=torch.float64), seeds=[1]),
        lambda: pc_sample(SDE, SCORE, (2, 2), steps=2, seeds=[2**63, 0]),
        lambda: pc_sample(SDE, SCORE, (2, 2), steps=2, brownian="per_sample"),
    ],
    ids=["with-generator", "short", "long-tensor", "likelihood", "out-of-range", "tree-without-seeds"],
)
def test_bad_seeds_raise_value_error_naming_seeds(call):
    with pytest.raises(ValueError, match="seeds"):
        call()


def test_non_integer_seeds_raise_type_error():
    with pytest.raises(TypeError, match="seeds"):
        check_seeds(torch.zeros(3), 3, None, None)
    with pytest.raises(TypeError, match="seeds"):
        check_seeds([1.5, 2, 3], 3, None, None)


def test_brownian_tree_has_brownian_increments_and_is_consistent():
    # W(s) ~ N(0, s - a): variance SE (s - a) sqrt(2/n); increments over disjoint intervals uncorrelated.
    n = 20_000
    tree = SampleBrownianTree(KeyedNormal(torch.arange(n)), (1,), (0.0, 2.0))
    w1, w2 = tree.value(0.3), tree.value(1.7)  # not on the lattice: bridge mean inside a leaf of width 2^-29
    assert abs(w1.var() - 0.3) < 4 * 0.3 * math.sqrt(2 / n)
    assert abs((w2 - w1).var() - 1.4) < 4 * 1.4 * math.sqrt(2 / n)
    assert abs(torch.corrcoef(torch.cat([w1, w2 - w1], 1).T)[0, 1]) < 4 / math.sqrt(n)
    # the same times in another order and in another tree object give the same values
    again = SampleBrownianTree(KeyedNormal(torch.arange(n)), (1,), (0.0, 2.0))
    assert torch.equal(again.value(1.7), w2) and torch.equal(again(0.3, 1.7), w2 - w1)
    with pytest.raises(ValueError, match="span"):
        tree.value(2.5)


def test_two_step_counts_on_one_path_converge_at_the_strong_order():
    # Euler–Maruyama on the reverse VP SDE of Gaussian data (additive noise): strong order 1. Runs with N and
    # 2N steps share each sample's Brownian tree; RMS |x_N - x_2N| over 256 samples, N = 8..128 (16x), slope
    # within ±0.15 of the declared order. Without the shared path the gap would not shrink at all.
    order = get_predictor("euler_maruyama", SDE).strong_order
    seeds, ns = torch.arange(256), [8, 16, 32, 64, 128]

    def run(n, brownian="per_sample"):
        return pc_sample(SDE, SCORE, (256, 2), predictor="euler_maruyama", corrector=None, steps=n, eps=1e-2,
                         seeds=seeds, brownian=brownian, denoise=False, dtype=torch.float64)  # fmt: skip

    runs = {n: run(n) for n in [*ns, 256]}
    gaps = [float((runs[n] - runs[2 * n]).pow(2).sum(1).mean().sqrt()) for n in ns]
    assert abs(fit_order(ns, gaps).slope - order) < 0.15
    unshared = float((run(128, None) - run(256, None)).pow(2).sum(1).mean().sqrt())
    assert unshared > 10 * gaps[-1]  # keyed by step index, not time: independent noise at 128 vs 256 steps


def test_corrector_draws_at_a_grid_time_are_shared_across_step_counts():
    tree = SampleBrownianTree(KeyedNormal(torch.arange(8)), (3,), (0.0, 1.0))
    a = tree.normal_(torch.empty(8, 3), 0.25, 0)
    b = tree.normal_(torch.empty(8, 3), 1.0 - 0.75, 0)  # the same time reached by another grid
    c = tree.normal_(torch.empty(8, 3), 0.25, 1)
    assert torch.equal(a, b) and not torch.equal(a, c)


@pytest.mark.parametrize("brownian", [None, "per_sample"])
def test_no_host_sync_inside_the_step_loop_with_seeds(host_syncs, brownian):
    # keyed draws compute their keys on the host from Python ints: nothing per step reads the device
    pc_sample(SDE, SCORE, (2, 2), steps=50, predictor="ancestral", seeds=[1, 2], brownian=brownian, dtype=torch.float64)
    assert len(host_syncs) < 8, host_syncs  # constant, not O(steps): seed validation and the final finiteness check
