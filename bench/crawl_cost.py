"""What one Common Crawl crawl would cost, projected from the figures the other benches measured.

    python bench/crawl_cost.py [--work DIR] [--warcs N] [--records-per-warc N]
                               [--kept-fraction F] [--survivor-fraction F]

Reads the `crawl_cost` rows that bench/ingest.py, bench/dedup.py (scale) and bench/tokens.py wrote
under WORK (each row: stage, system, records = the stage's input, core_seconds = seconds x cores used,
optionally kept = records the stage passed on) and prints, per stage and system, the core-seconds per
1,000 input records and the core-hours for one crawl: ~90,000 WARCs of ~35,000 records each enter
ingest; dedup sees the fraction ingest keeps, tokenize the fraction dedup keeps (both measured on the
bench data unless given). Rows of other systems (datatrove) sit beside tokenmill's for the same stage.
The projection is linear in the records, which the dedup bench's growth exponent (<= 1.0) supports.
Results: a table on stdout and WORK/crawl_cost.json.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_WORK = REPO_ROOT / "bench" / "work"
WARCS, RECORDS_PER_WARC = 90_000, 35_000
SOURCES = ("ingest_results.json", "dedup/dedup_results.json", "tokenize_results.json")
STAGE_ORDER = ("ingest", "dedup", "tokenize")


def read_rows(work: Path) -> list[dict[str, Any]]:
    """Every `crawl_cost` row the benches wrote (a bench not run yet contributes none)."""
    rows = []
    for name in SOURCES:
        path = work / name
        if path.is_file():
            results = json.loads(path.read_text())
            rows += results.get("crawl_cost", []) + results.get("scale", {}).get("crawl_cost", [])
    return rows


def measured_fraction(rows: list[dict[str, Any]], stage: str) -> float | None:
    """kept / records of tokenmill's first row for `stage` that says what it kept."""
    for row in rows:
        if row["stage"] == stage and row["system"].startswith("tokenmill") and row.get("kept") is not None:
            return row["kept"] / row["records"]
    return None


def fraction(given: float | None, rows: list[dict[str, Any]], stage: str, producer: str) -> float:
    """The fraction given on the command line, else the measured one, else 1 (said so on stdout)."""
    if given is not None:
        return given
    if (measured := measured_fraction(rows, stage)) is not None:
        return measured
    print(f"{stage}: no measured kept fraction (run {producer}); assuming it keeps every record")
    return 1.0


def stage_inputs(records: int, kept: float, survivors: float) -> dict[str, float]:
    """Records entering each stage in one crawl."""
    return {"ingest": records, "dedup": records * kept, "tokenize": records * kept * survivors}


def project(rows: list[dict[str, Any]], inputs: dict[str, float]) -> list[dict[str, Any]]:
    table = []
    for row in rows:
        stage = row["stage"].split(" ")[0]  # "dedup (signatures only)" is priced on dedup's input
        per_1000 = 1000 * row["core_seconds"] / row["records"]
        table.append(
            {
                **row,
                "core_seconds_per_1000": round(per_1000, 3),
                "crawl_input_records": round(inputs[stage]),
                "crawl_core_hours": round(per_1000 * inputs[stage] / 1000 / 3600),
            }
        )
    return sorted(table, key=lambda r: (STAGE_ORDER.index(r["stage"].split(" ")[0]), r["stage"], r["system"]))


def print_table(table: list[dict[str, Any]], inputs: dict[str, float], kept: float, survivors: float) -> None:
    print(
        f"one crawl: {inputs['ingest']:,.0f} records into ingest; dedup gets {kept:.1%} of them "
        f"({inputs['dedup']:,.0f}), tokenize {survivors:.1%} of those ({inputs['tokenize']:,.0f})"
    )
    print(f"\n{'stage':<26}{'system':<44}{'records':>9}{'core-s':>10}{'core-s/1k':>11}{'crawl core-h':>14}")
    for row in table:
        print(
            f"{row['stage']:<26}{row['system']:<44}{row['records']:>9,}{row['core_seconds']:>10.1f}"
            f"{row['core_seconds_per_1000']:>11.2f}{row['crawl_core_hours']:>14,}"
        )
    tokenmill = sum(
        row["crawl_core_hours"]
        for row in table
        if row["system"].startswith("tokenmill")
        and row["stage"] in STAGE_ORDER
        and "resiliparse" not in row["system"]
    )
    print(f"\ntokenmill, fineweb preset, ingest + dedup + tokenize: {tokenmill:,} core-hours per crawl")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--work", type=Path, default=DEFAULT_WORK, help=f"bench results (default {DEFAULT_WORK})"
    )
    parser.add_argument("--warcs", type=int, default=WARCS, help=f"WARC files in a crawl (default {WARCS:,})")
    parser.add_argument(
        "--records-per-warc", type=int, default=RECORDS_PER_WARC, help=f"default {RECORDS_PER_WARC:,}"
    )
    parser.add_argument("--kept-fraction", type=float, help="of ingest's input (default: the ingest bench's)")
    parser.add_argument(
        "--survivor-fraction", type=float, help="of dedup's input (default: the dedup bench's)"
    )
    args = parser.parse_args()

    rows = read_rows(args.work)
    if not rows:
        raise SystemExit(f"no crawl_cost rows under {args.work}: run the benches first (make bench)")
    kept = fraction(args.kept_fraction, rows, "ingest", "bench/ingest.py")
    survivors = fraction(args.survivor_fraction, rows, "dedup", "make bench-scale")
    inputs = stage_inputs(args.warcs * args.records_per_warc, kept, survivors)
    table = project(rows, inputs)
    print_table(table, inputs, kept, survivors)
    out = args.work / "crawl_cost.json"
    out.write_text(
        json.dumps({"inputs": inputs, "kept": kept, "survivors": survivors, "rows": table}, indent=1)
    )
    print(f"\nresults: {out}")


if __name__ == "__main__":
    main()
