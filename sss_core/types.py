"""Plain, frozen data types shared by the core, the CLI and the app."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

from .errors import RequestError

# Probe groups, in the order reports show them.
GROUPS = ("rewrite", "paraphrase", "neighbour", "pre_neighbour", "post_neighbour",
          "distract_neighbour", "unrelated_attribute", "subject_replace", "reversed_relation",
          "one_hop")
# Groups scored as locality: post-edit predictions must equal pre-edit predictions.
LOCALITY_GROUPS = ("neighbour", "pre_neighbour", "post_neighbour", "distract_neighbour",
                   "unrelated_attribute")
PORTABILITY_GROUPS = ("subject_replace", "reversed_relation", "one_hop")


@dataclass(frozen=True)
class EditRequest:
    """One fact to write: ``prompt + " " + target_new`` should become true.

    Example:
        >>> EditRequest("The capital of France is", "Rome", subject="France").validate()
    """

    prompt: str
    target_new: str
    subject: str | None = None
    ground_truth: str | None = None  # the answer before the edit, when known
    case_id: str | None = None
    template: str | None = None  # the prompt with "{}" where the subject stands, when the data has one

    def validate(self, needs_subject: bool = False) -> EditRequest:
        """Raise RequestError with a clear message if the request cannot be edited."""
        if not self.prompt or not self.prompt.strip():
            raise RequestError("the prompt is empty: type the sentence to edit, e.g. 'The capital of France is'")
        if not self.target_new or not self.target_new.strip():
            raise RequestError("the new target is empty: type the answer the edited model should give")
        if needs_subject or self.subject is not None:
            if not self.subject or not self.subject.strip():
                raise RequestError("this editor needs the subject: the words of the prompt the fact is about")
            if self.subject.strip() not in self.prompt:
                raise RequestError(f"the subject {self.subject!r} does not occur in the prompt {self.prompt!r}; "
                                   "type it exactly as it appears in the prompt")
        if self.template is not None:
            if "{}" not in self.template:
                raise RequestError(f"the template {self.template!r} has no '{{}}' where the subject goes")
            if self.subject is None or self.template.replace("{}", self.subject.strip(), 1) != self.prompt:
                raise RequestError(f"the template {self.template!r} filled with the subject {self.subject!r} is "
                                   f"not the prompt {self.prompt!r}: give the prompt the template makes")
        return self


@dataclass(frozen=True)
class Probe:
    """A prompt whose continuation ``answer`` is scored after an edit.

    For locality groups ``answer`` is only the text fed for teacher forcing; the score compares
    post-edit with pre-edit predictions. For the others it is the expected answer.
    """

    prompt: str
    answer: str
    group: str


@dataclass(frozen=True)
class EditCase:
    """An edit request with the probes that evaluate it."""

    request: EditRequest
    probes: tuple[Probe, ...] = ()
    relation: str | None = None

    def group(self, name: str) -> tuple[Probe, ...]:
        """The case's probes of group ``name`` (e.g. "paraphrase"), in order."""
        return tuple(p for p in self.probes if p.group == name)


@dataclass(frozen=True)
class ProbeResult:
    """Score of one probe with the raw predictions kept (token strings)."""

    probe: Probe
    score: float
    target_tokens: tuple[str, ...]
    pre_tokens: tuple[str, ...]  # teacher-forced argmax before the edit
    post_tokens: tuple[str, ...]  # ... and after


@dataclass(frozen=True)
class EditResult:
    """Everything measured for one edit (JSON-ready through ``to_dict``)."""

    editor: str
    request: EditRequest
    metrics: dict[str, float]
    probes: tuple[ProbeResult, ...] = ()
    lambda_max_before: float = math.nan
    lambda_max_after: float = math.nan
    seconds: float = math.nan
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Every field as plain Python values (nested dataclasses as dicts)."""
        return asdict(self)
