"""Tokenizers that return more than input_ids and attention_mask (issue 18.3).

Pythia's and Falcon's tokenizers also return ``token_type_ids``, which no causal LM's forward takes;
``generate`` refuses them. Every call of the model or of ``generate`` in sss_core and app passes only
what the model accepts: checked on a tokenizer that returns token_type_ids, and over the source.
"""

from __future__ import annotations

import ast
import copy
from pathlib import Path

import pytest

from sss_core.models import LoadedModel

ROOT = Path(__file__).resolve().parents[1]


def with_extras(lm: LoadedModel) -> LoadedModel:
    """``lm`` with a copy of its tokenizer that also returns token_type_ids (as Pythia's and Falcon's do)."""
    tok = copy.deepcopy(lm.tok)
    tok.model_input_names = ["input_ids", "token_type_ids", "attention_mask"]
    assert "token_type_ids" in tok("The capital of France is")
    return LoadedModel(lm.model, tok, lm.spec, lm.name)


@pytest.fixture(scope="module")
def extras_lm(default_lm) -> LoadedModel:
    """The shipped model with a tokenizer that returns token_type_ids."""
    return with_extras(default_lm)


def test_greedy_answer_of_a_neighbour_ignores_token_type_ids(tiny_lm):
    # NeoX and Llama take no token_type_ids (generate refused them); GPT-2 takes them and would add
    # the embedding of token 0 to every position: either way the answer must be the plain one
    from sss_core.evaluation.presets import greedy_answer
    prompt = "The capital of Spain is"
    assert greedy_answer(with_extras(tiny_lm), prompt) == greedy_answer(tiny_lm, prompt)


def test_edit_with_a_neighbour_runs_with_token_type_ids(extras_lm):
    from sss_core.editors import make_editor
    from sss_core.evaluation.metrics import run_edit
    from sss_core.evaluation.presets import case_for_request
    from sss_core.types import EditRequest
    request = EditRequest("My favourite colour is", "green")
    case = case_for_request(request, ["The colour I like best is"], ["The capital of Spain is"], extras_lm)
    result = run_edit(extras_lm.model, extras_lm.tok, make_editor("ft-l", steps=2), case)
    assert [p.probe.group for p in result.probes].count("neighbour") == 1
    assert result.metrics["locality"] == result.metrics["locality"]  # defined (not NaN): the neighbour was scored


def _unpacked_model_calls(path: Path) -> list[str]:
    """Calls ``X.generate(**kw)`` / ``model(**kw)`` / ``X.model(**kw)`` in a source file (not in docstrings)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if not isinstance(node, ast.Call) or not any(k.arg is None for k in node.keywords):
            continue
        func = node.func
        name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
        if name in ("generate", "model", "forward"):
            found.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    return found


def test_no_model_or_generate_call_unpacks_a_tokenizer_output():
    files = [*(ROOT / "sss_core").rglob("*.py"), *(ROOT / "app").rglob("*.py"), ROOT / "streamlit_app.py"]
    offenders = [hit for f in files for hit in _unpacked_model_calls(f)]
    assert not offenders, f"pass input_ids / attention_mask explicitly: {offenders}"
