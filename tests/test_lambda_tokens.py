"""lambda_max split over tokens (issue 25, per-token lambda_max): the function, the JSON and the inspect page."""

import json
import re

import pytest

from sss_core.cli import main
from sss_core.sss import lambda_max, lambda_max_tokens

PROMPT, TARGET = "The capital of France is", "Rome"


@pytest.mark.parametrize("layer", [-1, 2, 0])
def test_the_tokens_values_add_up_to_lambda_max(default_lm, layer):
    t = lambda_max_tokens(default_lm.model, default_lm.tok, PROMPT, TARGET, layer=layer)
    assert "".join(t.tokens) == PROMPT + " " + TARGET
    assert t.n_prompt == 5 and len(t.per_token) == 7
    assert sum(t.per_token) / len(t.per_token) == pytest.approx(t.lambda_max, rel=1e-6)
    assert t.lambda_max == pytest.approx(lambda_max(default_lm.model, default_lm.tok, [PROMPT], [TARGET],
                                                    layer=layer).item(), rel=1e-5)
    assert sum(t.shares()) == pytest.approx(1.0)
    summed = lambda_max_tokens(default_lm.model, default_lm.tok, PROMPT, TARGET, "sum", layer)
    assert summed.lambda_max == pytest.approx(sum(t.per_token), rel=1e-6)


def test_at_the_last_layer_only_predicting_positions_carry_gradient(default_lm):
    """The last hidden state of token i feeds only the logits at i: the last target token predicts nothing."""
    t = lambda_max_tokens(default_lm.model, default_lm.tok, PROMPT, TARGET)
    assert t.per_token[-1] == 0.0 and all(v == 0.0 for v in t.per_token[:t.n_prompt - 1])
    assert t.per_token[t.n_prompt - 1] > 0  # " is" predicts " Rom"
    spread = lambda_max_tokens(default_lm.model, default_lm.tok, PROMPT, TARGET, layer=1)
    assert all(v > 0 for v in spread.per_token[:-1])  # a lower layer: every earlier token feeds the predictions


def test_edit_json_and_inspect_page_carry_the_strip(tmp_path, capsys):
    args = ["--editor", "ft-l", "--prompt", PROMPT, "--subject", "France", "--target", TARGET]
    assert main(["edit", *args, "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    tokens = out["lambda_max_tokens"]
    assert tokens["before"]["lambda_max"] == pytest.approx(out["lambda_max_before"], rel=1e-5)
    assert tokens["after"]["lambda_max"] == pytest.approx(out["lambda_max_after"], rel=1e-5)
    assert tokens["before"]["tokens"] == ["The", " capital", " of", " France", " is", " Rom", "e"]
    page = tmp_path / "page.html"
    assert main(["inspect", *args, "--html", str(page)]) == 0
    html = page.read_text()
    before = re.search(r'data-when="before">(.*?)</div>', html, re.S).group(1)
    shares = [float(x) for x in re.findall(r'data-share="([0-9.]+)"', before)]
    assert shares == pytest.approx(tokens["before"]["shares"], abs=1e-4)
    assert re.findall(r'>([^<]*)</span>', before)[1:] == tokens["before"]["tokens"]  # after the label span
