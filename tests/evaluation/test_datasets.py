"""Dataset loaders: every EasyEdit-style format on our fixtures and, when present, the real files."""

from __future__ import annotations

import json

import pytest

from sss_core.errors import DataError
from sss_core.evaluation.datasets import (detect_format, group_counts, load_cases, load_dataset,
                                          world_split_cases)
from sss_core.types import GROUPS
from sss_core.world.records import to_record

from pathlib import Path

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
ANCHOR = Path(__file__).resolve().parents[3] / "shared" / "anchor-data"  # ../shared/anchor-data


def groups(case):
    return [p.group for p in case.probes]


def test_zsre_fields_map_to_groups():
    cases = load_dataset(FIXTURES / "zsre.json")
    assert [c.request.target_new for c in cases] == ["Kessel", "1975", "Dora Maren", "Cygnus"]
    first = cases[0]
    assert first.request.prompt == "Which river does Velmora Bridge cross?"
    assert first.request.ground_truth == "Ostra" and first.request.subject == "Velmora Bridge"
    assert groups(first) == ["paraphrase", "neighbour"]
    assert first.group("neighbour")[0].answer == "Ana Drell"
    assert first.group("paraphrase")[0].answer == "Kessel"  # paraphrases are scored against the new target
    assert cases[1].group("one_hop")[0].answer == "Folk"
    inverse = cases[2].group("reversed_relation")[0]
    assert (inverse.prompt, inverse.answer) == ("Who is Dora Maren's sister?", "Ilse Maren")
    alias = cases[3].group("subject_replace")[0]
    assert (alias.prompt, alias.answer) == ("Which constellation is UGC 1234 in?", "Cygnus")


def test_counterfact_flat():
    cases = load_dataset(FIXTURES / "counterfact.json")
    assert [c.request.case_id for c in cases] == ["11", "12", "13"]
    c = cases[0]
    req = c.request
    assert (req.prompt, req.target_new, req.ground_truth) == ("Orlen Vask plays the", "violin", "drums")
    assert [(p.group, p.answer) for p in c.probes] == [("paraphrase", "violin"), ("neighbour", "drums")]


def test_rome_nested_counterfact():
    first, second = load_dataset(FIXTURES / "rome_counterfact.json")
    assert first.request.prompt == "Tam Ferrow originates from" and first.relation == "P19"
    assert (first.request.target_new, first.request.ground_truth) == ("Oslo", "Porto")
    counts = group_counts([first])
    assert counts == {"paraphrase": 2, "pre_neighbour": 3, "post_neighbour": 2, "distract_neighbour": 2, "one_hop": 1}
    assert all(p.answer == "Porto" for p in first.group("pre_neighbour"))  # neighbours keep the old answer
    assert all(p.answer == "Oslo" for p in first.group("post_neighbour"))
    assert first.group("distract_neighbour")[0].prompt == "Tam Ferrow originates from Oslo. Ali Brenn originates from"
    assert second.group("subject_replace")[0].prompt == "G. Lunde passed away in"


def test_knowedit_groups_and_nested_answers():
    first, second = load_dataset(FIXTURES / "knowedit.json")
    assert first.request.ground_truth == "Peru"
    got = {(p.group, p.answer) for p in first.probes}
    assert got == {("paraphrase", "Chile"), ("subject_replace", "Chile"), ("one_hop", "Santiago"),
                   ("reversed_relation", "Ruvo Lake"), ("unrelated_attribute", "20 km2"), ("neighbour", "Bolivia")}
    assert groups(second) == ["unrelated_attribute"]


def test_world_records_round_trip(tmp_path):
    cases = world_split_cases("test", seed=0)[:5]
    path = tmp_path / "world.json"
    path.write_text(json.dumps([to_record(c) for c in cases]))
    assert detect_format(json.loads(path.read_text())[0]) == "world"
    assert load_dataset(path) == cases


def test_world_seeds_change_targets_not_facts():
    a, b = world_split_cases("test", seed=0), world_split_cases("test", seed=1)
    assert {c.request.case_id for c in a} == {c.request.case_id for c in b}
    assert [c.request.case_id for c in a] != [c.request.case_id for c in b]
    targets_a = {c.request.case_id: c.request.target_new for c in a}
    assert sum(targets_a[c.request.case_id] != c.request.target_new for c in b) > len(b) // 2
    assert load_cases("world", n=7, seed=1) == b[:7]


def test_file_cases_are_first_n_shuffled_by_seed():
    first = load_cases(str(FIXTURES / "zsre.json"), n=3, seed=0)
    other = load_cases(str(FIXTURES / "zsre.json"), n=3, seed=5)
    assert {c.request.case_id for c in first} == {c.request.case_id for c in other} == {f"zsre-{i}" for i in range(3)}


