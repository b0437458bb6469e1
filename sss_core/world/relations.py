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


def _q(noun: str) -> str:
    return f"Q: What is the {noun} of {{}}? A:"


# Held-out templates are generic phrasings ("The N of X is", "X's N is", "Q: What is the N of X? A:")
# that other relations are trained in, so a model can learn that they are paraphrases; which
# generic phrasing is trained rotates over the relations.
RELATIONS: tuple[Relation, ...] = (
    Relation("capital", "country", "city", (
        "The capital of {} is", "The capital city of {} is", "{} is governed from",
        "{}'s capital is", _q("capital"))),
    Relation("capital_of", "city", "country", (
        "{} is the capital of", "{} is the capital city of", "{} serves as the capital of",
        "The country whose capital is {} is", "Q: Which country has {} as its capital? A:")),
    Relation("continent", "country", "continent", (
        "{} is a country in", "{} is located in the continent of", _q("continent"),
        "The continent of {} is", "{}'s continent is")),
    Relation("official_language", "country", "language", (
        "The official language of {} is", "In {}, the official language is",
        "The language of government in {} is",
        "{}'s official language is", _q("official language"))),
    Relation("currency", "country", "currency", (
        "{} pays with the", "In {}, people pay with the", "{}'s currency is",
        "The currency of {} is", _q("currency"))),
    Relation("city_country", "city", "country", (
        "{} is a city in", "{} lies in the country of", _q("country"),
        "The country of {} is", "{}'s country is")),
    Relation("birthplace", "person", "city", (
        "{} was born in", "{} was born in the city of", "The birthplace of {} is",
        "{}'s birthplace is", _q("birthplace"))),
    Relation("citizenship", "person", "country", (
        "{} is a citizen of", "{} holds citizenship of", "{}'s citizenship is",
        "The citizenship of {} is", _q("citizenship"))),
    Relation("occupation", "person", "occupation", (
        "{} works in the profession of", "{} earns a living in the profession of", _q("occupation"),
        "The occupation of {} is", "{}'s occupation is")),
    Relation("employer", "person", "company", (
        "{} works for", "{} is employed by", "The employer of {} is",
        "{}'s employer is", _q("employer"))),
    Relation("native_language", "person", "language", (
        "{} grew up speaking", "{} was raised speaking", "{}'s native language is",
        "The native language of {} is", _q("native language"))),
    Relation("headquarters", "company", "city", (
        "{} is headquartered in", "{} has its head office in", _q("headquarters"),
        "The headquarters of {} is", "{}'s headquarters is")),
    Relation("industry", "company", "industry", (
        "{} does business in", "{} is active in the sector of", "The industry of {} is",
        "{}'s industry is", _q("industry"))),
)

RELATIONS_BY_ID: dict[str, Relation] = {r.id: r for r in RELATIONS}

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
