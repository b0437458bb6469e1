"""Dataset loaders: every EasyEdit-style format on our fixtures and, when present, the real files."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import pytest
from real_data import anchor_file

from sss_core.errors import DataError
from sss_core.evaluation.datasets import detect_format, group_counts, load_cases, load_dataset, world_split_cases
from sss_core.types import GROUPS
from sss_core.world.records import to_record

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"


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


@pytest.mark.real_data
@pytest.mark.parametrize("name", sorted(REAL))
def test_real_files(name):
    path = anchor_file(name)
    fmt, expected = REAL[name]
    assert detect_format(json.loads(path.read_text())[0]) == fmt
    cases = load_dataset(path, limit=200)
    assert len(cases) == 200
    assert expected <= set(group_counts(cases)) <= set(GROUPS)
    assert all(c.request.validate() for c in cases)


@pytest.mark.real_data
def test_real_zsre_train_has_two_empty_targets():
    path = anchor_file("knowledgespread/zsre_mend_train-1k.json")
    with pytest.raises(DataError, match="record 534, field 'alt' must be a non-empty string"):
        load_dataset(path)
    assert len(load_dataset(path, skip_invalid=True)) == 998


# --- malformed and unusual records (issue 15.3) ------------------------------------------------------

BAD_VALUES = {"null": None, "empty string": "", "blank string": "   ", "number": 7, "huge number": 10**40,
              "float": 1e308, "boolean": True, "object": {"a": 1}, "empty list": [], "list of numbers": [1, 2],
              "list with an empty string": ["", "ok"]}  # a text's first alias is the one used: empty
# (fixture, record, path) of the fields of each format a record cannot do without
REQUIRED = [("zsre.json", 0, ("src",)), ("zsre.json", 0, ("alt",)),
            ("counterfact.json", 0, ("prompt",)), ("counterfact.json", 0, ("target_new",)),
            ("rome_counterfact.json", 0, ("requested_rewrite", "prompt")),
            ("rome_counterfact.json", 0, ("requested_rewrite", "subject")),
            ("rome_counterfact.json", 0, ("requested_rewrite", "target_new", "str")),
            ("rome_counterfact.json", 0, ("requested_rewrite", "target_true")),
            ("rome_counterfact.json", 0, ("requested_rewrite",)),
            ("knowedit.json", 1, ("prompt",)), ("knowedit.json", 1, ("target_new",))]
# (fixture, record, path, the probe group it feeds) of optional probe groups
OPTIONAL = [("zsre.json", 0, ("rephrase",), "paraphrase"), ("zsre.json", 0, ("loc",), "neighbour"),
            ("zsre.json", 0, ("loc_ans",), "neighbour"), ("zsre.json", 1, ("portability",), "one_hop"),
            ("zsre.json", 1, ("portability", "New Question"), "one_hop"),
            ("zsre.json", 2, ("inverse question",), "reversed_relation"),
            ("zsre.json", 3, ("alter_subject_question",), "subject_replace"),
            ("counterfact.json", 0, ("rephrase_prompt",), "paraphrase"),
            ("counterfact.json", 0, ("locality_ground_truth",), "neighbour"),
            ("rome_counterfact.json", 0, ("paraphrase_prompts",), "paraphrase"),
            ("rome_counterfact.json", 0, ("neighborhood_prompts",), "pre_neighbour"),
            ("rome_counterfact.json", 0, ("attribute_prompts",), "post_neighbour"),
            ("rome_counterfact.json", 0, ("portability",), "one_hop"),
            ("rome_counterfact.json", 0, ("portability", "New Answer"), "one_hop"),
            ("rome_counterfact.json", 1, ("alternative_subject",), "subject_replace"),
            ("knowedit.json", 0, ("locality", "Relation_Specificity"), "unrelated_attribute"),
            ("knowedit.json", 0, ("portability", "Reasoning"), "one_hop"),
            ("knowedit.json", 0, ("portability",), ("subject_replace", "one_hop", "reversed_relation"))]


def _records(name: str) -> list:
    return json.loads((FIXTURES / name).read_text())


def _set(rec: dict, path: tuple[str, ...], value) -> None:
    for part in path[:-1]:
        rec = rec[part]
    rec[path[-1]] = value


def _write(tmp_path, records, name="bad.json"):
    path = tmp_path / name
    path.write_text(json.dumps(records))
    return path


def test_empty_portability_object_means_no_portability_probe(tmp_path):
    rome, zsre = _records("rome_counterfact.json"), _records("zsre.json")
    rome[0]["portability"], zsre[1]["portability"] = {}, {}
    first = load_dataset(_write(tmp_path, rome, "rome.json"))[0]
    assert "one_hop" not in groups(first)
    assert group_counts([first]) == {"paraphrase": 2, "pre_neighbour": 3, "post_neighbour": 2, "distract_neighbour": 2}
    tarn = load_dataset(_write(tmp_path, zsre, "zsre.json"))[1]
    assert groups(tarn) == ["paraphrase", "neighbour"]
    for value in (None, {}):  # null too
        zsre[1]["portability"] = value
        assert groups(load_dataset(_write(tmp_path, zsre, "zsre.json"))[1]) == ["paraphrase", "neighbour"]


@pytest.mark.parametrize("name, index, path", REQUIRED, ids=lambda v: ".".join(v) if isinstance(v, tuple) else str(v))
@pytest.mark.parametrize("kind", sorted(BAD_VALUES) + ["missing"])
def test_a_bad_required_field_names_record_and_field_and_skips_only_that_record(tmp_path, caplog, name, index,
                                                                                 path, kind):
    records = _records(name)
    if kind == "missing":
        parent = records[index]
        for part in path[:-1]:
            parent = parent[part]
        del parent[path[-1]]
    else:
        value = BAD_VALUES[kind]
        if kind == "list with an empty string" or (kind == "object" and path[-1] in ("requested_rewrite", "target_true")):
            value = [""]  # a list's first alias is used; an empty first alias is unusable
        _set(records[index], path, value)
    file = _write(tmp_path, records)
    with pytest.raises(DataError) as err:
        load_dataset(file)
    message = str(err.value)
    assert f"bad.json: record {index}, field '" in message
    assert path[0] in message
    kept = load_dataset(file, skip_invalid=True)
    assert len(kept) == len(records) - 1
    assert "1 record(s) skipped" in caplog.text


@pytest.mark.parametrize("name, index, path, group", OPTIONAL, ids=lambda v: "+".join(v) if isinstance(v, tuple) else str(v))
@pytest.mark.parametrize("kind", ["number", "object", "list of numbers", "empty string", "list with an empty string"])
def test_a_bad_optional_group_fails_strictly_and_is_dropped_leniently(tmp_path, caplog, name, index, path, group, kind):
    records = _records(name)
    value = BAD_VALUES[kind]
    if path in (("portability",), ("locality", "Relation_Specificity"), ("portability", "Reasoning")) and kind == "object":
        value = {"Mystery": 1} if len(path) == 1 else {"prompt": 3}
    _set(records[index], path, value)
    file = _write(tmp_path, records)
    with pytest.raises(DataError, match=f"bad.json: record {index}, field '{path[0]}"):
        load_dataset(file)
    cases = load_dataset(file, skip_invalid=True)
    assert len(cases) == len(records)  # the record is kept: its edit is usable
    reference = load_dataset(FIXTURES / name)[index]
    assert dataclasses.replace(cases[index].request, case_id=None) == dataclasses.replace(reference.request, case_id=None)
    dropped = group if isinstance(group, tuple) else (group,)
    kept = [p for p in cases[index].probes if p.group in dropped]
    # fewer probes of that group, unless the only bad item was left out and the usable "ok" kept
    assert len(kept) < sum(g in dropped for g in groups(reference)) or [p.prompt for p in kept] == ["ok"]
    others = [p for p in reference.probes if p.group not in dropped and p.group != "distract_neighbour"]
    assert all(p in cases[index].probes for p in others)  # every other probe group is kept
    assert f"bad.json: kept {len(records)} record(s); " in caplog.text
    assert f"unusable probe(s) left out of kept records (record {index}: '{'.'.join(path)}" in caplog.text


@pytest.mark.parametrize("content, message", [
    ("[" + "1" * 5000 + "]", "cannot be read as JSON"),  # past Python's limit on digits of an int
    ("[" * 100_000 + "]" * 100_000, "cannot be read as JSON"),  # deeper than Python's stack
    ('{"src": "Who?", "alt": "x", "loc": 3}', "record 0, field 'loc' must be"),  # one object, not a list: one record
    ('[{"src": "Who?", "alt": "x"}, {"src": "a"}]', "record 1, field 'alt' is missing"),
    ('[{"src": "Who?", "alt": "x", "case_id": {"a": 1}}]', "field 'case_id' must be"),
    ('[{"src": "Who?", "alt": "x"}, 5]', "record 1 is a JSON number, not an object"),
    ('[{"src": "Who?", "alt": "x"}, null]', "record 1 is a JSON null, not an object"),
    ('[{"src": "Who?", "alt": "x"}, ["Who?", "x"]]', "record 1 is a JSON array, not an object"),
])
def test_unusual_files_and_records_are_data_errors(tmp_path, content, message):
    path = tmp_path / "data.json"
    path.write_text(content)
    with pytest.raises(DataError, match=message):
        load_dataset(path)


def test_limit_below_one_is_a_data_error():
    with pytest.raises(DataError, match="at least 1"):
        load_dataset(FIXTURES / "zsre.json", limit=0)


def test_rome_template_with_other_braces_still_fills_the_subject(tmp_path):
    rome = _records("rome_counterfact.json")
    rome[0]["requested_rewrite"]["prompt"] = "{} (born {year}) originates from"
    case = load_dataset(_write(tmp_path, rome))[0]
    assert case.request.prompt == "Tam Ferrow (born {year}) originates from"


def test_world_records_name_the_bad_field(tmp_path):
    from sss_core.world.records import from_record
    records = [to_record(c) for c in world_split_cases("test")[:3]]
    good = from_record(records[1])
    bad = json.loads(json.dumps(records))
    bad[1]["locality"]["Neighbor"] = [{"prompt": 5, "ground_truth": "x"}]
    bad[2]["prompt"] = ["a list"]
    path = _write(tmp_path, bad, "world.json")
    with pytest.raises(DataError, match=r"world.json: record 1 field 'locality.Neighbor\[0\]'"):
        load_dataset(path, fmt="world")
    cases = load_dataset(path, fmt="world", skip_invalid=True)
    assert [c.request.case_id for c in cases] == [records[0]["case_id"], records[1]["case_id"]]
    assert "neighbour" not in groups(cases[1])
    assert [p for p in good.probes if p.group != "neighbour"] == list(cases[1].probes)
    for rec, field in ((None, "object"), ({"prompt": "p"}, "'target_new' is missing"),
                       ({"prompt": "p", "target_new": "t", "rephrase_prompts": "one"}, "'rephrase_prompts'"),
                       ({"prompt": "p", "target_new": "t", "portability": {"Nope": []}}, "not a known group")):
        with pytest.raises(DataError, match=field):
            from_record(rec)


# --- property: whatever a record holds, the loader answers with cases or a DataError -----------------

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-10**30, max_value=10**30) | st.floats(allow_nan=False)
    | st.text(max_size=12) | st.sampled_from(["", " ", "{}", "{} x {y}", "Paris"]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
        st.sampled_from(["prompt", "ground_truth", "str", "New Question", "New Answer", "Neighbor",
                         "Reasoning", "x"]), inner, max_size=3),
    max_leaves=8)


def _paths(value, prefix=()):
    """Every path (keys and list indices) into a JSON value."""
    yield prefix
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _paths(v, (*prefix, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _paths(v, (*prefix, i))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=st.sampled_from(["zsre.json", "counterfact.json", "rome_counterfact.json", "knowedit.json"]),
       data=st.data(), value=JSON_VALUES, delete=st.booleans(), lenient=st.booleans())
def test_any_value_anywhere_gives_cases_or_a_data_error(tmp_path, name, data, value, delete, lenient):
    records = _records(name)
    path = data.draw(st.sampled_from([p for p in _paths(records) if p]))
    parent = records
    for part in path[:-1]:
        parent = parent[part]
    if delete and isinstance(parent, dict):
        del parent[path[-1]]
    else:
        parent[path[-1]] = value
    file = tmp_path / "data.json"
    file.write_text(json.dumps(records))
    try:
        cases = load_dataset(file, skip_invalid=lenient)
    except DataError as exc:
        assert "data.json" in str(exc)
        return
    assert all(isinstance(c.request.prompt, str) and c.request.prompt.strip() for c in cases)
    assert all(isinstance(p.prompt, str) and isinstance(p.answer, str) and p.answer.strip()
               for c in cases for p in c.probes)


def test_rome_records_carry_their_template(tmp_path):
    rome = _records("rome_counterfact.json")
    rome[0]["requested_rewrite"].update(prompt="The Indian Ocean lies south of {}, whose capital is", subject="India")
    req = load_dataset(_write(tmp_path, rome))[0].request
    assert req.prompt == "The Indian Ocean lies south of India, whose capital is"
    assert req.template == "The Indian Ocean lies south of {}, whose capital is"  # the subject's slot, for the editors
    assert req.validate(needs_subject=True) is req


# --- skipping only what is unusable (issue 24.7) -----------------------------------------------------

import logging  # noqa: E402

from sss_core.evaluation.datasets import LoadedData, load_bytes, load_dataset_report  # noqa: E402


def test_one_empty_ground_truth_leaves_out_that_probe_alone():
    path = FIXTURES / "knowedit_one_bad_probe.json"
    with pytest.raises(DataError) as err:
        load_dataset(path)
    assert str(err.value) == ("knowedit_one_bad_probe.json: record 0, field 'locality.Forgetfulness[1]' needs a "
                              "non-empty 'prompt' and 'ground_truth'")
    loaded = load_dataset_report(path, skip_invalid=True)
    first = loaded.cases[0]
    assert [(p.prompt, p.answer) for p in first.group("neighbour")] == [  # 2 of the 2 usable probes kept
        ("Ruvo Lake also borders", "Bolivia"), ("The largest town on Ruvo Lake is", "Puno")]
    assert [p.answer for p in first.group("unrelated_attribute")] == ["20 km2"]
    assert len(loaded.cases) == 2 and loaded.skipped == ()
    assert loaded.dropped == ("record 0: 'locality.Forgetfulness[1]'",)
    assert loaded.summary() == ("knowedit_one_bad_probe.json: kept 2 record(s); 1 unusable probe(s) left out of "
                                "kept records (record 0: 'locality.Forgetfulness[1]')")


def test_the_cli_loader_logs_what_it_left_out_by_name(caplog):
    # `sss-lab bench --skip-invalid` loads through load_cases; the CLI prints this warning (logging at WARNING)
    with caplog.at_level(logging.WARNING, logger="sss_core.evaluation.datasets"):
        cases = load_cases(str(FIXTURES / "zsre_one_bad_record.json"), skip_invalid=True)
    assert sorted(c.request.target_new for c in cases) == ["Ilse Maren", "Kessel"]
    assert caplog.records[-1].getMessage() == (
        "zsre_one_bad_record.json: kept 2 record(s); 1 record(s) skipped as unusable (record 1, field 'alt' must "
        "be a non-empty string, got an empty string)")


@pytest.mark.parametrize("name, index, path, group", [
    ("rome_counterfact.json", 0, ("paraphrase_prompts",), "paraphrase"),
    ("rome_counterfact.json", 0, ("neighborhood_prompts",), "pre_neighbour"),
    ("rome_counterfact.json", 0, ("attribute_prompts",), "post_neighbour"),
    ("counterfact.json", 0, ("rephrase_prompts",), "paraphrase"),
    ("knowedit.json", 0, ("locality", "Relation_Specificity"), "unrelated_attribute"),
])
def test_one_bad_item_of_a_probe_list_leaves_out_that_item_alone(tmp_path, name, index, path, group):
    records = _records(name)
    good = [{"prompt": "Ruvo Lake is deepest near", "ground_truth": "Puno"}] if path[0] == "locality" \
        else ["A usable prompt one", "A usable prompt two"]
    bad = {"prompt": "A prompt without an answer", "ground_truth": ""} if path[0] == "locality" else ""
    _set(records[index], path, [good[0], bad, *good[1:]])
    records[index].pop("rephrase_prompt", None)  # flat CounterFact: the one other paraphrase field
    file = _write(tmp_path, records)
    with pytest.raises(DataError, match=re.escape(f"bad.json: record {index}, field '{'.'.join(path)}")):
        load_dataset(file)
    loaded = load_dataset_report(file, skip_invalid=True)
    kept = [p.prompt for p in loaded.cases[index].group(group)]
    assert kept == ([good[0]["prompt"]] if path[0] == "locality" else good)
    assert loaded.dropped == (f"record {index}: '{'.'.join(path)}[1]'",) and loaded.skipped == ()


def test_world_records_leave_out_one_bad_probe_alone(tmp_path):
    records = [to_record(c) for c in world_split_cases("test")[:2]]
    name = next(iter(records[0]["locality"]))
    items = records[0]["locality"][name]
    assert len(items) >= 2
    items[0] = {"prompt": items[0]["prompt"], "ground_truth": ""}
    records[0]["rephrase_prompts"] = records[0]["rephrase_prompts"][:1] + [5]
    loaded = load_dataset_report(_write(tmp_path, records, "world.json"), fmt="world", skip_invalid=True)
    reference = from_record_of(records[0], name)
    assert len(loaded.cases[0].probes) == len(reference) and loaded.cases[0].probes == reference
    assert loaded.dropped == ("record 0: 'rephrase_prompts[1]'", f"record 0: 'locality.{name}[0]'")


def from_record_of(rec: dict, name: str) -> tuple:
    """The probes of a world record without its bad items (built from a cleaned copy)."""
    from sss_core.world.records import from_record
    clean = json.loads(json.dumps(rec))
    clean["locality"][name] = clean["locality"][name][1:]
    clean["rephrase_prompts"] = clean["rephrase_prompts"][:1]
    return from_record(clean).probes


@pytest.mark.parametrize("name, index, path", [
    ("zsre.json", 0, ("alt",)), ("zsre.json", 0, ("src",)), ("zsre.json", 0, ("subject",)),
    ("counterfact.json", 0, ("prompt",)), ("counterfact.json", 0, ("target_new",)),
    ("rome_counterfact.json", 0, ("requested_rewrite", "target_new", "str")),
    ("knowedit.json", 1, ("target_new",)),
])
def test_an_edit_text_given_as_a_list_is_refused_not_edited_as_its_first_item(tmp_path, name, index, path):
    records = _records(name)
    _set(records[index], path, ["Kessel", "Other"])
    file = _write(tmp_path, records)
    field = ".".join(path)
    with pytest.raises(DataError) as err:
        load_dataset(file)
    assert str(err.value) == (f"bad.json: record {index}, field '{field}' must be one string, got an array of 2 "
                              f"item(s); a list is not this format's '{field}'")
    loaded = load_dataset_report(file, skip_invalid=True)
    assert len(loaded.cases) == len(records) - 1
    assert loaded.skipped == (f"record {index}, field '{field}' must be one string, got an array of 2 item(s); "
                              f"a list is not this format's '{field}'",)


def test_uploaded_bytes_name_the_file_and_report_what_was_left_out():
    data = (FIXTURES / "zsre_one_bad_record.json").read_bytes()
    with pytest.raises(DataError, match=r"^mine\.json: record 1, field 'alt' must be a non-empty string"):
        load_bytes(data, "mine.json")
    loaded = load_bytes(data, "mine.json", skip_invalid=True)
    assert isinstance(loaded, LoadedData)
    assert [c.request.case_id for c in loaded.cases] == ["mine-0", "mine-2"]
    assert loaded.skipped == ("record 1, field 'alt' must be a non-empty string, got an empty string",)
    with pytest.raises(DataError, match=r"^mine\.json is 0\.7 kB, over the limit of 0\.5 kB$"):
        load_bytes(data, "mine.json", max_bytes=512)
    with pytest.raises(DataError, match=r"^mine\.json: no usable records \(1 skipped as unusable, the first: "
                                        r"record 0, field 'alt'"):
        load_bytes(b'[{"src": "Who?", "alt": ""}]', "mine.json", skip_invalid=True)


@pytest.mark.real_data
def test_real_zsre_train_names_the_two_records_it_skips():
    path = anchor_file("knowledgespread/zsre_mend_train-1k.json")
    loaded = load_dataset_report(path, skip_invalid=True)
    assert len(loaded.cases) == 998 and loaded.dropped == ()
    assert loaded.skipped == ("record 534, field 'alt' must be a non-empty string, got an empty string",
                              "record 723, field 'alt' must be a non-empty string, got an empty string")


@pytest.mark.real_data
@pytest.mark.parametrize("name", sorted(REAL))
def test_real_files_load_whole_with_nothing_left_out(name):
    loaded = load_dataset_report(anchor_file(name), skip_invalid=True)
    assert loaded.skipped == () and loaded.dropped == () and loaded.summary() is None
    assert len(loaded.cases) == len(json.loads(anchor_file(name).read_text()))
