import os

import pytest
import torch

from vitlab.errors import VitlabError
from vitlab.io import atomic_torch_save, safe_torch_load


class _Payload:
    """Unpickling this object would create a marker file: what a malicious checkpoint does."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_malicious_pickle_is_refused_and_runs_nothing(tmp_path):
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pt"
    torch.save({"format": "vitlab-checkpoint-v1", "model": _Payload(str(marker))}, evil)
    assert not marker.exists()
    with pytest.raises(VitlabError, match="refused to load"):
        safe_torch_load(evil)
    assert not marker.exists()


def test_truncated_file_is_detected(tmp_path):
    good = tmp_path / "good.pt"
    atomic_torch_save({"w": torch.randn(1000)}, good)
    data = good.read_bytes()
    (tmp_path / "cut.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(VitlabError, match="truncated"):
        safe_torch_load(tmp_path / "cut.pt")


def test_failed_save_keeps_the_previous_file(tmp_path):
    path = tmp_path / "ckpt.pt"
    atomic_torch_save({"v": torch.tensor(1)}, path)

    class Unsaveable:
        def __reduce__(self):
            raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        atomic_torch_save({"v": Unsaveable()}, path)
    assert safe_torch_load(path)["v"].item() == 1
    assert os.listdir(tmp_path) == ["ckpt.pt"]  # no temporary file left behind
