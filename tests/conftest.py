"""Shared fixtures: the shipped default model and tiny random models of every supported family."""

from __future__ import annotations

import pytest

from model_support import TINY_FAMILIES, tiny_model
from sss_core.models import DEFAULT_MODEL, LoadedModel, load_model


@pytest.fixture(scope="session")
def default_lm() -> LoadedModel:
    """The shipped default model on the CPU."""
    return load_model(DEFAULT_MODEL, device="cpu")


@pytest.fixture(scope="session", params=TINY_FAMILIES)
def tiny_lm(request, default_lm) -> LoadedModel:
    return tiny_model(request.param, default_lm.tok)
