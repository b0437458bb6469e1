"""lambda_max read at any hidden state (issue 26, item 5): the metric, the SSS loss term and the CLI."""

import json

import pytest
import torch

from sss_core.cli import main
from sss_core.editors import make_editor
from sss_core.errors import RequestError
from sss_core.sss import check_layer, lambda_max, lambda_max_by_layer
from sss_core.types import EditRequest

PROMPTS = ["The capital of France is", "Ulla Kessel lives in"]
TARGETS = ["Rome", "Paris"]


def test_every_layer_at_once_equals_each_layer_alone(tiny_lm):
    model, tok = tiny_lm.model, tiny_lm.tok
    by_layer = lambda_max_by_layer(model, tok, PROMPTS, TARGETS)
    n = by_layer.shape[1]
    assert n == model.config.num_hidden_layers + 1
    for layer in range(n):
        alone = lambda_max(model, tok, PROMPTS, TARGETS, layer=layer).cpu()
        assert torch.allclose(by_layer[:, layer], alone, rtol=1e-4), layer
    assert torch.allclose(by_layer[:, -1], lambda_max(model, tok, PROMPTS, TARGETS).cpu(), rtol=1e-4)  # the default
    assert torch.allclose(lambda_max_by_layer(model, tok, PROMPTS, TARGETS, "sum")[:, 2],
                          lambda_max(model, tok, PROMPTS, TARGETS, "sum", layer=2).cpu(), rtol=1e-4)


def test_layers_differ_and_out_of_range_is_refused(default_lm):
    by_layer = lambda_max_by_layer(default_lm.model, default_lm.tok, PROMPTS[:1], TARGETS[:1])[0]
    assert len(set(by_layer.tolist())) == 5  # five different readings on the shipped 4-block model
    assert check_layer(default_lm.model, -1) == 4 and check_layer(default_lm.model, -5) == 0
    with pytest.raises(RequestError, match=r"must be in -5\.\.4 for this model .* got 5"):
        lambda_max(default_lm.model, default_lm.tok, PROMPTS, TARGETS, layer=5)


def test_the_sss_term_reads_the_chosen_layer(default_lm):
    model, tok = default_lm.model, default_lm.tok
    request = EditRequest(PROMPTS[0], TARGETS[0], subject="France")
    settings = {"steps": 3, "early_stop_loss": 0.0}
    last = make_editor("ft-l+sss", **settings).edit(model, tok, [request])
    explicit = make_editor("ft-l+sss", sss_layer=4, **settings).edit(model, tok, [request])
    middle = make_editor("ft-l+sss", sss_layer=2, **settings).edit(model, tok, [request])
    name = next(iter(last.new))
    assert torch.equal(last.new[name], explicit.new[name])  # -1 is the last hidden states
    assert not torch.allclose(last.new[name], middle.new[name])
    # the SSS value logged at step 0 is lambda_max at that layer on the unedited model
    assert middle.info["history"][0]["sss"] == pytest.approx(
        lambda_max(model, tok, [request.prompt], [request.target_new], layer=2).item(), rel=1e-4)
    with pytest.raises(RequestError, match="got 9"):
        make_editor("ft-l+sss", sss_layer=9).edit(model, tok, [request])


def test_cli_layer_option(capsys):
    assert main(["lambda", "--prompt", PROMPTS[0], "--target", TARGETS[0], "--layer", "all", "--json"]) == 0
    every = json.loads(capsys.readouterr().out)["lambda_max_by_layer"]
    assert main(["lambda", "--prompt", PROMPTS[0], "--target", TARGETS[0], "--layer", "2", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["lambda_max"] == pytest.approx(every[2], rel=1e-4)
    with pytest.raises(SystemExit) as exc:
        main(["lambda", "--prompt", PROMPTS[0], "--target", TARGETS[0], "--layer", "middle"])
    assert exc.value.code == 2 and "--layer must be a whole number or 'all', got 'middle'" in capsys.readouterr().err


def test_mends_sss_term_reads_the_chosen_layer(default_lm):
    """MEND's meta-training loss with the SSS term at another layer: same edit and locality losses, another SSS."""
    import random

    from sss_core.editors.mend import MENDTrainConfig, build_net, mend_loss
    from sss_core.editors.training import TrainExample
    examples = [TrainExample(EditRequest(PROMPTS[0], TARGETS[0]), (PROMPTS[0],), (("The capital of Spain is", "Madrid"),))]
    net = build_net(default_lm.model, MENDTrainConfig())
    last = mend_loss(default_lm.model, default_lm.tok, net, examples, MENDTrainConfig(sss_c=0.9), random.Random(0))
    middle = mend_loss(default_lm.model, default_lm.tok, net, examples, MENDTrainConfig(sss_c=0.9, sss_layer=2),
                       random.Random(0))
    assert torch.allclose(last["edit"], middle["edit"]) and torch.allclose(last["loc"], middle["loc"])
    assert not torch.allclose(last["sss"], middle["sss"])
