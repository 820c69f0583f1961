"""Write ``deepscaler_sample.jsonl``: DeepScaleR-shaped records generated in code.

    python examples/data/make_sample.py            # rewrites examples/data/deepscaler_sample.jsonl
    python examples/data/make_sample.py --check    # exit 1 if the committed file differs

Each line is ``{"problem", "answer", "solution", "id"}`` (DeepScaleR's three fields plus an id);
answers are exact (integers, reduced ``\\frac{a}{b}``, negatives), computed with fractions.
Nothing is downloaded.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from r1zero.demo.arith import sample_records

HERE = Path(__file__).resolve().parent
OUT = HERE / "deepscaler_sample.jsonl"
N_RECORDS, SEED = 256, 0


def render(n: int = N_RECORDS, seed: int = SEED) -> str:
    """The file's text: one JSON object per line, keys in DeepScaleR's order, then the id."""
    lines = []
    for rec in sample_records(n, seed):
        row = {k: rec[k] for k in ("problem", "answer", "solution", "id")}
        lines.append(json.dumps(row, ensure_ascii=False))
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--check", action="store_true",
                    help="compare with the file instead of writing it")
    args = ap.parse_args(argv)
    text = render()
    if args.check:
        same = args.out.is_file() and args.out.read_text(encoding="utf-8") == text
        print(f"{args.out}: {'up to date' if same else 'differs from make_sample.py output'}")
        return 0 if same else 1
    args.out.write_text(text, encoding="utf-8")
    print(f"wrote {N_RECORDS} records to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
