"""The comparison tables in the terminal: as wide as the terminal allows, and never a number broken
across lines (the columns that do not fit follow in tables of their own)."""

from __future__ import annotations

from collections.abc import Sequence

from rich.table import Table

from bench import console
from bench.report.aggregate import Group
from bench.report.cells import (
    FIRST_COLUMNS, PAIR_COLUMNS, PAIRS_TITLE, comparison_cells, comparison_columns, comparison_notes,
    comparison_title, pair_cells, pair_notes,
)


def _pairs_table(group: Group, digits: int | None = None) -> Table:
    from rich import box
    from rich.text import Text

    table = Table(title=PAIRS_TITLE, title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)
    for key, header, numeric in PAIR_COLUMNS:
        table.add_column(header, justify="right" if numeric else "left", overflow="fold",
                         no_wrap=numeric or key in ("a", "b"))
    for pair in group.pairs:
        cells = [Text(text) for text in pair_cells(group, pair, digits)]  # plain text: a name is not markup
        table.add_row(*cells, style="bold" if pair.test.winner is not None else None)
    return table


def print_comparison(groups: list[Group], columns: Sequence[str] | None = None, digits: int | None = None) -> None:
    """Print one comparison table per group, best FID in bold, reference points and the pairwise tests under it."""
    from rich import box
    from rich.text import Text

    for index, group in enumerate(groups, 1):
        cols = comparison_columns(group, terse=True, columns=columns)
        keys = [key for key, _, _ in cols]
        rows = []
        for row in group.rows:
            cells = [Text(text, style="bold" if best else "")
                     for text, best in comparison_cells(group, row, terse=True, columns=columns, digits=digits)]
            if row.diverged and "status" in keys:
                cells[keys.index("status")].stylize("red")
            rows.append(cells)
        widths = [max([len(header), *(cell.cell_len for cell in (r[i] for r in rows))]) for i, (_, header, _) in
                  enumerate(cols)]
        for part, shown in enumerate(_parts(keys, widths, console.out.width)):
            title = comparison_title(index, group) + ("" if part == 0 else " (continued)")
            table = Table(title=Text(title), title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)
            for i in shown:  # numbers, names and statuses stay whole; a part is narrow enough for them
                key, header, numeric = cols[i]
                table.add_column(header, justify="right" if numeric else "left", overflow="fold",
                                 no_wrap=numeric or key in ("arch", "status"))
            for cells in rows:
                table.add_row(*(cells[i] for i in shown))
            console.out.print(table)
        for line in comparison_notes(group):
            console.out.print(Text(line), soft_wrap=True)
        if group.pairs:
            console.out.print(_pairs_table(group, digits))
            for line in pair_notes(group):
                console.out.print(Text(line), soft_wrap=True)
        console.out.print()


def _parts(keys: list[str], widths: list[int], width: int) -> list[list[int]]:
    """The column indices of each table a terminal ``width`` wide shows: all at once where they fit, else
    :data:`FIRST_COLUMNS` first and the rest in as few tables as fit, each led by the first column."""
    cost = [w + 3 for w in widths]  # a column's cells, its padding either side and the rule between columns
    if sum(cost) <= width:
        return [list(range(len(keys)))]
    first = [i for i, key in enumerate(keys) if key in FIRST_COLUMNS] or [0]
    parts, current = [first], [0]
    for i in range(len(keys)):
        if i in first:
            continue
        if len(current) > 1 and sum(cost[j] for j in current) + cost[i] > width:
            parts.append(current)
            current = [0]
        current.append(i)
    if len(current) > 1:
        parts.append(current)
    return parts
