"""``bench report``'s library: run folders in, comparison tables and figures out.

:mod:`~bench.report.aggregate` loads runs and groups them by device and protocol, one row per
architecture with its seeds aggregated and every pair of rows tested on FID;
:mod:`~bench.report.render` turns the groups into Markdown, CSV, JSON or LaTeX;
:mod:`~bench.report.figures` draws the figures; and :mod:`~bench.report.publish` writes a
report's files. The command itself is :mod:`bench.cli.report`.
"""
