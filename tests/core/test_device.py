"""Device choice and CPU threads."""

from __future__ import annotations

import pytest
import torch

from twinflow.core.device import configure_cpu_threads, select_device


@pytest.fixture
def restore_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def test_cpu_threads_come_down_to_the_allotment_and_never_go_up(monkeypatch, restore_threads):
    torch.set_num_threads(2)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # the job's share, as Snakemake sets it
    assert configure_cpu_threads() == 1
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    assert configure_cpu_threads() == 1  # a caller's one thread stands
    monkeypatch.delenv("OMP_NUM_THREADS")
    assert configure_cpu_threads() == 1
    assert configure_cpu_threads(2) == 2  # an explicit count is set as given


def test_an_unavailable_accelerator_falls_back_to_the_cpu(capsys):
    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present")
    assert select_device("cuda") == torch.device("cpu")
    assert "cuda requested but not available" in capsys.readouterr().out
