"""Weights and their record saved as a verified pair (`sdesolve.weights`), through atomic writes (`sdesolve.durable`)."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from sdesolve import durable, weights
from sdesolve.digits import WEIGHTS_PATH, load_digits_model
from sdesolve.weights import SHA256_KEY, load_weights, save_weights


def _model(seed: int) -> dict[str, nn.Module]:
    torch.manual_seed(seed)
    return {"net": nn.Linear(3, 2), "head": nn.Linear(2, 1)}


def test_round_trip_gives_the_float16_weights_and_the_record(tmp_path):
    saved, loaded = _model(0), _model(1)
    save_weights(tmp_path / "m.safetensors", saved, {"steps": 3})
    info = load_weights(tmp_path / "m.safetensors", loaded)
    assert info["steps"] == 3 and len(info[SHA256_KEY]) == 64
    for name in saved:
        for (k, a), b in zip(saved[name].state_dict().items(), loaded[name].state_dict().values(), strict=True):
            assert torch.equal(a.half().float(), b), k  # float16 on disk: exactly the rounded values come back


def test_a_save_interrupted_between_record_and_weights_is_refused(tmp_path, monkeypatch):
    path = tmp_path / "m.safetensors"
    save_weights(path, _model(0), {"run": 1})
    writes = []

    def dies_before_the_weights(target, data):
        writes.append(target)
        if len(writes) == 2:  # the record is written, the process dies before the weights
            raise KeyboardInterrupt
        real_write(target, data)

    real_write = durable.atomic_write
    monkeypatch.setattr(weights, "atomic_write", dies_before_the_weights)
    with pytest.raises(KeyboardInterrupt):
        save_weights(path, _model(1), {"run": 2})
    assert json.loads(path.with_suffix(".json").read_text())["run"] == 2  # new record, old weights
    with pytest.raises(ValueError, match="does not describe the weights"):
        load_weights(path, _model(2))


@pytest.mark.parametrize("keep", [0, 100])
def test_truncated_or_empty_weights_are_a_value_error_naming_the_file(tmp_path, keep):
    path = tmp_path / "m.safetensors"
    save_weights(path, _model(0), {})
    record = json.loads(path.with_suffix(".json").read_text())
    record.pop(SHA256_KEY)  # a record from before the pair was verified: the reader itself must refuse the file
    path.with_suffix(".json").write_text(json.dumps(record))
    path.write_bytes(path.read_bytes()[:keep])
    with pytest.raises(ValueError, match="m.safetensors.*truncated"):
        load_weights(path, _model(1))


def test_missing_or_corrupt_record_names_it(tmp_path):
    path = tmp_path / "m.safetensors"
    save_weights(path, _model(0), {})
    path.with_suffix(".json").write_text('{"steps": ')
    with pytest.raises(ValueError, match="m.json.*truncated or corrupt"):
        load_weights(path, _model(1))
    path.with_suffix(".json").unlink()
    with pytest.raises(FileNotFoundError, match="m.json"):
        load_weights(path, _model(1))


def test_a_failed_atomic_write_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "a.json"
    durable.atomic_write(target, "old")
    with pytest.raises(RuntimeError), durable.atomic_open(target, "w") as f:
        f.write("half of the new")
        raise RuntimeError("killed")
    assert target.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["a.json"]


def test_the_shipped_weights_match_their_records():
    record = json.loads(WEIGHTS_PATH.with_suffix(".json").read_text())
    assert SHA256_KEY in record
    assert load_digits_model().info[SHA256_KEY] == record[SHA256_KEY]  # verified on load
