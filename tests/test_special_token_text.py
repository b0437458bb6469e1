"""Text holding a special token of the tokenizer is refused (issue 24.1), never trained as something else.

``--target "<|endoftext|>"`` used to exit 0 with reliability 1.0: the tokenizer read the text as the
end-of-text token, the EOS trimming dropped it, and a lone space was trained and scored;
``Rome<|endoftext|>`` silently became ``Rome``. The check sits where every text meets the tokenizer
(``sss_core.text``), so the request, every probe, and the app's typed inputs (``analyse_edit``) get it.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from model_support import assert_bit_identical, state_copy
from sss_core.errors import RequestError

ROOT = Path(__file__).resolve().parent.parent
EOT = "<|endoftext|>"


def message(special: str) -> str:
    return (f"{special!r} is a special token of the model's tokenizer: in a prompt, target or probe it would be "
            "read as that token, not as text; remove it")


@pytest.mark.parametrize("text", [EOT, "Rome" + EOT, EOT + "The capital of France is", "a <|endoftext|> b"])
def test_the_helper_refuses_a_special_token_anywhere_in_a_text(default_lm, text):
    from sss_core.text import check_plain, n_tokens, text_ids
    for call in (check_plain, text_ids, n_tokens):
        with pytest.raises(RequestError) as info:
            call(default_lm.tok, text)
        assert str(info.value) == message(EOT)


def test_plain_text_passes_and_corpus_text_may_hold_special_tokens(default_lm):
    from sss_core.text import check_plain, text_ids
    tok = default_lm.tok
    for text in ("Rome", "<|endoftext", "a < b |> c", "endoftext"):
        assert check_plain(tok, text) == text
    assert text_ids(tok, "Rome" + EOT, specials=True) == tok("Rome" + EOT)["input_ids"]  # key-statistics samples


def test_every_special_token_of_a_llama_style_tokenizer_is_refused():
    from test_text import _tokenizer

    from sss_core.text import special_texts, target_ids
    tok = _tokenizer("post_processor")  # <s> ... </s>, unk <unk>
    assert set(special_texts(tok)) == {"<s>", "</s>", "<unk>"}
    for special in ("<s>", "</s>", "<unk>"):
        with pytest.raises(RequestError) as info:
            target_ids(tok, "The capital of France is", f"Rome{special}")
        assert str(info.value) == message(special)
    assert target_ids(tok, "The capital of France is", "Rome")[1]  # plain text still works


@pytest.mark.parametrize("prompt, target", [("The capital of France is", EOT),
                                            ("The capital of France is", "Rome" + EOT),
                                            ("The capital of France" + EOT + " is", "Rome")])
def test_every_measure_refuses_it_in_a_prompt_or_an_answer(default_lm, prompt, target):
    from sss_core.embeddings import sentence_states
    from sss_core.evaluation.metrics import answer_probability, teacher_forced, top_k
    from sss_core.sparsity import answer_rows
    from sss_core.sss import lambda_max
    from sss_core.text import encode_pairs, target_ids
    model, tok = default_lm.model, default_lm.tok
    calls = [lambda: target_ids(tok, prompt, target), lambda: encode_pairs(tok, [prompt], [target]),
             lambda: teacher_forced(model, tok, [prompt], [target]),
             lambda: answer_probability(model, tok, [prompt], [target]),
             lambda: lambda_max(model, tok, [prompt], [target])]
    if EOT in prompt:  # a sentence read on its own (an embedded probe, the top-k, lambda_max per sentence)
        calls += [lambda: top_k(model, tok, prompt), lambda: sentence_states(model, tok, [prompt]),
                  lambda: answer_rows(tok, [prompt], [0])]
    for call in calls:
        with pytest.raises(RequestError) as info:
            call()
        assert str(info.value) == message(EOT)


def test_an_edit_with_such_a_target_or_probe_trains_nothing(default_lm):
    from sss_core.analysis import analyse_edit
    from sss_core.editors import make_editor
    from sss_core.evaluation.metrics import run_edit
    from sss_core.types import EditCase, EditRequest, Probe
    model, tok = default_lm.model, default_lm.tok
    saved = state_copy(model)
    cases = [EditCase(EditRequest("The capital of France is", EOT, "France")),
             EditCase(EditRequest("The capital of France is", "Rome" + EOT, "France")),
             EditCase(EditRequest("The capital of France is", "Rome", "France"),
                      (Probe("The capital city of France" + EOT + " is", "Rome", "paraphrase"),))]
    for case in cases:
        with pytest.raises(RequestError) as info:
            run_edit(model, tok, make_editor("ft-l", steps=2), case)
        assert str(info.value) == message(EOT)
        with pytest.raises(RequestError) as info:  # the app's path: typed text reaches analyse_edit
            analyse_edit(default_lm, "ft-l", {"steps": 2}, case, ())
        assert str(info.value) == message(EOT)
    assert_bit_identical(model, saved)


def _assert_one_error_line(stderr: str) -> None:
    """The CLI's error is one line, the last (transformers' weight-loading progress bar may come before it)."""
    lines = stderr.strip().splitlines()
    assert lines[-1] == "error: " + message(EOT)
    assert [line for line in lines if "error" in line.lower() or "Traceback" in line] == [lines[-1]]


@pytest.mark.parametrize("args", [["--target", EOT], ["--target", "Rome" + EOT],
                                  ["--target", "Rome", "--paraphrase", "The capital city of France" + EOT + " is"]])
def test_cli_edit_exits_2_with_one_line(args):
    res = subprocess.run([sys.executable, "-m", "sss_core", "edit", "--editor", "ft-l", "--prompt",
                          "The capital of France is", "--subject", "France", *args, "--json"],
                         cwd=ROOT, capture_output=True, text=True, check=False, timeout=300)
    assert res.returncode == 2, res.stdout[-300:]
    assert res.stdout == ""
    _assert_one_error_line(res.stderr)


def test_cli_lambda_exits_2_with_one_line():
    res = subprocess.run([sys.executable, "-m", "sss_core", "lambda", "--prompt", "The capital of France is",
                          "--target", "Rome" + EOT, "--json"],
                         cwd=ROOT, capture_output=True, text=True, check=False, timeout=300)
    assert res.returncode == 2
    _assert_one_error_line(res.stderr)



def test_a_neighbour_the_model_ends_is_refused_not_scored_as_the_end_of_text_token(default_lm):
    """The model's own answer is the end of text: no answer to compare a locality probe with (it used to be
    scored as the text '<|endoftext|>', or as nothing)."""
    from sss_core.evaluation.presets import greedy_answer

    with pytest.raises(RequestError, match=r"^the model ends the text after 'Hello\.' \(its next token is the end of "
                                           r"text\), so it has no answer to compare: give a prompt that stops before"):
        greedy_answer(default_lm, "Hello.")
    assert greedy_answer(default_lm, "The capital of France is") == "Paris"
