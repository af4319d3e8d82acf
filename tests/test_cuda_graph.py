"""CUDA-graph capture of the fixed-step loop (`sdesolve.solvers.loop`, ``execution="cuda_graph"``).

DESIGN: replay must be bitwise identical to eager — the same kernels on the same buffers, with the generators'
Philox offsets registered so the replay draws what eager draws. The CUDA cases skip where CUDA is absent; the
argument checks run everywhere.
"""

import pytest
import torch

from sdesolve import VESDE, VPSDE, Gaussian, LangevinCorrector, ode_sample, pc_sample

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
SHAPE = (64, 3, 4, 4)


def _data(device) -> Gaussian:
    return Gaussian(torch.full((3, 4, 4), 0.3, device=device), torch.full((3, 4, 4), 0.5, device=device))


def _mode(graph: bool) -> str:
    return "cuda_graph" if graph else "eager"


def _pc(graph: bool, sde, *, generator=None, **kwargs) -> torch.Tensor:
    score = _data("cuda").score_fn(sde)
    return pc_sample(sde, score, SHAPE, device="cuda", steps=40, generator=generator, execution=_mode(graph), **kwargs)


@cuda
@pytest.mark.parametrize("sde", [VESDE(), VPSDE()], ids=["ve", "vp"])
@pytest.mark.parametrize(
    "predictor, corrector",
    [
        ("reverse_diffusion", "langevin"),
        ("euler_maruyama", None),
        ("ancestral", "batch"),
        ("edm_stochastic", None),
        ("pf_heun", None),
        ("sde_dpm_solver_pp_2m", None),
    ],
)
def test_pc_sample_replay_is_bitwise_eager_with_a_cuda_generator(sde, predictor, corrector):
    corr = LangevinCorrector(sde, snr=0.16, norm="batch") if corrector == "batch" else corrector
    out, state = [], []
    for graph in (False, True):
        gen = torch.Generator("cuda").manual_seed(7)
        out.append(_pc(graph, sde, generator=gen, predictor=predictor, corrector=corr))
        state.append(gen.get_state())
    assert torch.equal(out[0], out[1])
    assert torch.equal(state[0], state[1])  # the generator is left where eager leaves it


@cuda
def test_pc_sample_replay_is_bitwise_eager_with_the_default_generator_and_with_seeds():
    sde = VESDE()
    out = []
    for graph in (False, True):
        torch.cuda.manual_seed(3)
        out.append(_pc(graph, sde))
    assert torch.equal(out[0], out[1])
    seeded = [_pc(graph, sde, seeds=list(range(SHAPE[0]))) for graph in (False, True)]
    assert torch.equal(seeded[0], seeded[1])


@cuda
@pytest.mark.parametrize("method", ["euler", "rk4", "ddim", "dpm_solver_pp_3m", "unipc_3", "ipndm", "edm_heun"])
def test_ode_sample_replay_is_bitwise_eager(method):
    sde = VPSDE()
    x_t = torch.randn(SHAPE, generator=torch.Generator("cuda").manual_seed(0), device="cuda")
    score = _data("cuda").score_fn(sde)
    out = [
        ode_sample(sde, score, SHAPE, method=method, steps=12, grid="logsnr", x_init=x_t, execution=_mode(graph))
        for graph in (False, True)
    ]
    assert torch.equal(out[0], out[1])


@cuda
def test_half_precision_replay_is_bitwise_eager():
    sde = VESDE()
    score = _data("cuda").score_fn(sde)

    def half(x, t):
        return score(x.float(), t).to(x.dtype)

    out = [
        pc_sample(
            sde,
            half,
            SHAPE,
            device="cuda",
            dtype=torch.float16,
            steps=40,
            execution=_mode(graph),
            generator=torch.Generator("cuda").manual_seed(1),
        )
        for graph in (False, True)
    ]
    assert out[1].dtype == torch.float16 and torch.equal(out[0], out[1])


@cuda
def test_a_non_finite_replay_names_the_same_step_as_eager():
    sde = VESDE()
    score = _data("cuda").score_fn(sde)

    def bad(x, t):  # NaN below t = 0.4, on the device: no host branch
        return score(x, t) + torch.where(t < 0.4, float("nan"), 0.0).reshape(-1, 1, 1, 1)

    messages = []
    for graph in (False, True):
        with pytest.raises(FloatingPointError) as err:
            pc_sample(
                sde,
                bad,
                SHAPE,
                device="cuda",
                steps=40,
                execution=_mode(graph),
                generator=torch.Generator("cuda").manual_seed(0),
            )
        messages.append(str(err.value))
    assert messages[0] == messages[1] and "step " in messages[0]


def test_cuda_graph_arguments_are_checked():
    sde = VESDE()
    score = _data("cpu").score_fn(sde)
    with pytest.raises(ValueError, match="execution='cuda_graph' needs a CUDA state, got device cpu"):
        pc_sample(sde, score, SHAPE, steps=4, execution="cuda_graph")
    with pytest.raises(ValueError, match="progress=True is not available"):
        pc_sample(sde, score, SHAPE, steps=4, execution="cuda_graph", progress=True)
    with pytest.raises(ValueError, match="unknown execution 'graph'"):
        ode_sample(sde, score, SHAPE, method="euler", steps=4, execution="graph")
    with pytest.raises(ValueError, match="fixed-step methods, not method='dopri5'"):
        ode_sample(sde, score, SHAPE, method="dopri5", execution="cuda_graph")
    with pytest.raises(ValueError, match="brownian= callable"):
        pc_sample(sde, score, SHAPE, steps=4, execution="cuda_graph", brownian=lambda s0, s1: torch.zeros(SHAPE))


def test_the_replaced_keywords_still_choose_the_execution():
    # compile=True / cuda_graph=True (before execution=) are accepted with a DeprecationWarning, and checked alike
    sde = VESDE()
    score = _data("cpu").score_fn(sde)
    with pytest.warns(DeprecationWarning, match="execution="), pytest.raises(ValueError, match="needs a CUDA state"):
        pc_sample(sde, score, SHAPE, steps=4, cuda_graph=True)
    with pytest.warns(DeprecationWarning), pytest.raises(ValueError, match="cuda_graph=True and compile=True"):
        ode_sample(sde, score, SHAPE, method="euler", steps=4, cuda_graph=True, compile=True)
    with pytest.raises(TypeError, match="unexpected keyword argument 'cuda_grap'"):
        pc_sample(sde, score, SHAPE, steps=4, cuda_grap=True)