@pytest.mark.parametrize("mutate, field", [
    (lambda r: r[1].pop("alt"), "'alt' is missing"),
    (lambda r: r[2].update(alt=""), "'alt' must be a non-empty string"),
    (lambda r: r[1].update(rephrase=[3]), "'rephrase' must be a string"),
    (lambda r: r[0].pop("loc_ans"), "'loc_ans' is missing"),
    (lambda r: r[1]["portability"].pop("New Answer"), "'portability.New Answer' is missing"),
])
def test_malformed_zsre_names_record_and_field(tmp_path, mutate, field):
    records = json.loads((FIXTURES / "zsre.json").read_text())
    mutate(records)
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(records))
    with pytest.raises(DataError, match="record [0-9]") as err:
        load_dataset(path)
    assert field in str(err.value) and "bad.json" in str(err.value)


def test_malformed_rome_and_knowedit(tmp_path):
    rome = json.loads((FIXTURES / "rome_counterfact.json").read_text())
    rome[1]["requested_rewrite"]["target_new"] = {"id": "Q3"}
    (tmp_path / "rome.json").write_text(json.dumps(rome))
    with pytest.raises(DataError, match="record 1, field 'requested_rewrite.target_new.str' is missing"):
        load_dataset(tmp_path / "rome.json")
    know = json.loads((FIXTURES / "knowedit.json").read_text())
    know[0]["locality"]["Relation_Specificity"][0] = {"prompt": "x"}
    (tmp_path / "know.json").write_text(json.dumps(know))
    with pytest.raises(DataError, match=r"record 0, field 'locality.Relation_Specificity\[0\]'"):
        load_dataset(tmp_path / "know.json")
    know[0]["locality"] = {"Mystery": []}
    (tmp_path / "know.json").write_text(json.dumps(know))
    with pytest.raises(DataError, match="'locality.Mystery' is not a known group"):
        load_dataset(tmp_path / "know.json")


def test_skip_invalid_leaves_bad_records_out(tmp_path):
    records = json.loads((FIXTURES / "counterfact.json").read_text())
    records[1]["target_new"] = None
    (tmp_path / "cf.json").write_text(json.dumps(records))
    assert [c.request.case_id for c in load_dataset(tmp_path / "cf.json", skip_invalid=True)] == ["11", "13"]


@pytest.mark.parametrize("content, message", [
    ("this is not json {", "is not JSON"),
    ("", "is not JSON"),
    ('{"a": 1} trailing', "is not JSON"),
    ("[]", "has no records"),
    ("42", "expected a list of records"),
    ("[1, 2]", "JSON int"),
    ('[{"foo": 1}]', "cannot tell the format"),
])
def test_unusable_files(tmp_path, content, message):
    path = tmp_path / "data.json"
    path.write_text(content)
    with pytest.raises(DataError, match=message):
        load_dataset(path)


def test_json_lines_and_binary_and_missing(tmp_path):
    records = json.loads((FIXTURES / "counterfact.json").read_text())
    (tmp_path / "cf.jsonl").write_text("\n".join(json.dumps(r) for r in records) + "\n")
    assert len(load_dataset(tmp_path / "cf.jsonl")) == 3
    (tmp_path / "bin.json").write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(DataError, match="not UTF-8"):
        load_dataset(tmp_path / "bin.json")
    with pytest.raises(DataError, match="no data file"):
        load_dataset(tmp_path / "absent.json")
    with pytest.raises(DataError, match="unknown data format"):
        load_dataset(FIXTURES / "zsre.json", fmt="csv")


def test_huge_file_is_refused_before_reading(tmp_path):
    path = tmp_path / "huge.json"
    with open(path, "wb") as fh:  # sparse: 101 MB on paper, nothing on disk
        fh.truncate(101 * 2**20)
    with pytest.raises(DataError, match="101.0 MB, over the limit of 100.0 MB"):
        load_dataset(path)
    with pytest.raises(DataError, match="1.5 kB, over the limit of 1.0 kB"):
        load_dataset(FIXTURES / "zsre.json", max_bytes=1024)


REAL = {"knowledgespread/counterfact-train.json": ("counterfact", {"paraphrase", "neighbour"}),
        "instructed_portability/counterfact_portability_gpt4.json": ("rome", {"one_hop", "pre_neighbour"}),
        "instructed_portability/counterfact_subject_replace.json": ("rome", {"subject_replace"}),
        "instructed_portability/zsre_mend_eval_portability_gpt4.json": ("zsre", {"one_hop", "neighbour"}),
        "instructed_portability/zsre_inverse_relation.json": ("zsre", {"reversed_relation"}),
        "instructed_portability/zsre_subject_replace.json": ("zsre", {"subject_replace"})}


@pytest.mark.parametrize("name", sorted(REAL))
def test_real_files(name):
    path = ANCHOR / name
    if not path.exists():
        pytest.skip(f"{path} is not here")
    fmt, expected = REAL[name]
    assert detect_format(json.loads(path.read_text())[0]) == fmt
    cases = load_dataset(path, limit=200)
    assert len(cases) == 200
    assert expected <= set(group_counts(cases)) <= set(GROUPS)
    assert all(c.request.validate() for c in cases)


def test_real_zsre_train_has_two_empty_targets():
    path = ANCHOR / "knowledgespread/zsre_mend_train-1k.json"
    if not path.exists():
        pytest.skip(f"{path} is not here")
    with pytest.raises(DataError, match="record 534, field 'alt' must be a non-empty string"):
        load_dataset(path)
    assert len(load_dataset(path, skip_invalid=True)) == 998
