"""ROME and MEMIT: the closed-form maths, the subject lookup, edits on every family and on the
default model, sequential edits, bit-exact revert, and the key-statistics cache."""

from __future__ import annotations

import pytest
import torch

from model_support import assert_bit_identical, state_copy
from sss_core.editors import make_editor
from sss_core.editors import _rank_one as R1
from sss_core.editors import stats
from sss_core.editors.memit import MEMIT, MEMITConfig
from sss_core.editors.rome import ROME, ROMEConfig
from sss_core.errors import RequestError
from sss_core.evaluation.metrics import teacher_forced, top_k
from sss_core.types import EditRequest
from sss_core.world.records import world_cases

FRANCE = EditRequest("The capital of France is", "Rome", subject="France")
SPAIN = EditRequest("The capital of Spain is", "Berlin", subject="Spain")
N_SAMPLES = 2000  # key statistics from part of the world corpus keeps the tests fast


@pytest.fixture(scope="session")
def stats_dir(tmp_path_factory):
    return str(tmp_path_factory.mktemp("stats"))


def accuracy(model, tok, requests) -> float:
    """Mean teacher-forced token accuracy of the requests' new targets."""
    preds = teacher_forced(model, tok, [r.prompt for r in requests], [r.target_new for r in requests])
    return sum(sum(a == b for a, b in zip(p.target_ids, p.argmax_ids)) / len(p.target_ids) for p in preds) / len(preds)


# --- maths and lookup ---------------------------------------------------------------------------

def test_rank_one_update_writes_the_pair_exactly_and_least_squares_agrees():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(16, 16, generator=g, dtype=torch.float64)
    C = a @ a.T / 16 + 0.1 * torch.eye(16, dtype=torch.float64)
    k, r = torch.randn(16, generator=g), torch.randn(8, generator=g)
    dW = R1.rank_one_update(C, k, r)
    assert torch.allclose(dW @ k.double(), r.double(), atol=1e-9)
    assert torch.linalg.matrix_rank(dW) == 1
    # with one key and a vanishing weight on C, least squares meets the same constraint
    ls = R1.least_squares_update(C, k[None], r[None], weight=1e-9)
    assert torch.allclose(ls @ k.double(), r.double(), atol=1e-5)
    # a large weight on C keeps the update small
    assert R1.least_squares_update(C, k[None], r[None], weight=1e6).norm() < 1e-3 * dW.norm()


def test_subject_lookup_finds_the_last_subject_token_after_a_prefix(default_lm):
    tok = default_lm.tok
    prompt = "The capital of Bosnia and Herzegovina is"
    idx = R1.subject_last_index(tok, prompt, "Bosnia and Herzegovina")
    ids = tok(prompt)["input_ids"]
    assert tok.decode(ids[:idx + 1]) == "The capital of Bosnia and Herzegovina"
    prefix = "Bosnia is a country. "  # an earlier occurrence inside the prefix must be skipped
    j = R1.subject_last_index(tok, prefix + prompt, "Bosnia and Herzegovina", start=len(prefix))
    assert tok.decode(tok(prefix + prompt)["input_ids"][:j + 1]) == prefix + "The capital of Bosnia and Herzegovina"
    with pytest.raises(RequestError, match="does not occur"):
        R1.subject_last_index(tok, prompt, "Spain")


def test_context_prefixes_are_deterministic_and_end_a_sentence(default_lm):
    a = R1.context_prefixes(default_lm.model, default_lm.tok, 3, 5, seed=0)
    assert a == R1.context_prefixes(default_lm.model, default_lm.tok, 3, 5, seed=0)
    assert a[0] == "" and len(a) == 4 and all(p.endswith(". ") for p in a[1:])


# --- every family -------------------------------------------------------------------------------

@torch.no_grad()
def mlp_out_at_subject(lm, requests, layer: int = 0) -> torch.Tensor:
    """(n, d_model): the MLP output of ``layer`` at each request's last subject token (bare prompt)."""
    rows = R1.build_rows(lm.model, lm.tok, requests, [""], None)
    name = lm.spec.mlp_out_name(lm.model, layer)
    return R1.at_subject(R1.record(lm.model, rows, outputs_of=[name])[1][name], rows)


