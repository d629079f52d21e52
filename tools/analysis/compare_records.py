"""Where two models' per-record log-probabilities differ (BENCHMARKS.md, "What limits the
single-survey LM"): the mean difference of `logp_norm` (A - B) by record kind (first record; after
a non-work state; after a job) and outcome (stay / move), and, for records after a job, by how
often the previous label occurs in the panel.

    python tools/analysis/compare_records.py A.parquet B.parquet PANEL.parquet

Needs pandas and pyarrow (`pip install pandas pyarrow`); reads prediction files in the SPEC §7.1
schema. Not part of the product: a reading aid for prediction files.
"""

import sys

import pandas as pd
import pyarrow.parquet as pq

NON_WORK = {"NILF", "EDUC", "UNEMP"}


def main(a_path: str, b_path: str, panel_path: str) -> None:
    a = pq.read_table(a_path).to_pandas()
    b = pq.read_table(b_path).to_pandas()
    m = a.merge(b, on=["dataset", "person_id", "year"], suffixes=("_a", "_b"))
    if len(m) != len(a) or len(m) != len(b):
        sys.exit(f"the files score different records ({len(a)}, {len(b)}, {len(m)} in common)")
    m["diff"] = m.logp_norm_a - m.logp_norm_b
    m["stay"] = m.label_a == m.prev_label_a
    m["kind"] = "after a job"
    m.loc[m.prev_label_a.isin(NON_WORK), "kind"] = "after a non-work state"
    m.loc[m.t_a == 1, "kind"] = "first record"
    agg = dict(records=("diff", "size"), mean_diff=("diff", "mean"),
               p_stay_a=("p_stay_a", "mean"), p_stay_b=("p_stay_b", "mean"))
    print(f"A = {m.model_a.iloc[0]}, B = {m.model_b.iloc[0]}; mean diff (A - B) "
          f"{m['diff'].mean():.5f} over {len(m)} records\n")
    print(m.groupby(["kind", "stay"]).agg(**agg).to_string(), "\n")
    panel = pq.read_table(panel_path, columns=["label"]).to_pandas()
    freq = panel.label.value_counts()
    w = m[m.kind == "after a job"].copy()
    w["previous label's count"] = pd.cut(w.prev_label_a.map(freq).fillna(0),
                                         [0, 100, 300, 1000, 3000, float("inf")])
    print(w.groupby(["previous label's count", "stay"], observed=True).agg(**agg).to_string())


if __name__ == "__main__":
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    main(*sys.argv[1:])
