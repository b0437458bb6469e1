"""How the editors meet their input: the target's leading space, rows longer than the context, the
subject's place, settings that name a part of the model, several edits of one subject in one
MEMIT batch, and ROME/MEMIT's own forward pass against each family's forward."""

from __future__ import annotations

import logging

import pytest
import torch
from model_support import ATTENTION_VARIANTS, assert_bit_identical, state_copy, tiny_model

from sss_core.editors import EDITORS, make_editor, stats
from sss_core.editors import _rank_one as R1
from sss_core.errors import RequestError
from sss_core.evaluation.metrics import teacher_forced
from sss_core.evaluation.runners import batch_edits, sequential_edits, single_edits
from sss_core.text import max_positions, right_pad
from sss_core.types import EditCase, EditRequest, Probe

FRANCE = EditRequest("The capital of France is", "Rome", subject="France")
N_SAMPLES = 2000  # key statistics from part of the world corpus keep the tests fast
NAMES = list(EDITORS)


@pytest.fixture(scope="module")
def stats_dir(tmp_path_factory):
    return str(tmp_path_factory.mktemp("stats"))


def _fast(name: str, stats_dir: str) -> dict:
    """Settings that keep ROME/MEMIT's key statistics small in these tests."""
    fields = EDITORS[name].config_cls.__dataclass_fields__
    return {"stats_dir": stats_dir, "mom2_n_samples": N_SAMPLES} if "stats_dir" in fields else {}


