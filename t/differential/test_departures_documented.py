"""Every difference the differential tests accept is a documented departure."""

from __future__ import annotations

from pathlib import Path

from .departures import DEPARTURES

GUIDE = Path(__file__).resolve().parents[2] / "docs" / "migrating-from-kombu.rst"


def test_every_accepted_difference_has_its_paragraph_in_the_migration_guide() -> None:
    text = GUIDE.read_text(encoding="utf-8")
    section = text[text.index("Deliberate departures") :]
    for departure in DEPARTURES:
        for title in departure.doc.split(" / "):
            assert f"**{title}" in section, f"{departure.key}: no paragraph {title!r} under Deliberate departures"
