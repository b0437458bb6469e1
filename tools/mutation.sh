#!/usr/bin/env bash
# Mutation testing of the science core with mutmut (slow: not part of CI). Needs pip install -e ".[mutation]".
#
#   tools/mutation.sh sss           # sss_core/sss.py against its fast tests
#   tools/mutation.sh metrics       # sss_core/evaluation/metrics.py
#   tools/mutation.sh report        # report.py + hypothesis.py
#   tools/mutation.sh store         # evaluation/store.py
#   tools/mutation.sh ftl           # editors/ftl.py
#   tools/mutation.sh mend          # editors/mend.py (its loss, transform and training)
#   tools/mutation.sh serac         # editors/serac.py
#   MUTATION_TIMEOUT=1800 MUTATION_CHILDREN=2 tools/mutation.sh sss
#
# Works on a copy of the committed tree (git archive HEAD) in $MUTATION_DIR (default
# /tmp/sss-mutation/TARGET), so the working tree is never touched. For each target only the
# fast tests that cover it run (mutmut then runs, per mutant, only the tests that call the
# mutated function). The whole run is bounded by $MUTATION_TIMEOUT seconds. Prints the score
# and writes every surviving mutant's diff to $MUTATION_DIR/survivors.txt.
# Results and the survivors' explanations are recorded in docs/testing.md.
set -uo pipefail

# Everything in one function, read whole before it runs: editing this file during a run cannot break it.
main() {
    target=${1:?usage: tools/mutation.sh sss|metrics|report|store|ftl|mend|serac}
    root=$(cd "$(dirname "$0")/.." && pwd)
    dir=${MUTATION_DIR:-/tmp/sss-mutation/$target}
    children=${MUTATION_CHILDREN:-2}
    limit=${MUTATION_TIMEOUT:-1800}

    case $target in
        sss)     files="sss_core/sss.py"
                 tests="tests/test_sss.py tests/test_sss_formula.py tests/test_sss_in_ftl.py::test_sss_term_gradient_reaches_the_edited_weight" ;;
        metrics) files="sss_core/evaluation/metrics.py"
                 tests="tests/evaluation/test_metric_definitions.py tests/test_ftl.py::test_run_edit_metrics_on_a_world_fact" ;;
        report)  files="sss_core/evaluation/report.py sss_core/evaluation/hypothesis.py"
                 tests="tests/evaluation/test_report_tables.py tests/evaluation/test_report_write.py tests/evaluation/test_report_html.py tests/evaluation/test_hypothesis.py" ;;
        store)   files="sss_core/evaluation/store.py"
                 tests="tests/evaluation/test_store.py tests/evaluation/test_store_frame.py tests/evaluation/test_report_tables.py tests/evaluation/test_report_write.py" ;;
        ftl)     files="sss_core/editors/ftl.py"
                 tests="tests/test_ftl.py tests/test_sss_in_ftl.py" ;;
        mend|serac) files="sss_core/editors/$target.py"
                 tests="tests/editors/test_mend_serac.py tests/editors/test_training_resume.py" ;;
        *) echo "unknown target $target" >&2; exit 2 ;;
    esac

    rm -rf "$dir" && mkdir -p "$dir"
    git -C "$root" archive HEAD | tar -x -C "$dir"
    cd "$dir"
    {
        echo "[mutmut]"
        echo "source_paths = sss_core/"
        printf 'only_mutate =\n'; for f in $files; do printf '    %s\n' "$f"; done
        printf 'pytest_add_cli_args_test_selection =\n'; for t in $tests; do printf '    %s\n' "$t"; done
        echo "pytest_add_cli_args = -p no:cacheprovider -x -q"
        echo "use_git_change_detection = false"
    } > setup.cfg
    # mutmut reads pyproject.toml's [tool.mutmut] first; this copy's pyproject has none, so setup.cfg is used.
    # one thread: torch's OpenMP pool does not survive the fork of each mutant's test process (it hangs)
    export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
    timeout "$limit" python -m mutmut run --max-children "$children"
    status=$?
    ((status == 124)) && echo "stopped after $limit s: the results below are partial"
    python -m mutmut results --all true > results.txt 2>&1 || true
    killed=$(grep -cE ': killed$' results.txt)
    total=$(grep -cE ': [a-z ]+$' results.txt)
    echo "mutants: $total, killed: $killed, score: $(python -c "print(f'{100 * $killed / max(1, $total):.1f}%')")"
    grep -E ': (survived|no tests|timeout|suspicious)$' results.txt | tee not_killed.txt
    : > survivors.txt
    for m in $(grep -E ': survived$' results.txt | cut -d: -f1); do
        python -m mutmut show "$m" >> survivors.txt 2>&1
    done
    echo "survivors' diffs: $dir/survivors.txt"
}

main "$@"
exit