def test_rome_and_memit_write_the_optimised_value_on_every_family(tiny_lm, stats_dir):
    # Random 2-block models predict almost uniformly, so "the target becomes top-1" is not a
    # fair test there; what must hold on every family is that the update writes what was
    # optimised: with no prefixes, the MLP output at the subject moves by exactly ||delta||.
    # (Block 1 is the last block: a change at the subject token there cannot reach later tokens.)
    model, tok = tiny_lm.model, tiny_lm.tok
    saved = state_copy(model)
    common = dict(mom2_text="world", mom2_n_samples=300, stats_dir=stats_dir, n_prefixes=0, v_steps=5)
    before = mlp_out_at_subject(tiny_lm, [FRANCE, SPAIN])
    rome = ROME(ROMEConfig(layer=0, **common)).edit(model, tok, [FRANCE])
    memit = MEMIT(MEMITConfig(layers=(0,), mom2_update_weight=1e-3, **common)).edit(model, tok, [FRANCE, SPAIN])
    assert_bit_identical(model, saved)  # computing an edit leaves the model as it was
    for edit, n, tol in ((rome, 1, 1e-4), (memit, 2, 1e-2)):
        assert set(edit.new) == {tiny_lm.spec.mlp_out_name(model, 0) + ".weight"}
        with edit:
            moved = (mlp_out_at_subject(tiny_lm, [FRANCE, SPAIN][:n]) - before[:n]).norm(dim=-1)
        wanted = torch.tensor(edit.info["delta_norms"])
        assert (wanted > 0).all()
        assert torch.allclose(moved, wanted, rtol=tol), (moved, wanted)
        assert_bit_identical(model, saved)


def test_causal_mask_forward_matches_the_plain_forward(tiny_lm):
    ids = tiny_lm.tok(["The capital of France is Paris"], return_tensors="pt")["input_ids"]
    with torch.no_grad():
        plain = tiny_lm.model(input_ids=ids).logits
        assert torch.equal(R1.forward(tiny_lm.model, ids).logits, plain)


# --- the default model --------------------------------------------------------------------------

def test_rome_edit_takes_effect_and_reverts_bit_exactly(default_lm, stats_dir):
    model, tok = default_lm.model, default_lm.tok
    saved = state_copy(model)
    edit = make_editor("rome", stats_dir=stats_dir, mom2_n_samples=N_SAMPLES).edit(model, tok, [FRANCE])
    assert_bit_identical(model, saved)
    with edit:
        assert top_k(model, tok, FRANCE.prompt, 1)[0][0] == tok.decode(tok(" Rome")["input_ids"][:1])
        assert accuracy(model, tok, [FRANCE]) == 1.0
    assert_bit_identical(model, saved)


def test_rome_sequential_edits_keep_the_earlier_ones(default_lm, stats_dir):
    model, tok = default_lm.model, default_lm.tok
    saved = state_copy(model)
    editor = make_editor("rome", stats_dir=stats_dir, mom2_n_samples=N_SAMPLES)
    both = editor.edit(model, tok, [FRANCE, SPAIN])  # one call, applied one after another
    with both:
        assert accuracy(model, tok, [FRANCE]) == 1.0 and accuracy(model, tok, [SPAIN]) == 1.0
    first = editor.edit(model, tok, [FRANCE])  # two calls, the second computed on top of the first
    with first:
        second = editor.edit(model, tok, [SPAIN])
        with second:
            assert accuracy(model, tok, [FRANCE]) == 1.0 and accuracy(model, tok, [SPAIN]) == 1.0
        assert accuracy(model, tok, [FRANCE]) == 1.0
    assert_bit_identical(model, saved)


