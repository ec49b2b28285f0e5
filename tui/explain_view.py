"""``w``: what made the selected buckets (or the range) of the chart — a screen of the
conversations by bytes with their share, usual volume and new peers (``core.explain``);
Enter on a row makes that pair the filter, over that time. Mixed into
:class:`tui.app.VpcwatchApp`."""

from __future__ import annotations

from datetime import tzinfo
from typing import ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.widgets import DataTable, Static

from core.explain import PeakExplanation, explain
from core.timeline import TimeRange
from tui.cells import day_minute, human_bytes, plain, zone_name
from tui.screens import Closable

COLUMNS = ("address", "peer", "bytes", "share", "usual", "new", "flows", "ports")


class ExplainScreen(Closable):
    """The explanation; dismissed with the chosen (address, peer), or None."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "dismiss_screen", "close")]

    def __init__(self, found: PeakExplanation, zone: tzinfo):
        super().__init__()
        self.found, self.zone = found, zone

    def compose(self) -> ComposeResult:
        with Vertical(classes="modal"):
            yield Static(heading(self.found, self.zone), id="explain-heading")
            yield DataTable(cursor_type="row", zebra_stripes=True, id="explain-pairs")

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        table.add_columns(*COLUMNS)
        for row in self.found.pairs:
            usual = row["usual"]
            table.add_row(
                plain(row["address"], 39), plain(row["peer"], 39),
                Text(human_bytes(row["bytes"])), Text(f"{row['share']:.1%}"),
                Text("–" if usual is None else human_bytes(usual)),
                Text("★ new", style="bold yellow") if row["new"] else Text(""),
                Text(f"{row['flows']:,}"),
                plain(", ".join(str(p) for p in row["ports"]), 30))
        table.focus()

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        row = self.found.pairs[event.cursor_row]
        self.dismiss((row["address"], row["peer"]))


def heading(found: PeakExplanation, zone: tzinfo) -> Text:
    span = found.span
    text = Text("What made ", style="bold").append(
        f"{day_minute(span.start, zone)}–{day_minute(span.end, zone)} {zone_name(zone)}: "
        f"{human_bytes(found.total)}", style="bold")
    text.append(f"   usual: the mean over {found.usual_basis}\n", style="dim")
    text.append("ports: ").append(plain(", ".join(
        f"{port} {human_bytes(b)}" for port, b in found.ports) or "–", None))
    text.append("   accounts: ").append(plain(", ".join(
        f"{account} {human_bytes(b)}" for account, b in found.accounts) or "–", None))
    text.append(f"   alerts: {found.alerts.num_rows}")
    if found.alerts.num_rows:
        top = max(found.alerts.to_pylist(), key=lambda a: a["level"])
        text.append(" (highest: ").append(plain(top["title"], 80)).append(")")
    if found.too_long:
        text.append("\nno conversations: too many flows for index_memory; select a shorter span",
                    style="yellow")
        return text.append("\nEsc closes", style="dim")
    text.append("\nEnter: filter on the pair over this time; Esc closes", style="dim")
    return text


class ExplainKeys:
    def action_explain(self) -> None:
        span: TimeRange | None = self.selection or self.scope.range
        if span is None or self.explorer is None:
            self.notify("select buckets of the chart first (← →, shift, [ ])", markup=False)
            return
        self._background("explain", self._explain(span))

    async def _explain(self, span: TimeRange) -> None:
        found = await self._read(explain, self.explorer, self.scope, span)

        def chosen(pair: tuple[str, str] | None) -> None:
            # (addresses as the flows hold them: one filter term each, or none)
            if pair is not None and all(a and a.split() == [a] for a in pair) \
                    and self.apply_filter_text(" ".join(pair)):
                self.set_scope(range=span)

        await self.push_screen(ExplainScreen(found, self.zone), chosen)
