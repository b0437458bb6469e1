"""Build the seeded fact world: entities, facts, the training corpus and edit records.

Example:
    >>> world = build_world(seed=0)
    >>> world.object_of("France", "capital")
    'Paris'
    >>> len(world.facts) >= 2000
    True
"""

from __future__ import annotations

import random
from collections import defaultdict
from dataclasses import dataclass, field
from functools import cached_property

from .data import (COMPANY_SUFFIXES, COUNTRIES, INDUSTRIES, NAME_CODAS, NAME_ONSETS,
                   NAME_VOWELS, OCCUPATIONS)
from .relations import ONE_HOP, RELATIONS, RELATIONS_BY_ID, Relation

N_PEOPLE = 300
N_COMPANIES = 60
P_CITIZEN_OF_BIRTH_COUNTRY = 0.8  # correlated facts, as in the real world
P_NATIVE_IS_OFFICIAL = 0.8


@dataclass(frozen=True)
class Fact:
    """(subject, relation, object), e.g. ("France", "capital", "Paris")."""

    subject: str
    relation: str
    object: str

    def prompt(self, template_index: int = 0) -> str:
        return RELATIONS_BY_ID[self.relation].templates[template_index].format(self.subject)


@dataclass(frozen=True)
class World:
    """All facts of the world plus aliases; lookups are derived, never stored twice."""

    seed: int
    facts: tuple[Fact, ...]
    aliases: dict[str, tuple[str, ...]] = field(default_factory=dict)  # subject -> other names

    @cached_property
    def _index(self) -> dict[tuple[str, str], str]:
        return {(f.subject, f.relation): f.object for f in self.facts}

    @cached_property
    def facts_by_relation(self) -> dict[str, tuple[Fact, ...]]:
        out: dict[str, list[Fact]] = defaultdict(list)
        for f in self.facts:
            out[f.relation].append(f)
        return {k: tuple(v) for k, v in out.items()}

    @cached_property
    def facts_by_subject(self) -> dict[str, tuple[Fact, ...]]:
        out: dict[str, list[Fact]] = defaultdict(list)
        for f in self.facts:
            out[f.subject].append(f)
        return {k: tuple(v) for k, v in out.items()}

    @cached_property
    def real_subjects(self) -> frozenset[str]:
        """Subjects that exist outside the world (countries and cities of ``data.COUNTRIES``); people
        and companies are generated."""
        real = {name for row in COUNTRIES for name in (row[0], row[1], *row[5], *row[6])}
        return frozenset(s for s in self.facts_by_subject if s in real)

    @property
    def relations(self) -> tuple[Relation, ...]:
        return RELATIONS

    def object_of(self, subject: str, relation: str) -> str | None:
        return self._index.get((subject, relation))

    def objects(self, relation: str) -> list[str]:
        """The distinct objects of a relation, sorted (the candidates for a new target)."""
        return sorted({f.object for f in self.facts_by_relation[relation]})

    def one_hop_answer(self, subject: str, first: str, second: str,
                       override: dict[tuple[str, str], str] | None = None) -> str | None:
        """Answer of second(first(subject)), with edited facts taken from ``override``."""
        override = override or {}
        mid = override.get((subject, first), self.object_of(subject, first))
        if mid is None:
            return None
        return override.get((mid, second), self.object_of(mid, second))

    def training_sentences(self) -> list[str]:
        """Every fact in every training template (and under each alias of its subject)."""
        out = []
        for f in self.facts:
            for name in (f.subject, *self.aliases.get(f.subject, ())):
                for t in RELATIONS_BY_ID[f.relation].train_templates:
                    out.append(f"{t.format(name)} {f.object}.")
        for name, alts in self.aliases.items():
            out.extend(f"{alt} is another name for {name}." for alt in alts)
        return out

    def heldout_sentences(self) -> list[str]:
        return [f"{t.format(f.subject)} {f.object}." for f in self.facts
                for t in RELATIONS_BY_ID[f.relation].heldout_templates]

    def one_hop_cases(self) -> list[tuple[str, str]]:
        """(prompt, answer) pairs for every composed question the world can answer."""
        out = []
        for first, second, template in ONE_HOP:
            for f in self.facts_by_relation[first]:
                answer = self.one_hop_answer(f.subject, first, second)
                if answer is not None:
                    out.append((template.format(f.subject), answer))
        return out


def _name(rng: random.Random, syllables: int) -> str:
    parts = [rng.choice(NAME_ONSETS) + rng.choice(NAME_VOWELS) for _ in range(syllables)]
    return ("".join(parts) + rng.choice(NAME_CODAS)).capitalize()


def _unique_names(rng: random.Random, n: int, make) -> list[str]:
    seen: set[str] = set()
    out: list[str] = []
    while len(out) < n:
        name = make()
        if name not in seen:
            seen.add(name)
            out.append(name)
    return out


def build_world(seed: int = 0, n_people: int = N_PEOPLE, n_companies: int = N_COMPANIES) -> World:
    """Generate the world deterministically from ``seed``."""
    rng = random.Random(seed)
    facts: list[Fact] = []
    aliases: dict[str, tuple[str, ...]] = {}
    city_country: dict[str, str] = {}
    language_of: dict[str, str] = {}

    for country, capital, continent, language, currency, cities, alts in COUNTRIES:
        facts += [Fact(country, "capital", capital), Fact(capital, "capital_of", country),
                  Fact(country, "continent", continent), Fact(country, "official_language", language),
                  Fact(country, "currency", currency)]
        language_of[country] = language
        for city in (capital, *cities):
            city_country[city] = country
            facts.append(Fact(city, "city_country", country))
        if alts:
            aliases[country] = alts

    cities = sorted(city_country)
    countries = sorted(language_of)
    languages = sorted(set(language_of.values()))
    reserved = set(cities) | set(countries)

    companies = _unique_names(
        rng, n_companies, lambda: f"{_name(rng, 2)} {rng.choice(COMPANY_SUFFIXES)}")
    for company in companies:
        facts += [Fact(company, "headquarters", rng.choice(cities)),
                  Fact(company, "industry", rng.choice(INDUSTRIES))]

    def person() -> str:
        name = f"{_name(rng, rng.choice((1, 2)))} {_name(rng, 2)}"
        return name if name not in reserved else person()

    for name in _unique_names(rng, n_people, person):
        city = rng.choice(cities)
        citizen = (city_country[city] if rng.random() < P_CITIZEN_OF_BIRTH_COUNTRY
                   else rng.choice(countries))
        native = (language_of[citizen] if rng.random() < P_NATIVE_IS_OFFICIAL
                  else rng.choice(languages))
        facts += [Fact(name, "birthplace", city), Fact(name, "citizenship", citizen),
                  Fact(name, "occupation", rng.choice(OCCUPATIONS)),
                  Fact(name, "employer", rng.choice(companies)),
                  Fact(name, "native_language", native)]

    return World(seed=seed, facts=tuple(facts), aliases=aliases)
