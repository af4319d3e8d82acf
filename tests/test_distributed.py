"""`sdesolve.distributed`: a 2-process gloo run writes the same samples.npy as one process (bitwise), the
chunking is rank-independent, and a failing rank fails the run with its error instead of hanging."""

import contextlib
import fcntl
import json
import os
import pty
import random
import signal
import socket
import struct
import subprocess
import sys
import termios
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from sdesolve import distributed
from sdesolve.cli import app
from sdesolve.solvers.seeded import sample_seeds

ROOT = Path(__file__).resolve().parents[1]
ARGS = ["sample", "--num-samples", "2100", "--steps", "10"]  # 3 chunks of 1024: ranks get 2 and 1


def torchrun(tmp_path, *args, timeout=120):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", *args]
    return subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=timeout)


def test_two_processes_write_the_samples_of_one(tmp_path):
    one = CliRunner().invoke(app, [*ARGS, "--out", str(tmp_path / "one")])
    assert one.exit_code == 0, one.output
    two = torchrun(tmp_path, "-m", "sdesolve", *ARGS, "--out", str(tmp_path / "two"))
    assert two.returncode == 0, two.stderr[-3000:]
    a, b = np.load(tmp_path / "one" / "samples.npy"), np.load(tmp_path / "two" / "samples.npy")
    assert a.shape == (2100, 2) and a.dtype == np.float32
    assert a.tobytes() == b.tobytes()
    assert (tmp_path / "two" / "metrics.json").exists() and (tmp_path / "two" / "samples.png").exists()


def test_failing_rank_fails_the_run_with_its_error(tmp_path):
    script = tmp_path / "fail.py"
    script.write_text(
        textwrap.dedent("""
        import sys, torch
        from sdesolve import distributed
        from sdesolve.solvers.seeded import sample_seeds

        def sampler(seeds):
            if int(seeds[0]) == int(sample_seeds(0, torch.tensor([4]))[0]):
                raise ValueError("bad chunk on rank 1")
            return seeds[:, None].double()

        with distributed.process_group():
            rank, _ = distributed.rank_and_world()
            try:
                distributed.sample(sampler, 8, seed=0, chunk_size=4)
            except Exception as err:
                print(f"rank {rank}: {type(err).__name__}: {err}", file=sys.stderr)
                raise SystemExit(3)
    """)
    )
    out = torchrun(tmp_path, str(script))
    assert out.returncode != 0
    assert "rank 1: ValueError: bad chunk on rank 1" in out.stderr
    assert "rank 0: RuntimeError: rank 1 of 2 failed: ValueError: bad chunk on rank 1" in out.stderr


def test_chunks_cover_every_index_once_and_one_process_returns_them_in_order():
    work = distributed.chunks(2100, 1024)
    assert [len(c) for c in work] == [1024, 1024, 52] and [i for c in work for i in c] == list(range(2100))
    got = distributed.sample(lambda s: s[:, None], 10, seed=7, chunk_size=3)
    assert torch.equal(got[:, 0], sample_seeds(7, torch.arange(10)))
    with pytest.raises(ValueError, match="chunk_size"):
        distributed.chunks(10, 0)


# --- durable output: kill, resume, refuse (issue 25) ---------------------------------------------------------------

KILL_ARGS = ["--num-samples", "3000", "--steps", "40", "--chunk-size", "100", "--quiet"]  # 30 chunks, ~1 s of sampling
CHUNKS = 30


