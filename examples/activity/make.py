"""Makes examples/activity from examples/panel: the same 150 persons with one activity code a
year on a six-label taxonomy of our own (three occupation groups and the three special states),
and only id, sex and race as covariates: the shape of a small public extract.

    python3 examples/activity/make.py   # from the repository root; stdlib only
"""
import csv
from pathlib import Path

HERE = Path(__file__).resolve().parent
SOURCE = HERE.parent / "panel" / "panel.csv"

# The SOC major group (the code's first two digits) of each embedded occupation, coarsened.
GROUPS = [
    ("PROF", "Professional, technical and managerial work", "Professional", range(11, 30)),
    ("SERV", "Service, sales and office work", "Service", range(31, 44)),
    ("MANU", "Manual, farm and military work", "Manual", range(45, 56)),
]


def activity(code: str) -> str:
    if code in ("UNEMP", "NILF", "EDUC"):
        return code
    major = int(code.split("-")[0])
    for short, _, _, majors in GROUPS:
        if major in majors:
            return short
    raise ValueError(f"{code}: no group")


def main() -> None:
    with open(HERE / "taxonomy.csv", "w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["code", "title", "group"])
        for short, title, group, _ in GROUPS:
            w.writerow([short, title, group])
    with open(SOURCE, newline="") as src, open(HERE / "panel.csv", "w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["dataset", "person_id", "year", "label", "gender", "race"])
        for row in csv.DictReader(src):
            w.writerow(["ACTIVITY", row["person_id"], row["year"], activity(row["label"]),
                        row["gender"], row["race"]])


if __name__ == "__main__":
    main()