def _long_prompt(tok, n_tokens: int) -> str:
    """A prompt about France of about ``n_tokens`` tokens."""
    words = ["The", "capital", "of", "the", "old", "country", "of"]
    prompt = " ".join(words * (n_tokens // 4 + 10))
    ids = tok(prompt)["input_ids"][:n_tokens - 3]
    return tok.decode(ids) + " of France is"


# --- 15.1: " Rome" and "Rome" give the same edit ---------------------------------------------------

@pytest.mark.parametrize("name", NAMES)
def test_a_leading_space_in_the_target_gives_the_same_edit(default_lm, name, stats_dir):
    model, tok = default_lm.model, default_lm.tok
    editor = make_editor(name, **_fast(name, stats_dir))
    plain = editor.edit(model, tok, [FRANCE])
    spaced = make_editor(name, **_fast(name, stats_dir)).edit(
        model, tok, [EditRequest("The capital of France is ", " Rome", subject=" France")])
    if hasattr(plain, "new"):
        for pname, value in plain.new.items():
            assert torch.allclose(spaced.new[pname], value, atol=1e-6), f"{name}: {pname} differs"
    with spaced:
        pred = teacher_forced(spaced.model, tok, [FRANCE.prompt], [" Rome"])[0]
    assert tok.decode(list(pred.target_ids)) == " Rome"  # the target's tokens, no lone space
    if name.startswith(("ft-l", "rome", "memit")):
        assert pred.argmax_ids == pred.target_ids  # the edit holds, and it is Rome, not a space


def test_metrics_read_a_spaced_target_as_the_plain_one(default_lm):
    tok = default_lm.tok
    a = teacher_forced(default_lm.model, tok, ["The capital of France is"], ["Rome"])
    b = teacher_forced(default_lm.model, tok, ["The capital of France is "], [" Rome"])
    assert a == b


# --- 15.2: rows longer than the context -------------------------------------------------------------

@pytest.mark.parametrize("name", NAMES)
def test_a_row_longer_than_the_context_is_a_request_error(default_lm, name, stats_dir):
    """Seven tokens short of the context, prompt + target fit the model alone, but not behind ROME's
    context prefixes or SERAC's edit text: those editors refuse it clearly, the others edit it.
    Six tokens past the context fit no editor."""
    model, tok = default_lm.model, default_lm.tok
    limit = max_positions(model)
    saved = state_copy(model)
    long = EditRequest(_long_prompt(tok, limit - 7), "Rome", subject="France")
    settings = {**_fast(name, stats_dir), **({"n_prefixes": 2} if name == "memit" else {})}
    grows = name.startswith(("rome", "memit", "serac"))  # rows longer than prompt + target
    try:
        edit = make_editor(name, **settings).edit(model, tok, [long])
        with edit:  # SERAC's memory reads the edit text + input when asked
            teacher_forced(edit.model, tok, [long.prompt], [long.target_new])
        assert not grows, f"{name} built rows past the context without a clear error"
    except RequestError as exc:
        assert grows and "tokens" in str(exc), exc
    too_long = EditRequest(_long_prompt(tok, limit + 6), "Rome", subject="France")
    with pytest.raises(RequestError, match="tokens"):
        make_editor(name, **_fast(name, stats_dir)).edit(model, tok, [too_long])
    assert_bit_identical(model, saved)


def test_context_prefixes_longer_than_the_context_are_refused(default_lm):
    with pytest.raises(RequestError, match="prefix_length"):
        R1.context_prefixes(default_lm.model, default_lm.tok, 1, max_positions(default_lm.model) + 16)


def _cases(tok) -> list[EditCase]:
    ok = EditCase(FRANCE, (Probe("The capital of Italy is", "Rome", "neighbour"),))
    long = EditCase(EditRequest(_long_prompt(tok, 300), "Rome", subject="France", case_id="long"))
    spain = EditCase(EditRequest("The capital of Spain is", "Berlin", subject="Spain", case_id="spain"))
    return [EditCase(EditRequest(ok.request.prompt, "Rome", "France", case_id="france"), ok.probes), long, spain]


@pytest.mark.parametrize("runner", ["single", "sequential", "batch"])
def test_the_bench_records_a_too_long_case_as_failed_and_goes_on(default_lm, runner, stats_dir):
    model, tok = default_lm.model, default_lm.tok
    saved = state_copy(model)
    editor = make_editor("memit", **_fast("memit", stats_dir))
    cases = _cases(tok)
    if runner == "single":
        outs = list(single_edits(model, tok, editor, cases, seed=0, with_lambda=True))
    elif runner == "sequential":
        outs = list(sequential_edits(model, tok, editor, cases, seed=0, with_lambda=False))
    else:
        outs = list(batch_edits(model, tok, editor, cases, seed=0))
    by_case: dict[str, list] = {}
    for o in outs:
        by_case.setdefault(o.key.case_id, []).append(o)
    assert set(by_case) == {"france", "long", "spain"}
    for o in by_case["long"]:
        assert o.result is None and o.error.startswith("RequestError") and "tokens" in o.error
        assert o.to_json()["error"] == o.error  # the store's record of a failed case
    for cid in ("france", "spain"):
        assert all(o.error is None and o.result.metrics["reliability"] == 1.0 for o in by_case[cid])
    assert_bit_identical(model, saved)


# --- 15.4: several edits of one subject in one MEMIT batch -------------------------------------------

def test_memit_keeps_every_edit_of_one_subject_and_reports_the_real_nll(default_lm, stats_dir, caplog):
    model, tok = default_lm.model, default_lm.tok
    requests = [EditRequest("The capital of France is", "Rome", subject="France"),
                EditRequest("The official language of France is", "Italian", subject="France")]
    edit = make_editor("memit", **_fast("memit", stats_dir)).edit(model, tok, requests)
    with edit:
        preds = teacher_forced(model, tok, [r.prompt for r in requests], [r.target_new for r in requests])
        nll = R1.target_nll_after(model, R1.build_rows(model, tok, requests, [""], None))
    for r, p in zip(requests, preds):
        assert p.argmax_ids == p.target_ids, f"{r.prompt!r} -> {r.target_new!r} did not hold"
    assert edit.info["v_nll"] == pytest.approx(nll, abs=1e-4)  # measured after the whole batch
    assert all(x < 0.5 for x in edit.info["v_nll"])
    assert edit.info["warnings"] == []
    with caplog.at_level(logging.WARNING):
        conflict = make_editor("memit", **_fast("memit", stats_dir)).edit(
            model, tok, [FRANCE, EditRequest("The capital of France is ", " Berlin", subject="France")])
    assert len(conflict.info["warnings"]) == 1 and "conflicting targets" in conflict.info["warnings"][0]
    assert "conflicting targets" in caplog.text


# --- 18.1: where the subject is ----------------------------------------------------------------------

def test_rows_put_the_subject_where_the_record_puts_it(default_lm):
    tok = default_lm.tok
    template = "The Indian Ocean lies south of {}, whose capital is"
    prompt = template.format("India")
    for request in (EditRequest(prompt, "Paris", subject="India"), EditRequest(prompt, "Paris", subject=" India"),
                    EditRequest(prompt, "Paris", subject="India", template=template)):
        rows = R1.build_rows(default_lm.model, tok, [request], ["", "It is. "], "{} is a")
        for r, prefix in enumerate(["", "It is. "]):
            ids = rows.batch.input_ids[r].tolist()
            assert tok.decode(ids[:int(rows.lookup[r]) + 1]) == prefix + "The Indian Ocean lies south of India"
        kl = rows.n_rows - 1
        assert tok.decode(rows.batch.input_ids[kl, :int(rows.lookup[kl]) + 1].tolist()) == "India"
    with pytest.raises(RequestError, match="template"):
        EditRequest(prompt, "Paris", subject="India", template="{} lies south").validate()


# --- 18.2: settings that name a part of the model ----------------------------------------------------

@pytest.mark.parametrize("name,setting", [("ft-l", {"layer": 5}), ("ft-l+sss", {"layer": -5}),
                                          ("rome", {"layer": 5}), ("rome", {"layer": -5}),
                                          ("memit", {"layers": 5}), ("memit", {"layers": (0, 7)}),
                                          ("memit", {"layers": (0, -4)}), ("memit", {"layers": "0"}),
                                          ("ft-l", {"layer": 1.5})])
def test_a_block_the_model_does_not_have_is_refused_before_any_work(default_lm, name, setting, stats_dir,
                                                                     monkeypatch):
    def no_work(*args, **kwargs):
        raise AssertionError("work started before the settings were checked")

    monkeypatch.setattr(stats, "_compute_moments", no_work)
    monkeypatch.setattr(R1, "build_rows", no_work)
    with pytest.raises(RequestError, match="layer"):
        make_editor(name, **_fast(name, stats_dir), **setting).edit(default_lm.model, default_lm.tok, [FRANCE])


@pytest.mark.parametrize("name,setting,info_key", [("ft-l", {"layer": -1}, "layer"), ("rome", {"layer": -1}, "layer"),
                                                   ("memit", {"layers": -1}, "layers")])
def test_negative_blocks_count_from_the_end_in_every_editor(default_lm, name, setting, info_key, stats_dir):
    model = default_lm.model
    last = default_lm.spec.n_layers(model) - 1
    edit = make_editor(name, **_fast(name, stats_dir), **setting).edit(model, default_lm.tok, [FRANCE])
    assert set(edit.new) == {default_lm.spec.mlp_out_name(model, last) + ".weight"}
    assert edit.info[info_key] in (last, [last])  # the non-negative index it edited


def test_key_statistics_of_block_minus_one_are_those_of_the_last_block(default_lm, stats_dir):
    model, tok = default_lm.model, default_lm.tok
    last = default_lm.spec.n_layers(model) - 1
    a = stats.key_second_moments(model, tok, [-1], n_samples=200, cache_dir=stats_dir)
    b = stats.key_second_moments(model, tok, [last], n_samples=200, cache_dir=stats_dir)
    assert list(a) == [last] and torch.equal(a[last], b[last])
    with pytest.raises(RequestError, match="layer=9"):
        stats.key_second_moments(model, tok, [9], n_samples=200, cache_dir=stats_dir)


def test_trained_editors_check_their_blocks_before_training(default_lm, tmp_path):
    from sss_core.editors import train_config
    from sss_core.world.records import world_cases
    cases = world_cases(split="train")[:4]
    for name, setting in (("mend", {"layers": (7,)}), ("mend", {"layers": (-1, 3)}), ("serac", {"cf_layers": (9,)}),
                          ("serac", {"feature_layers": (2, 6)})):
        with pytest.raises(RequestError, match="layers"):
            EDITORS[name].trainer(default_lm, cases, tmp_path / name, train_config(name, steps=1, **setting),
                                  progress=False)
        assert not (tmp_path / name).exists() or not any((tmp_path / name).iterdir())


def test_the_cli_exits_2_with_one_line_for_a_missing_block(capsys):
    from sss_core.cli import main
    with pytest.raises(SystemExit) as exit_info:
        main(["edit", "--editor", "rome", "--prompt", "The capital of France is", "--subject", "France",
              "--target", "Rome", "--set", "layer=5", "--device", "cpu"])
    assert exit_info.value.code == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "layer=5 does not exist" in errors[0]


# --- 18.4: ROME/MEMIT's own forward is the model's forward -------------------------------------------

@pytest.mark.parametrize("variant", list(ATTENTION_VARIANTS))
def test_the_own_forward_equals_the_models_forward(default_lm, variant):
    family, overrides = ATTENTION_VARIANTS[variant]
    lm = tiny_model(family, default_lm.tok, **overrides)
    rows = [list(range(5, 5 + n)) for n in (24, 9, 3)]  # longer than the sliding windows tested
    ids, _ = right_pad(rows, 0)
    with torch.no_grad():
        own = R1.forward(lm.model, ids).logits
        for r, row in enumerate(rows):
            alone = lm.model(input_ids=torch.tensor([row])).logits[0]
            assert torch.allclose(own[r, :len(row)], alone, atol=1e-5), variant


def test_an_attention_the_own_forward_cannot_follow_is_refused(default_lm, stats_dir):
    lm = tiny_model("qwen2", default_lm.tok)
    lm.model.config.layer_types = ["full_attention", "chunked_attention"]
    with pytest.raises(RequestError, match="cannot follow"):
        R1.forward(lm.model, torch.tensor([[5, 6, 7]]))
    with pytest.raises(RequestError, match="cannot follow"):
        make_editor("rome", mom2_text="world", stats_dir=stats_dir).edit(lm.model, lm.tok, [FRANCE])
