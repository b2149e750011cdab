"""Every table the suite prints, drawn in one place."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.table import Table

from bench import console
from bench.console import fmt


def _mib(n: int | None) -> str:
    return "-" if n is None else f"{n / 2**20:,.0f} MiB"


def print_run(record: dict[str, Any], run_dir: Path | None) -> None:
    """Print the end-of-run summary of one run record."""
    t = record["timing"]
    disc = record.get("discriminator", {})
    status = record["status"]
    if record.get("diverged_at_step") is not None:
        status += f" (non-finite values at step {record['diverged_at_step']})"
    rows = [
        ("status", status),
        ("steps", record["steps"]),
        ("images seen", record["images_seen"]),
        ("wall time", f"{t['wall_s']:.1f} s"),
        ("step time median", f"{fmt(t['step_ms_median'])} ms"),
        ("step time p10 / p90", f"{fmt(t['step_ms_p10'])} / {fmt(t['step_ms_p90'])} ms"),
        ("warm-up steps (left out)", t["warmup_steps"]),
        ("images / s", f"{t['images_per_s']:,.0f}"),
        ("peak memory", _mib(record.get("peak_memory_bytes"))),
        ("final D loss", record["losses"]["d"]),
        ("final G loss", record["losses"]["g"]),
        ("D(x), mean of last interval", disc.get("d_real")),
        ("D(G(z)), mean of last interval", disc.get("d_fake")),
        ("parameters G / D", f"{record['params'].get('generator', 0):,} / {record['params'].get('discriminator', 0):,}"),
        ("device", f"{record['env']['device']} ({record['env']['device_name']})"),
    ]
    console.out.print(console.key_value_table(f"{record['arch']}: run summary", rows))
    if run_dir is not None:
        console.out.print(f"results: {run_dir}")


def print_architectures(rows: list[tuple[Any, Any, Any]]) -> None:
    """Print the registered architectures, with the load error of any that failed."""
    table = Table(title="Registered architectures", title_justify="left")
    for col in ("name", "package", "image", "description"):
        table.add_column(col, overflow="fold")
    for entry, spec, error in rows:
        if spec is None:
            table.add_row(entry.name, entry.package, "-", f"[red]failed to load: {error}[/]")
        else:
            table.add_row(entry.name, f"{entry.package} {entry.version}", f"{spec.image_size}x{spec.image_size}", spec.description)
    console.out.print(table)
