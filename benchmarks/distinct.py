"""A raw folder whose rows never repeat, in a dataset with no declared schema.

The benchmark's raw files repeat Chinook's rows under declared schemas; reused on real data, the
ingestion meets neither. `write_distinct(folder, rows)` writes `events/` with a CSV file and a
JSON Lines file of `rows` rows each: an id, a user, an amount with two decimals, a label. Every
column is undeclared, so the native path types each per block, and no two rows are alike, so the
duplicate count fills its set. Seeded: the same call writes the same bytes.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

DATASET = "events"


def write_distinct(folder: Path, rows: int, seed: int = 7) -> Path:
    out = folder / DATASET
    out.mkdir(parents=True, exist_ok=True)
    draw = random.Random(seed)

    def record(i: int) -> tuple[int, int, str, str]:
        return i, draw.randrange(10**6), f"{draw.randrange(10**5) / 100:.2f}", \
            f"item {draw.randrange(10**4)}"

    with open(out / f"{DATASET}_0.csv", "w", encoding="utf-8") as f:
        f.write("EventId,UserId,Amount,Label\n")
        for i in range(rows):
            f.write(",".join(map(str, record(i))) + "\n")
    with open(out / f"{DATASET}_1.jsonl", "w", encoding="utf-8") as f:
        for i in range(rows, 2 * rows):
            event, user, amount, label = record(i)
            f.write(json.dumps({"EventId": event, "UserId": user, "Amount": float(amount),
                                "Label": label}) + "\n")
    return folder
