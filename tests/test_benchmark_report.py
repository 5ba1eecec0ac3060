"""benchmarks/report.py: docs/benchmarks.md keeps one section per CPU model and the notes under them."""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from report import NOTES_MARKER, SECTION_BEGIN, write_cpu_section  # noqa: E402


def test_each_cpu_keeps_its_own_section_and_the_notes_survive(tmp_path):
    path = tmp_path / "bench.md"
    write_cpu_section(path, "Engine benchmarks", "CPU A (family 1, model 2)", "table A1", heading="CPU A, Zen 9")
    path.write_text(path.read_text() + "\n" + NOTES_MARKER + "\nhand-written notes\n")
    write_cpu_section(path, "Engine benchmarks", "CPU B (family 3, model 4)", "table B1")
    write_cpu_section(path, "Engine benchmarks", "CPU A (family 1, model 2)", "table A2", heading="CPU A, Zen 9")
    text = path.read_text()
    assert text.startswith("# Engine benchmarks\n")
    assert "table A1" not in text and text.count("table A2") == 1 and text.count("table B1") == 1
    assert text.count(SECTION_BEGIN.format("CPU A (family 1, model 2)")) == 1
    assert text.index("## CPU A, Zen 9") < text.index("## CPU B (family 3, model 4)") < text.index(NOTES_MARKER)
    assert text.endswith("hand-written notes\n")


def test_text_before_the_sections_is_kept(tmp_path):
    path = tmp_path / "bench.md"
    path.write_text("# Engine benchmarks\n\nolder table without sections\n")
    write_cpu_section(path, "Engine benchmarks", "CPU C (family 5, model 6)", "table C")
    text = path.read_text()
    assert "older table without sections" in text
    assert text.index("older table") < text.index("## CPU C (family 5, model 6)")
