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


RELATIONS: tuple[Relation, ...] = (
    Relation("capital", "country", "city", (
        "The capital of {} is",
        "{}'s capital is",
        "The capital city of {} is",
        "{} has its capital in",
        "The seat of government of {} is in",
    )),
    Relation("capital_of", "city", "country", (
        "{} is the capital of",
        "{} is the capital city of",
        "{} serves as the capital of",
        "The city of {} is the capital of",
        "{} is the seat of government of",
    )),
    Relation("continent", "country", "continent", (
        "{} is located in the continent of",
        "{} is a country in",
        "{} is part of the continent of",
        "The continent of {} is",
        "{} lies on the continent of",
    )),
    Relation("official_language", "country", "language", (
        "The official language of {} is",
        "In {}, the official language is",
        "{}'s official language is",
        "The main language spoken in {} is",
        "The language of government in {} is",
    )),
    Relation("currency", "country", "currency", (
        "The currency of {} is the",
        "{} pays with the",
        "The official currency of {} is the",
        "In {}, people pay with the",
        "The money used in {} is the",
    )),
    Relation("city_country", "city", "country", (
        "{} is a city in",
        "The city of {} is located in",
        "{} lies in the country of",
        "{} is in",
        "The country where {} lies is",
    )),
    Relation("birthplace", "person", "city", (
        "{} was born in",
        "The birthplace of {} is",
        "{} was born in the city of",
        "{} came into the world in",
        "{}'s place of birth is",
    )),
    Relation("citizenship", "person", "country", (
        "{} is a citizen of",
        "{} holds citizenship of",
        "The citizenship of {} is",
        "{} has a passport from",
        "{} is a national of",
    )),
    Relation("occupation", "person", "occupation", (
        "{} works in the profession of",
        "The occupation of {} is",
        "{}'s job is",
        "The profession of {} is",
        "{} earns a living in the profession of",
    )),
    Relation("employer", "person", "company", (
        "{} works for",
        "{} is employed by",
        "The employer of {} is",
        "{} is on the payroll of",
        "{} draws a salary from",
    )),
    Relation("native_language", "person", "language", (
        "The native language of {} is",
        "{}'s mother tongue is",
        "{} grew up speaking",
        "The first language of {} is",
        "The language {} learned first is",
    )),
    Relation("headquarters", "company", "city", (
        "{} is headquartered in",
        "The headquarters of {} are in",
        "{} has its head office in",
        "{} is based in",
        "The main office of {} is located in",
    )),
    Relation("industry", "company", "industry", (
        "The industry of {} is",
        "{} does business in",
        "{} is active in the sector of",
        "The sector of {} is",
        "{} makes its money in",
    )),
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