def env(**extra):
    return {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", **extra}


def cli(out, *args):
    return [sys.executable, "-m", "sdesolve", "sample", *KILL_ARGS, "--out", str(out), *args]


def chunk_files(out):
    folder = Path(out) / "chunks"
    return sorted(p.name for p in folder.glob("chunk-*.npz")) if folder.is_dir() else []


def kill_when(proc, out, k, pid=None):
    """SIGKILL ``pid`` (default: ``proc``) once ``k`` chunk files exist — a point fixed by the folder, not a clock."""
    deadline = time.monotonic() + 180
    while len(chunk_files(out)) < k:
        assert proc.poll() is None, f"the run ended (code {proc.returncode}) before {k} chunks: nothing was killed"
        assert time.monotonic() < deadline, "no progress"
        time.sleep(0.002)
    os.kill(proc.pid if pid is None else pid, signal.SIGKILL)


def metrics(out):
    return json.loads((Path(out) / "metrics.json").read_text())["metrics"]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """samples.npy of one uninterrupted one-process run."""
    out = tmp_path_factory.mktemp("reference")
    result = CliRunner().invoke(app, ["sample", *KILL_ARGS, "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert metrics(out)["chunks_reused"] == 0
    return (out / "samples.npy").read_bytes()


KILL_POINTS = sorted(random.Random(25).sample(range(2, CHUNKS - 4), 3))  # fixed seed: [2, 8, 14]


@pytest.mark.parametrize("k", [KILL_POINTS[0], *(pytest.param(k, marks=pytest.mark.slow) for k in KILL_POINTS[1:])])
def test_a_killed_run_resumes_to_the_same_bytes(tmp_path, reference, k):
    out = tmp_path / "run"
    proc = subprocess.Popen(cli(out), env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    kill_when(proc, out, k)
    assert proc.wait(timeout=60) == -signal.SIGKILL
    kept = len(chunk_files(out))
    assert k <= kept < CHUNKS and not (out / "samples.npy").exists()
    stale = out / "chunks" / f".chunk-{CHUNKS - 1:06d}.npz.4242.0badc0de.tmp"  # what a kill inside a write leaves
    stale.write_bytes(b"PK\x03\x04 half a chunk")
    rerun = subprocess.run(cli(out), env=env(), capture_output=True, text=True, timeout=120)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert (out / "samples.npy").read_bytes() == reference
    m = metrics(out)
    assert (m["chunks_reused"], m["samples_computed"], m["chunks_redone"]) == (kept, 3000 - 100 * kept, 0)
    assert not stale.exists() and len(chunk_files(out)) == CHUNKS


def test_a_truncated_chunk_is_redone_and_a_changed_argument_refused(tmp_path, reference):
    out = tmp_path / "run"
    assert CliRunner().invoke(app, ["sample", *KILL_ARGS, "--out", str(out)]).exit_code == 0
    chunk = out / "chunks" / "chunk-000007.npz"
    chunk.write_bytes(chunk.read_bytes()[:1000])  # truncated by hand
    (out / "samples.npy").unlink()
    with pytest.warns(RuntimeWarning, match=r"1 chunk file\(s\) .* sampled again \(chunk-000007.npz: BadZipFile"):
        result = CliRunner().invoke(app, ["sample", *KILL_ARGS, "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert (out / "samples.npy").read_bytes() == reference
    assert (metrics(out)["chunks_reused"], metrics(out)["chunks_redone"]) == (CHUNKS - 1, 1)
    changed = CliRunner().invoke(app, ["sample", *KILL_ARGS, "--steps", "41", "--out", str(out)])
    assert changed.exit_code == 2
    (line,) = changed.stderr.strip().splitlines()
    assert "holds a run with other arguments (steps: 40 → 41)" in line and "--overwrite" in line
    assert (out / "samples.npy").read_bytes() == reference  # nothing touched
    fresh = CliRunner().invoke(app, ["sample", *KILL_ARGS, "--steps", "41", "--out", str(out), "--overwrite"])
    assert fresh.exit_code == 0 and metrics(out)["chunks_reused"] == 0


def workers(agent_pid):
    """{RANK: pid} of the processes below ``agent_pid`` (torchrun's workers), from /proc."""
    parents = {}
    for stat_file in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):
            fields = stat_file.read_text().rsplit(")", 1)[1].split()
            parents[int(stat_file.parent.name)] = int(fields[1])
    below, frontier = set(), {agent_pid}
    while frontier:
        frontier = {p for p, parent in parents.items() if parent in frontier} - below
        below |= frontier
    ranks = {}
    for pid in below:
        with contextlib.suppress(OSError):
            environ = dict(e.split("=", 1) for e in Path(f"/proc/{pid}/environ").read_text().split("\0") if "=" in e)
            if "sdesolve" in Path(f"/proc/{pid}/cmdline").read_text() and "RANK" in environ:
                ranks[int(environ["RANK"])] = pid
    return ranks


def test_torchrun_with_a_rank_killed_resumes_on_two_processes(tmp_path, reference):
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    run = subprocess.Popen([*cmd, *cli(out)[1:]], cwd=tmp_path, env=env(), stdout=subprocess.DEVNULL,
                           stderr=subprocess.PIPE, text=True)  # fmt: skip
    kill_when(run, out, 6, pid=_rank_pid(run, 1))
    _, err = run.communicate(timeout=120)
    assert run.returncode != 0 and "exitcode  : -9" in err  # torchrun reports the killed rank, stops the other
    kept = len(chunk_files(out))
    assert 6 <= kept < CHUNKS
    rerun = subprocess.run([*cmd, *cli(out)[1:]], cwd=tmp_path, env=env(), capture_output=True, text=True, timeout=180)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert (out / "samples.npy").read_bytes() == reference and metrics(out)["chunks_reused"] == kept


def _rank_pid(agent, rank):
    deadline = time.monotonic() + 120
    while rank not in (found := workers(agent.pid)):
        assert agent.poll() is None and time.monotonic() < deadline, "torchrun's workers never started"
        time.sleep(0.05)
    return found[rank]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return str(s.getsockname()[1])


@pytest.mark.slow
def test_the_survivor_of_a_dead_rank_exits_with_a_clear_error(tmp_path, reference):
    """Ranks started without torchrun's agent (as by srun): nobody stops the survivor, which must not hang."""
    out, port = tmp_path / "run", free_port()
    ranks = [
        subprocess.Popen(
            cli(out),
            env=env(MASTER_ADDR="127.0.0.1", MASTER_PORT=port, WORLD_SIZE="2", RANK=str(r), LOCAL_RANK=str(r)),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for r in (0, 1)
    ]
    kill_when(ranks[0], out, 4, pid=ranks[1].pid)
    t0 = time.monotonic()
    _, err = ranks[0].communicate(timeout=120)  # gloo sees the closed connection; TIMEOUT (10 min) bounds the rest
    ranks[1].wait(timeout=10)
    assert ranks[0].returncode == 2 and time.monotonic() - t0 < 60
    (line,) = [x for x in err.splitlines() if x.startswith("Error:")]
    assert "lost contact with the other ranks after sampling" in line and "Connection closed by peer" in line
    assert "samples are safe in" in line and "rerun the same command, on any number of processes" in line
    rerun = subprocess.run(cli(out), env=env(), capture_output=True, text=True, timeout=120)
    assert rerun.returncode == 0 and (out / "samples.npy").read_bytes() == reference


def terminal_stderr(cmd, **kw):
    """Run ``cmd`` with stderr on a pseudo-terminal (where tqdm draws) and return what it printed there."""
    primary, secondary = pty.openpty()
    fcntl.ioctl(secondary, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 120, 0, 0))  # 120 columns for the bar
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=secondary, **kw)
    os.close(secondary)
    chunks = []
    with contextlib.suppress(OSError):  # EIO once every writer has closed the terminal
        while data := os.read(primary, 65536):
            chunks.append(data)
    os.close(primary)
    assert proc.wait(timeout=120) == 0
    return b"".join(chunks).decode(errors="replace")


def test_one_progress_bar_on_a_terminal_none_when_quiet(tmp_path):
    args = ["sample", "--num-samples", "600", "--steps", "20", "--chunk-size", "100"]
    shown = terminal_stderr([sys.executable, "-m", "sdesolve", *args, "--out", str(tmp_path / "a")], env=env())
    assert "sampling: 100%" in shown and "600/600" in shown and "sample/s" in shown
    assert shown.count("| 0/600 [") == 1  # one bar, drawn once at 0
    quiet = terminal_stderr(
        [sys.executable, "-m", "sdesolve", *args, "--quiet", "--out", str(tmp_path / "b")], env=env()
    )
    assert "sampling" not in quiet


@pytest.mark.slow
def test_one_progress_bar_for_two_ranks(tmp_path):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "sdesolve"]
    args = ["sample", "--num-samples", "2000", "--steps", "20", "--chunk-size", "100", "--out", str(tmp_path / "a")]
    shown = terminal_stderr([*cmd, *args], env=env(), cwd=tmp_path)
    assert shown.count("| 0/2000 [") == 1 and "2000/2000" in shown  # rank 0's bar counts rank 1's chunks too


def test_parse_seeds_reads_edm_syntax_and_names_bad_parts():
    assert distributed.parse_seeds("1,2,5-10").tolist() == [1, 2, 5, 6, 7, 8, 9, 10]  # edm's docstring example
    assert distributed.parse_seeds("0-49999").shape == (50_000,) and distributed.parse_seeds(" 7 ").tolist() == [7]
    for text, match in [("5-2", "'5-2' ends below its start"), ("1,,2", "'' in '1,,2'"), ("x", "'x'"),
                        ("-3", "'-3'"), ("1,3,1-2", "1 appears 2 times"), ("9223372036854775808", "int64")]:  # fmt: skip
        with pytest.raises(ValueError, match=match):
            distributed.parse_seeds(text)
    for seeds in (torch.tensor([0, 1, 2, 7, 9, 10]), torch.tensor([5]), torch.tensor([3, 2, 1])):
        text = distributed.format_seeds(seeds)
        assert torch.equal(distributed.parse_seeds(text), seeds)
    assert distributed.format_seeds(torch.tensor([0, 1, 2, 7])) == "0-2,7"


def test_seeds_option_gives_each_sample_its_own_seed(tmp_path):
    result = CliRunner().invoke(app, ["sample", "--seeds", "3-7,11", "--steps", "5", "--chunk-size", "4", "--ode",
                                      "--method", "euler", "--grid", "uniform", "--out", str(tmp_path)])  # fmt: skip
    assert result.exit_code == 0, result.output
    x = np.load(tmp_path / "samples.npy")
    from sdesolve import VPSDE, ode_sample
    from sdesolve.problems import ring_mixture

    sde = VPSDE()
    alone = ode_sample(sde, ring_mixture().score_fn(sde), (1, 2), method="euler", steps=5, eps=1e-3, seeds=[11])
    assert x.shape == (6, 2) and x[5].tobytes() == alone[0].numpy().tobytes()  # its own seed, alone, in any chunk
    config = json.loads((tmp_path / "metrics.json").read_text())["config"]
    assert config["seeds"] == "3-7,11" and config["seed"] is None
    both = CliRunner().invoke(app, ["sample", "--seeds", "0-9", "--seed", "1", "--out", str(tmp_path / "b")])
    assert both.exit_code == 2 and "--seeds: give --seeds, or --num-samples with --seed, not both" in both.stderr
    bad = CliRunner().invoke(app, ["sample", "--seeds", "9-0", "--out", str(tmp_path / "c")])
    assert bad.exit_code == 2 and "Error: --seeds: seeds: range '9-0' ends below its start" in bad.stderr


def test_per_sample_seeds_checks_its_arguments():
    assert torch.equal(distributed.per_sample_seeds(3, 5, None), sample_seeds(5, torch.arange(3)))
    assert distributed.per_sample_seeds(None, None, [4, 2]).tolist() == [4, 2]
    for args, match in [((3, None, None), "pass seed="), ((None, 1, [1]), "not both"), ((3, None, [1, 2]), "differs"),
                        ((None, None, []), "len\\(seeds\\) must be >= 1")]:  # fmt: skip
        with pytest.raises(ValueError, match=match):
            distributed.per_sample_seeds(*args)
