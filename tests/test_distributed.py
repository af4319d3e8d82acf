"""`sdesolve.distributed`: a 2-process gloo run writes the same samples.npy as one process (bitwise), the
chunking is rank-independent, and a failing rank fails the run with its error instead of hanging."""

import os
import subprocess
import sys
import textwrap
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
