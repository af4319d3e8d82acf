"""`sdesolve.durable`: atomic writes leave the old file or the new one, chunk files are verified (truncated, flipped,
foreign chunks are refused), the streamed samples.npy is numpy.save's bytes, and the manifest names what changed."""

import io
import json
import os
import stat
import zipfile

import numpy as np
import pytest
import torch

from sdesolve.durable import CHUNKS, MANIFEST, ChunkStore, atomic_open, atomic_write, config_diff, verify_zip
from sdesolve.solvers.seeded import sample_seeds


def test_atomic_write_replaces_whole_files_and_an_error_leaves_the_old_one(tmp_path):
    path = tmp_path / "a.json"
    atomic_write(path, "old")
    with pytest.raises(RuntimeError, match="mid-write"), atomic_open(path) as f:
        f.write(b"new but")
        raise RuntimeError("mid-write")
    assert path.read_text() == "old" and os.listdir(tmp_path) == ["a.json"]  # no temporary file left
    with atomic_open(path, "w") as f:
        f.write("näive")
    assert path.read_text(encoding="utf-8") == "näive"
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask  # like open(path, "w"), not mkstemp's 0o600
    with pytest.raises(ValueError, match="mode"):
        atomic_open(path, "a").__enter__()


def test_verify_zip_names_a_truncated_or_flipped_file(tmp_path):
    path = tmp_path / "c.pt"
    torch.save({"w": torch.arange(256.0)}, path)
    verify_zip(path, "checkpoint")
    data = bytearray(path.read_bytes())
    at = data.find(np.arange(256, dtype=np.float32)[100:102].tobytes())
    data[at] ^= 1  # torch.load would read 100.00001 here without complaint
    (tmp_path / "flipped.pt").write_bytes(data)
    with pytest.raises(ValueError, match=r"checkpoint '.*flipped.pt' is truncated or corrupt \(bad CRC-32"):
        verify_zip(tmp_path / "flipped.pt", "checkpoint")
    (tmp_path / "cut.pt").write_bytes(path.read_bytes()[: len(data) // 2])
    with pytest.raises(ValueError, match=r"'.*cut.pt' is truncated or corrupt \(BadZipFile"):
        verify_zip(tmp_path / "cut.pt", "checkpoint")


def store(tmp_path, n=10, chunk_size=4, config=None):
    return ChunkStore(tmp_path / "run", sample_seeds(7, torch.arange(n)), chunk_size, config or {"steps": 3})


def fill(s: ChunkStore) -> np.ndarray:
    x = torch.randn(len(s.seeds), 2, 3, generator=torch.Generator().manual_seed(0))
    for c, span in enumerate(s.spans):
        s.write(c, x[span.start : span.stop], {"nfe": c})
    return x.numpy()


def test_assembly_streams_exactly_numpy_save(tmp_path):
    s = store(tmp_path)
    s.prepare()
    x = fill(s)
    path, infos = s.assemble()
    ref = io.BytesIO()
    np.save(ref, x)
    assert path.read_bytes() == ref.getvalue() and infos == [{"nfe": 0}, {"nfe": 1}, {"nfe": 2}]
    assert [s.problem(c) for c in range(3)] == [None] * 3 and s.samples_on_disk() == 10


def test_truncated_flipped_and_foreign_chunks_are_found(tmp_path):
    s = store(tmp_path)
    s.prepare()
    fill(s)
    one, two = s.chunk_path(1), s.chunk_path(2)
    one.write_bytes(one.read_bytes()[:-200])  # killed mid-write, or cut by hand
    data = bytearray(two.read_bytes())
    data[200] ^= 0x10  # inside samples.npy's data
    two.write_bytes(data)
    assert "BadZipFile" in s.problem(1) and "bad CRC-32 in member 'samples.npy'" in s.problem(2)
    other = ChunkStore(tmp_path / "other", sample_seeds(8, torch.arange(10)), 4, {"steps": 3})
    other.prepare()
    fill(other)
    os.replace(other.chunk_path(0), s.chunk_path(0))
    assert s.problem(0) == "holds samples of other seeds"
    s.chunk_path(0).unlink()
    assert s.problem(0) == "missing"
    with zipfile.ZipFile(s.chunk_path(0), "w") as zf:  # a whole archive without the samples
        zf.writestr("seeds.npy", b"")
    assert "KeyError" in s.problem(0) or "ValueError" in s.problem(0)
    with pytest.raises(ValueError, match="chunk 1 must hold 4 samples"):
        s.write(1, torch.zeros(3, 2, 3))
    with pytest.raises(TypeError, match="numpy dtype"):
        s.write(1, torch.zeros(4, 2, 3, dtype=torch.bfloat16))


def test_manifest_pins_the_run_and_names_what_changed(tmp_path):
    s = store(tmp_path)
    s.prepare()
    manifest = json.loads((tmp_path / "run" / MANIFEST).read_text())
    assert manifest["num_samples"] == 10 and manifest["chunk_size"] == 4 and manifest["config"] == {"steps": 3}
    assert len(manifest["seeds_sha256"]) == 64 and manifest["sdesolve"]
    store(tmp_path).prepare()  # the same run: accepted
    with pytest.raises(ValueError, match=r"other arguments \(steps: 3 → 4\); rerun with the same arguments"):
        store(tmp_path, config={"steps": 4}).prepare()
    with pytest.raises(ValueError, match=r"chunk_size: 4 → 5\)"):
        store(tmp_path, chunk_size=5).prepare()
    with pytest.raises(ValueError, match=r"num_samples: 10 → 11\)"):  # the seeds' digest is left out of the message
        store(tmp_path, n=11).prepare()
    fill(s)
    changed = store(tmp_path, config={"steps": 4})
    changed.prepare(overwrite=True)  # deletes the other run's chunks, writes this run's manifest
    assert (
        changed.problem(0) == "missing"
        and json.loads((tmp_path / "run" / MANIFEST).read_text())["config"]["steps"] == 4
    )


def test_prepare_removes_temporaries_and_refuses_chunks_without_a_manifest(tmp_path):
    s = store(tmp_path)
    s.prepare()
    fill(s)
    stale = tmp_path / "run" / CHUNKS / ".chunk-000001.npz.4242.0badc0de.tmp"
    stale.write_bytes(b"half a chunk")
    user = tmp_path / "run" / CHUNKS / "notes.tmp"
    user.write_text("mine")
    s.prepare()
    assert not stale.exists() and user.exists()  # only sdesolve's own temporaries are removed
    (tmp_path / "run" / MANIFEST).unlink()
    with pytest.raises(ValueError, match="3 chunk file.* but no manifest.json"):
        s.prepare()
    with pytest.raises(ValueError, match="not visible from this process"):
        s.check_manifest()


def test_config_diff_flattens_and_normalises():
    assert config_diff({"a": (1, 2), "m": {"x": 1}}, {"a": [1, 2], "m": {"x": 1}}) == []
    assert config_diff({"m": {"x": 1}}, {"m": {"x": 2, "y": 0}}) == ["m.x: 1 → 2", "m.y: (absent) → 0"]
    (long,) = config_diff({"s": "a" * 100}, {"s": "b"})
    assert long == 's: "' + "a" * 66 + '... → "b"'  # 70 characters at most
