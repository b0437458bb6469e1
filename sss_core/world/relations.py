"""The relations of the built-in fact world and their prompt templates.

Every template ends right before the object, so ``template.format(subject) + " " + object``
is a complete sentence. The last ``N_HELDOUT`` templates of each relation never appear in
the training corpus: they measure generality (paraphrases the model has not seen).
"""

from __future__ import annotations

from dataclasses import dataclass

N_HELDOUT = 2


@dataclass(frozen=True)
class Relation:
    """One relation: its id, the kinds of entity it links and its templates."""

    id: str
    subject_kind: str  # "country", "city", "person" or "company"
    object_kind: str  # the kind of entity (or value set) the object comes from
    templates: tuple[str, ...]  # first len - N_HELDOUT are trained, the rest held out

    @property
    def train_templates(self) -> tuple[str, ...]:
        return self.templates[:-N_HELDOUT]

    @property
    def heldout_templates(self) -> tuple[str, ...]:
        return self.templates[-N_HELDOUT:]


# Generic frames: every relation with a noun is phrased in each of them. A relation's held-out
# templates are two of these frames, rotating over the relations, so each held-out phrasing is
# one the model was trained in for most other relations but never for this one: generality asks
# whether the model has learned that a frame with this relation's noun is a paraphrase.
FRAMES: tuple[str, ...] = (
    "The {noun} of {{}} is",
    "{{}}'s {noun} is",
    "Q: What is the {noun} of {{}}? A:",
    "Question: what is {{}}'s {noun}? Answer:",
    "Tell me the {noun} of {{}}:",
    "Fact: the {noun} of {{}} is",
    "As far as I know, the {noun} of {{}} is",
    "We know that {{}}'s {noun} is",
)


def _relation(index: int, id: str, subject_kind: str, object_kind: str, specific: tuple[str, ...],
              noun: str | None = None, heldout: tuple[str, ...] = ()) -> Relation:
    """A relation from its own phrasings plus the generic frames over ``noun``.

    Template 0 (the edit prompt) is ``specific[0]``. With a noun, the relation is trained in its
    specific phrasings and every frame but two (frames ``2 * index`` and ``2 * index + 1``, modulo the
    number of frames, skipping any that equals a specific phrasing), which are held out. Without a
    noun, ``heldout`` names the two held-out phrasings.
    """
    if noun is None:
        return Relation(id, subject_kind, object_kind, (*specific, *heldout))
    generic = [f.format(noun=noun) for f in FRAMES]
    generic = [g for g in generic if g not in specific]
    held = [generic[(2 * index + k) % len(generic)] for k in range(N_HELDOUT)]
    trained = [g for g in generic if g not in held]
    return Relation(id, subject_kind, object_kind, (*specific, *trained, *held))


RELATIONS: tuple[Relation, ...] = (
    _relation(0, "capital", "country", "city", (
        "The capital of {} is", "The capital city of {} is", "{} is governed from"), "capital"),
    _relation(1, "capital_of", "city", "country", (
        "{} is the capital of", "{} is the capital city of", "{} serves as the capital of",
        "The country whose capital is {} is", "{} is the seat of government of",
        "Question: {} is the capital of which country? Answer:"), heldout=(
        "The nation governed from {} is", "Q: Which country has {} as its capital? A:")),
    _relation(2, "continent", "country", "continent", (
        "{} is a country in", "{} is located in the continent of", "{} lies on the continent of"),
        "continent"),
    _relation(3, "official_language", "country", "language", (
        "The official language of {} is", "In {}, the official language is",
        "The language of government in {} is"), "official language"),
    _relation(4, "currency", "country", "currency", (
        "{} pays with the", "In {}, people pay with the", "The money used in {} is the"), "currency"),
    _relation(5, "city_country", "city", "country", (
        "{} is a city in", "{} lies in the country of", "{} is located in the country of"), "country"),
    _relation(6, "birthplace", "person", "city", (
        "{} was born in", "{} was born in the city of", "{} came into the world in"), "birthplace"),
    _relation(7, "citizenship", "person", "country", (
        "{} is a citizen of", "{} holds citizenship of", "{} holds a passport of"), "citizenship"),
    _relation(8, "occupation", "person", "occupation", (
        "{} works in the profession of", "{} earns a living in the profession of",
        "{} is employed in the profession of"), "occupation"),
    _relation(9, "employer", "person", "company", (
        "{} works for", "{} is employed by", "{} draws a salary from"), "employer"),
    _relation(10, "native_language", "person", "language", (
        "{} grew up speaking", "{} was raised speaking", "The mother tongue of {} is"), "native language"),
    _relation(11, "headquarters", "company", "city", (
        "{} is headquartered in", "{} has its head office in", "The head office of {} is in"),
        "headquarters"),
    _relation(12, "industry", "company", "industry", (
        "{} does business in", "{} is active in the sector of", "{} makes its money in"), "industry"),
)

RELATIONS_BY_ID: dict[str, Relation] = {r.id: r for r in RELATIONS}


def heldout_inside_trained() -> set[tuple[str, str]]:
    """(relation, held-out template) pairs whose text occurs inside one of the relation's trained templates.

    A known flaw of the v2 world: the frame "We know that {}'s N is" is trained for capital, currency,
    occupation and industry, whose held-out "{}'s N is" is its tail, so the training corpus contains
    "... France's capital is Paris." after "We know that". The model card reports held-out accuracy
    with and without these four templates (0.985 on them, 0.964 on the other 22; retraining with a
    frame that does not contain another is the fix). ``tests/test_world.py`` pins this set.
    """
    return {(r.id, h) for r in RELATIONS for h in r.heldout_templates
            if any(h in t for t in r.train_templates)}

# Composed (one-hop) questions: subject relation, then a second relation applied to its object.
# (first relation, second relation, template over the first subject)
ONE_HOP: tuple[tuple[str, str, str], ...] = (
    ("birthplace", "city_country", "{} was born in a city of the country of"),
    ("citizenship", "capital", "The capital of the country of which {} is a citizen is"),
    ("citizenship", "currency", "The currency of the country of which {} is a citizen is the"),
    ("headquarters", "city_country", "{} has its head office in a city of the country of"),
    ("city_country", "capital", "The capital of the country where {} lies is"),
    ("capital", "city_country", "The capital of {} is a city in"),
    ("employer", "headquarters", "The employer of {} is headquartered in"),
)

# Reversed relations: an edit of the first relation implies the second read backwards.
REVERSED: dict[str, str] = {"capital": "capital_of", "capital_of": "capital"}
