"""Terminal rendering of query results: readable tables, or one row per block when too wide."""

from __future__ import annotations

from mirror.index.output import (
    MIN_READABLE,
    clip,
    fits_horizontally,
    fits_whole,
    natural_widths,
    readable_widths,
    vertical_lines,
)

NAMES = ["Collection", "SeriesInstanceUID", "n"]
CELLS = [["Demo-Lung-CT", "2.25.120213771147200552531741", "36"],
         ["TCGA-LUAD", "1.3.6", "5"]]


def test_natural_and_readable_widths() -> None:
    assert natural_widths(NAMES, CELLS) == [12, 29, 2]
    assert readable_widths(NAMES, CELLS) == [MIN_READABLE, MIN_READABLE, 2]


def test_fits_decisions_by_width() -> None:
    # readable: 10+10+2 text, 3 per column, 1 border = 32; whole: 12+29+2 + 10 = 53
    assert not fits_horizontally(NAMES, CELLS, 31)
    assert fits_horizontally(NAMES, CELLS, 32)
    assert not fits_whole(NAMES, CELLS, 52)
    assert fits_whole(NAMES, CELLS, 53)


def test_clip_cuts_with_ellipsis_and_flattens_newlines() -> None:
    assert clip("abcdef", 6) == "abcdef"
    assert clip("abcdef", 4) == "abc…"
    assert clip("a\nb", 10) == "a b"


def test_vertical_lines_one_block_per_row_clipped_to_width() -> None:
    lines = vertical_lines(NAMES, CELLS, 40)
    assert lines[0] == "-[ row 1 ]" + "-" * 30
    assert lines[1] == "Collection        | Demo-Lung-CT"
    assert lines[2] == "SeriesInstanceUID | 2.25.12021377114720…"
    assert lines[4].startswith("-[ row 2 ]")
    assert all(len(line) <= 40 for line in lines)
    assert len(lines) == 2 * (1 + len(NAMES))


def test_cli_query_wide_result_is_readable_on_a_narrow_terminal(store, tree, monkeypatch) -> None:
    from typer.testing import CliRunner

    from mirror.cli import app
    from mirror.index.build import build_index

    build_index(store)
    monkeypatch.setenv("COLUMNS", "120")
    wide = CliRunner().invoke(app, ["query", "--dest", store.url, "SELECT * FROM series"])
    assert wide.exit_code == 0, wide.output
    uid = sorted(tree)[0]
    # A whole UID is on its own line (no column of "2…"), and the hint names the full formats.
    assert any(line.endswith(f"| {uid}") for line in wide.output.splitlines())
    assert "-[ row 1 ]" in wide.output and "--format csv|json" in wide.output
    assert all(len(line) <= 120 for line in wide.output.splitlines())
    narrow = CliRunner().invoke(
        app, ["query", "--dest", store.url, "SELECT SeriesInstanceUID FROM series ORDER BY 1"])
    assert narrow.exit_code == 0 and "-[ row" not in narrow.output
    assert f"│ {uid} │" in narrow.output
