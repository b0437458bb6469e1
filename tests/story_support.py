"""The Class story's edits run through the core in the test process (not through the app), shared by the
story's AppTest and browser tests."""

from __future__ import annotations


def story_edits() -> dict:
    """The story's edits of the default fact: {"case", "main" (the ft-l+sss edit), "pairs" (each pair's
    (without, with SSS) runs, in ``app.panels.story.PAIRS`` order)}, each an ``analysis.EditRun``."""
    from app import resources
    from app.panels.story import PAIRS
    from sss_core import analysis
    from sss_core.editors import EDITORS
    lm = resources.get_model("default")
    case, background = resources.preset_cases()[0], resources.background_prompts()

    def edit(editor, changed):
        spec = EDITORS[editor]
        c = {spec.c_field: float(spec.defaults[spec.c_field])} if spec.has_c else {}
        return analysis.analyse_edit(lm, editor, {**c, **changed}, case, background)

    return {"case": case, "main": edit("ft-l+sss", {}),
            "pairs": [(edit(*p.without), edit(*p.with_sss)) for p in PAIRS]}
