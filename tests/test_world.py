import json

from sss_core.world.generate import build_world
from sss_core.world.records import SPLITS, from_record, to_record, world_cases, write_world
from sss_core.world.relations import heldout_inside_trained, N_HELDOUT, RELATIONS


def test_world_has_scale_and_structure():
    world = build_world(0)
    assert len(world.facts) >= 2000
    assert len({f.relation for f in world.facts}) >= 8
    assert all(len(r.templates) >= 5 and N_HELDOUT >= 2 for r in RELATIONS)
    assert world.object_of("France", "capital") == "Paris"
    assert world.object_of("Paris", "capital_of") == "France"
    assert "USA" in world.aliases["United States"]
    assert len(world.one_hop_cases()) > 100


def test_world_is_deterministic_and_seeded():
    assert build_world(0).facts == build_world(0).facts
    assert build_world(0).facts != build_world(1).facts


def test_heldout_templates_never_trained():
    """No held-out phrasing occurs in the training corpus, except the four known ones of the v2 world
    whose text is the tail of a trained frame ("X's N is" inside "We know that X's N is"); the model
    card reports held-out accuracy without them. A new leak, or that flaw fixed, fails here."""
    world = build_world(0)
    corpus = "\n".join(world.training_sentences())
    known = {("capital", "{}'s capital is"), ("currency", "{}'s currency is"),
             ("occupation", "{}'s occupation is"), ("industry", "{}'s industry is")}
    assert heldout_inside_trained() == known
    found = set()
    for rel in RELATIONS:
        for template in rel.heldout_templates:
            for fact in world.facts_by_relation[rel.id][:20]:
                if template.format(fact.subject) + " " in corpus:
                    found.add((rel.id, template))
    assert found == known


def test_splits_are_disjoint_and_cover_every_probe_group():
    world = build_world(0)
    ids = {s: {c.request.case_id for c in world_cases(world, s)} for s in SPLITS}
    assert not ids["train"] & ids["test"] and not ids["validation"] & ids["test"]
    assert len(ids["test"]) >= 500
    groups = {p.group for c in world_cases(world, "test") for p in c.probes}
    assert groups >= {"paraphrase", "neighbour", "pre_neighbour", "post_neighbour", "distract_neighbour",
                      "unrelated_attribute", "subject_replace", "reversed_relation", "one_hop"}


def test_edit_targets_differ_from_truth_and_probes_follow_the_edit():
    for case in world_cases(build_world(0), "test")[:200]:
        req = case.request
        assert req.target_new != req.ground_truth
        assert req.subject in req.prompt
        for p in case.group("reversed_relation"):
            assert req.target_new in p.prompt and p.answer == req.subject


def test_records_round_trip_and_write(tmp_path):
    cases = world_cases(build_world(0), "validation")
    assert [from_record(to_record(c)) for c in cases] == cases
    counts = write_world(tmp_path)
    records = json.loads((tmp_path / "test.json").read_text())
    assert counts["test"] == len(records) >= 500
    assert {"prompt", "target_new", "subject", "ground_truth", "rephrase_prompt",
            "locality_prompt", "locality_ground_truth"} <= set(records[0])
