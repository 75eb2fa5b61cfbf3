"""Fixtures shared by the tests of the scripts in evals/."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """A randomly initialised "tiny" HartVLM (32 px), saved once for every eval test."""
    from hart_vlm import HartVLM

    folder = tmp_path_factory.mktemp("tiny_model")
    torch.manual_seed(0)
    HartVLM.from_preset("tiny").save_pretrained(folder)
    return folder
