"""Two sessions editing the shared model at once each get their own results; the model ends unedited."""

from __future__ import annotations

import threading

import torch

from sss_core.analysis import analyse_edit
from sss_core.evaluation.presets import presets


def test_two_concurrent_sessions_get_their_own_results(default_lm):
    cases = presets("test", 2)
    saved = {k: v.clone() for k, v in default_lm.model.state_dict().items()}
    alone = [analyse_edit(default_lm, "ft-l", {"steps": 8}, c, with_embeddings=False) for c in cases]
    results: dict[int, object] = {}
    failures: list[BaseException] = []
    barrier = threading.Barrier(2)

    def session(i: int) -> None:
        try:
            barrier.wait()
            results[i] = analyse_edit(default_lm, "ft-l", {"steps": 8}, cases[i], with_embeddings=False)
        except BaseException as exc:  # noqa: BLE001 - reported below
            failures.append(exc)

    threads = [threading.Thread(target=session, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not failures, failures
    for i in range(2):
        assert results[i].case.request == cases[i].request
        assert [r.top1_after for r in results[i].rows] == [r.top1_after for r in alone[i].rows]
        assert results[i].result.metrics == alone[i].result.metrics
    assert all(torch.equal(v, saved[k]) for k, v in default_lm.model.state_dict().items())
