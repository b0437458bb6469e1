"""When the edits being compared are the same edits, in words: the editor with and without SSS over the same
cases (the Hypothesis view), one edit at several C (the C sweep), A and B (Compare).

"Same" is read from the results, never assumed: a pair of edits of the same case is the same when its
predictions after the edit (the results frame's ``post``) and its four scores are equal; a sweep's points
are the same when their scores are. Why FT-L and FT-L+SSS make the same edits at the default settings
was measured and is written in docs/editors.md ("FT-L and FT-L+SSS make the same edit"); ``FTL_REASON``
says it in the app, for the FT-L family only (other editors have no such measurement).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import pandas as pd

from sss_core.editors import EDITORS, editor_config
from sss_core.evaluation.report import single, sss_pairs

SCORES = ("reliability", "generality", "locality", "portability")
_BOX, _LOOSE_BOX = editor_config("ft-l").norm_constraint, editor_config("ft-l+sss-loose-sum").norm_constraint
FTL_REASON = (
    "Why, as measured for FT-L (docs/editors.md, 600 paired world edits): at C = 0.9 the SSS term's gradient on "
    "the edited weight is 100-1000 times smaller than the edit loss's; Adam moves each weight by about its "
    f"learning rate in the sign of its gradient whatever the loss's scale; the ±{_BOX:g} box around the original "
    "weights clamps them; and early stopping ends the edit after a few steps, before the SSS term could "
    f"dominate. The preset ft-l+sss-loose-sum (a ±{_LOOSE_BOX:g} box, the SSS term summed over tokens) is the "
    "measured setting where the SSS term changes FT-L's edits most.")


def _ftl_family(editor: str) -> bool:
    """Is ``editor`` FT-L or one of its SSS variants (the editors docs/editors.md's measurement is about)?"""
    spec, ftl = EDITORS.get(editor), EDITORS["ft-l"]
    return spec is not None and (spec.factory, spec.config_cls) == (ftl.factory, ftl.config_cls)


def _at_defaults(settings: str) -> bool:
    """Does ``app.hypothesis.settings_text``'s description say an editor ran at its defaults, C aside?"""
    return settings == "defaults" or all(part.startswith("C = ") for part in settings.split(", "))


def reason_for(editors: Sequence[str], settings: Mapping[str, str] | None = None) -> str:
    """``FTL_REASON`` when every one of ``editors`` is of the FT-L family and, where ``settings`` (editor -> its
    settings in words, ``app.hypothesis.settings_text``) says, ran at its default settings apart from C (the
    measurement's settings); else "" (no measured reason for these edits)."""
    if not editors or not all(_ftl_family(e) for e in editors):
        return ""
    if settings is not None and not all(_at_defaults(settings.get(e, "")) for e in editors):
        return ""
    return FTL_REASON


def _same(a, b) -> bool:
    """Equal, NaN equal to NaN."""
    return (pd.isna(a) and pd.isna(b)) or a == b


@dataclass(frozen=True)
class PairedSameness:
    """How many paired cases (same seed and case) an editor with SSS and the same editor without edited alike."""

    without_sss: str
    with_sss: str
    identical: int  # cases whose predictions after the edit and four scores are equal
    pairs: int

    def sentence(self) -> str:
        """E.g. "ft-l+sss and ft-l made the same edits as far as any score can tell: all 30 paired cases have
        identical predictions after the edit and identical scores ..." or "... 27 of 30 paired cases ..."."""
        if self.identical == self.pairs:
            return (f"{self.with_sss} and {self.without_sss} made the same edits as far as any score can tell: all "
                    f"{self.pairs} paired cases have identical predictions after the edit and identical scores "
                    "(their weight updates may still differ slightly), so every paired difference below is 0.")
        return (f"{self.with_sss} and {self.without_sss}: {self.identical} of {self.pairs} paired cases have "
                "identical predictions after the edit and identical scores.")


def paired_sameness(frame: pd.DataFrame) -> list[PairedSameness]:
    """For each (editor without SSS, editor with SSS) pair in the results frame (``report.sss_pairs``), the
    paired cases that ran both without error and how many of them are identical. [] when no pair ran."""
    rows = single(frame[frame["error"].isna()])
    out = []
    for base, with_sss in sss_pairs(list(dict.fromkeys(rows["editor"]))):
        a = rows[rows["editor"] == base].set_index(["seed", "case_id"])
        b = rows[rows["editor"] == with_sss].set_index(["seed", "case_id"])
        both = a.index.intersection(b.index)
        if both.empty:
            continue
        a, b = a.loc[both], b.loc[both]
        same = [str(a.at[i, "post"]) == str(b.at[i, "post"]) and all(_same(a.at[i, m], b.at[i, m]) for m in SCORES
                                                                     if m in a.columns)
                for i in both]
        out.append(PairedSameness(base, with_sss, sum(same), len(both)))
    return out


def _same_scores(a: dict, b: dict) -> bool:
    return all(_same(a.get(m), b.get(m)) for m in SCORES)


def _cs(points: Sequence) -> str:
    """"0, 0.25 and 0.5" for the points' C."""
    cs = [f"{p.c:g}" for p in points]
    return cs[0] if len(cs) == 1 else ", ".join(cs[:-1]) + " and " + cs[-1]


def sweep_sameness(points: Sequence, reason: str = "") -> str | None:
    """A sentence when consecutive points of a C sweep (``analysis.SweepPoint``s, in order of C) have the same
    four scores: the longest such run of C, its scores, how far lambda_max after the edit still moved there
    (the SSS term's own measure, which can change while no prediction does), and the C where a score did
    change; then ``reason`` (``reason_for``) when that run starts at C = 0, the editor without its SSS term.
    None when no two consecutive points score alike.
    """
    runs: list[list] = []
    for p in points:
        if runs and _same_scores(runs[-1][0].metrics, p.metrics):
            runs[-1].append(p)
        else:
            runs.append([p])
    same = max(runs, key=len) if runs else []
    if len(same) < 2:
        return None
    first = same[0].metrics
    scores = ", ".join(f"{m} {first[m]:.2f}" for m in SCORES if not pd.isna(first.get(m)))
    lams = [p.lambda_max_after for p in same if not pd.isna(p.lambda_max_after)]
    moved = (f"; λ_max after the edit ranged from {min(lams):.3g} to {max(lams):.3g} there"
             if lams and max(lams) > min(lams) else "")
    why = " " + reason if reason and same[0].c == 0 else ""
    if len(same) == len(points):
        return f"C changed none of the scores: at every C ({_cs(same)}) the edit scored {scores}{moved}.{why}"
    others = [p for p in points if p not in same]
    return (f"At C = {_cs(same)} the edit scored the same: {scores}{moved}. "
            f"Only at C = {_cs(others)} did a score differ.{why}")
