"""The anomaly tests share two CPU cores with the rest of the suite: one torch thread each."""

import pytest
import torch


@pytest.fixture(autouse=True, scope="session")
def _one_thread():
    torch.set_num_threads(1)
