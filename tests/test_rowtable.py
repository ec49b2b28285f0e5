"""The line-API table lays cells out as rich's own Text methods would (cut with an ellipsis,
padded or right-aligned), including wide characters, and keeps each cell's colour over the
row's (a level's colour showed as the plain foreground before)."""

from __future__ import annotations

import pytest
from rich.text import Text

from tui.widgets.rowtable import _fit


def rich_layout(text: str, width: int, right: bool) -> str:
    cell = Text(text)
    cell.truncate(width, overflow="ellipsis")
    if right:
        cell.align("right", width)
    else:
        cell.pad_right(width - cell.cell_len)
    return cell.plain


@pytest.mark.parametrize("text", ["", "x", "10.0.1.7", "a" * 40, "日本語のテキスト",
                                  "e\u0301t\u00e9"])
@pytest.mark.parametrize("width", [1, 2, 5, 17])
@pytest.mark.parametrize("right", [False, True])
def test_a_cell_fits_its_column_as_rich_would(text: str, width: int, right: bool) -> None:
    assert _fit(text, width, right) == rich_layout(text, width, right)


async def test_cells_keep_their_colours_and_their_columns() -> None:
    from textual.app import App, ComposeResult

    from tui.widgets.rowtable import Column, RowTable

    class One(App[None]):
        def compose(self) -> ComposeResult:
            yield RowTable([Column("a", 5), Column("n", 4, right=True), Column("lvl", 3)])

    async with One().run_test(size=(40, 5)) as pilot:
        table = pilot.app.query_one(RowTable)
        parts = Text.assemble(("ab", "red"), ("cdefgh", "blue"))
        table.set_rows([(parts, Text("7"), Text("12", style="yellow"))], list)
        line = table.render_line(1)
        assert line.text[:15] == "abcd…    7 12  "
        colours = {seg.text.strip(): seg.style.color.name for seg in line
                   if seg.style and seg.style.color and seg.text.strip()}
        # each cell's own colour shows over the row's
        assert (colours["ab"], colours["cd…"], colours["12"]) == ("red", "blue", "yellow")
