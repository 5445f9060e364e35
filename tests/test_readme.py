"""The README's config reference is the schema's (``ppr.config.describe``): every key, its type,
default and meaning, in order; regenerate the table when the schema changes."""

from __future__ import annotations

from pathlib import Path

from ppr.config import describe

README = Path(__file__).resolve().parents[1] / "README.md"


def test_config_reference_matches_the_schema():
    text = README.read_text(encoding="utf-8")
    start = text.index("| key | type | default | meaning |")
    table = text[start:].split("\n\n", 1)[0].splitlines()[2:]
    want = [f"| `{k}` | {t} | `{d}` | {doc} |" for k, t, d, doc in describe()]
    assert table == want