def test_memit_batch_of_ten(default_lm, stats_dir):
    model, tok = default_lm.model, default_lm.tok
    saved = state_copy(model)
    requests = [c.request for c in world_cases(split="test")[:10]]
    edit = make_editor("memit", stats_dir=stats_dir, mom2_n_samples=N_SAMPLES).edit(model, tok, requests)
    assert len(edit.new) == len(MEMITConfig().layers)
    with edit:
        assert accuracy(model, tok, requests) >= 0.9
    assert_bit_identical(model, saved)


@pytest.mark.parametrize("name", ["rome", "memit"])
def test_subject_must_be_in_the_prompt(default_lm, name, stats_dir):
    editor = make_editor(name, stats_dir=stats_dir, mom2_n_samples=N_SAMPLES)
    with pytest.raises(RequestError, match="does not occur"):
        editor.edit(default_lm.model, default_lm.tok, [EditRequest("The capital of France is", "Rome", "Spain")])
    with pytest.raises(RequestError, match="needs the subject"):
        editor.edit(default_lm.model, default_lm.tok, [EditRequest("The capital of France is", "Rome")])


# --- key statistics -----------------------------------------------------------------------------

def test_key_statistics_are_cached_and_reused(default_lm, tmp_path, monkeypatch):
    model, tok = default_lm.model, default_lm.tok
    C = stats.key_second_moment(model, tok, 0, n_samples=200, cache_dir=tmp_path)
    files = list(tmp_path.glob("*.safetensors"))
    assert len(files) == 1 and C.shape[0] == C.shape[1] and torch.allclose(C, C.T)
    mtime = files[0].stat().st_mtime_ns

    def no_recompute(*args, **kwargs):
        raise AssertionError("the cached statistics were recomputed")

    monkeypatch.setattr(stats, "_compute_moments", no_recompute)
    assert torch.equal(stats.key_second_moment(model, tok, 0, n_samples=200, cache_dir=tmp_path), C)
    assert files[0].stat().st_mtime_ns == mtime
    with pytest.raises(AssertionError, match="recomputed"):  # another sample count is another entry
        stats.key_second_moment(model, tok, 0, n_samples=100, cache_dir=tmp_path)


def test_key_statistics_need_text_for_other_models(tiny_lm, tmp_path):
    if tiny_lm.name != "tiny-gpt2":
        pytest.skip("one family is enough")
    with pytest.raises(RequestError, match="mom2_text"):
        stats.key_second_moment(tiny_lm.model, tiny_lm.tok, 0, cache_dir=tmp_path)
    text = tmp_path / "samples.txt"
    text.write_text("The capital of France is Paris.\n\nBerlin is a city in Germany.\n")
    C = stats.key_second_moment(tiny_lm.model, tiny_lm.tok, 0, texts=text, cache_dir=tmp_path)
    from_list = stats.key_second_moment(tiny_lm.model, tiny_lm.tok, 0, cache_dir=tmp_path,
                                        texts=["The capital of France is Paris.", "Berlin is a city in Germany."])
    assert torch.allclose(C, from_list, atol=1e-6)


def test_memit_spreads_the_update_over_several_layers(default_lm, stats_dir):
    from sss_core.evaluation.metrics import answer_probability
    model, tok = default_lm.model, default_lm.tok
    saved = state_copy(model)
    requests = [FRANCE, SPAIN]
    before = answer_probability(model, tok, [r.prompt for r in requests], [r.target_new for r in requests])
    edit = MEMIT(MEMITConfig(layers=(0, 1), stats_dir=stats_dir, mom2_n_samples=N_SAMPLES)).edit(model, tok, requests)
    assert set(edit.new) == {default_lm.spec.mlp_out_name(model, layer) + ".weight" for layer in (0, 1)}
    assert all(norm > 0 for norm in edit.delta_norms().values())  # both layers take a share
    with edit:
        after = answer_probability(model, tok, [r.prompt for r in requests], [r.target_new for r in requests])
    assert all(a > 2 * b for a, b in zip(after, before)), (before, after)
    assert_bit_identical(model, saved)
