"""Fail when any test was skipped, or when no PostgreSQL test ran."""

from __future__ import annotations

import sys
import xml.etree.ElementTree as ET


def main(path: str) -> int:
    root = ET.parse(path).getroot()  # noqa: S314 - our own pytest output
    cases = list(root.iter("testcase"))
    skipped = [c for c in cases if c.find("skipped") is not None]
    postgres = [c for c in cases if "postgresql" in c.get("name", "")]
    postgres_ran = [c for c in postgres if c.find("skipped") is None]
    print(f"{len(cases)} tests, {len(skipped)} skipped, {len(postgres_ran)} ran on PostgreSQL")
    if skipped:
        for case in skipped[:20]:
            print(f"skipped: {case.get('classname')}::{case.get('name')}")
        return 1
    if not postgres_ran:
        print("no PostgreSQL test ran")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
