"""`rrsis-bench claims`: regenerate the claims table and its evidence in docs/claims.md from run records."""

from __future__ import annotations

from rich.console import Console

CLAIMS_HELP = """\
usage: rrsis-bench claims [records=DIR[,DIR...]] [earlier=DIR] [out=docs/claims.md] [figures=docs/figures]
                          [check=false]

Rewrite the generated regions of the claims document (between '<!-- claims:NAME -->' and
'<!-- /claims:NAME -->' lines; the prose around them is kept) from the complete run records found
below records= (default: leaderboards/records,leaderboards/studies, the committed records and studies;
earlier= (default leaderboards/earlier) holds records of other budgets and machines, which only the
table of budgets tried before S reads):
  setting    the shared setting S and whether each method's val mIoU had plateaued there
  table      every claim of the seed methods' papers: the paper's Δ where the reported table has
             both rows, the cells with and without the component (3 seeds at S), Δ with a 95 % t
             interval over the seed-paired differences, the paired permutation test over test samples
             and a verdict (holds / does not hold (it hurts) / not distinguishable at this budget)
  sources    what each paper says, its source, and the two `rrsis-bench run` cells of each claim
  lr         the learning-rate sweep (one seed per lr, picked on val) and tuned against untuned lr
  strata     mIoU by object size, category and expression type of each method against the baseline
  gradients  gradient norms and weight change per module (figures/gradient-flow.jsonl, written by
             python tests/benchmarks/gradient_flow.py RUN ... --json docs/figures/gradient-flow.jsonl)
A cell is matched by the group hash of the config `rrsis-bench run OVERRIDES` composes, so records
of another code version whose config differs are not mixed in. check=true writes nothing and exits 1
when the document is not what the records give (a test runs it). See docs/claims.md.
"""


def claims_command(records: list[str], out: str, figures: str, console: Console, *, earlier: str = "",
                   check: bool = False) -> int:
    from pathlib import Path

    from rrsis_bench.results.claims import write_claims_doc
    from rrsis_bench.results.leaderboard import load_reported
    from rrsis_bench.results.record import load_records

    sources = [Path(p) for p in records if p]
    existing = [p for p in sources if p.exists()]
    if not existing:
        raise FileNotFoundError(f"No record folder found among {', '.join(map(str, sources))}; pass records=DIR[,DIR...].")
    loaded = load_records(existing)
    before = load_records([earlier]).records if earlier and Path(earlier).exists() else []
    path, changed = write_claims_doc(loaded.records, out, reported=load_reported(), figures=figures, earlier=before,
                                     check=check)
    if check:
        console.print(f"{path} is {'NOT ' if changed else ''}what the {len(loaded.records)} records give"
                      + ("; run `rrsis-bench claims` to regenerate it." if changed else "."), highlight=False)
        return 1 if changed else 0
    console.print(f"{len(loaded.records)} records → {path}" + ("" if changed else " (unchanged)"), highlight=False)
    return 0
