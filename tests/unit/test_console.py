"""What the terminal shows while a run trains."""

from __future__ import annotations

from bench.console import TrainingProgress


def test_progress_shows_a_dash_until_the_first_losses_not_a_nan_that_reads_as_divergence(capsys):
    with TrainingProgress("vanilla", 100, None) as progress:
        progress.line(1, 0.5, force=True)
        progress.update(50, 2.0, d=0.5, g=0.75, ips=3200.0)
        progress.line(50, 2.0, force=True)
    first, second = capsys.readouterr().err.strip().splitlines()
    assert "D -  G -  - img/s" in first and "nan" not in first
    assert "D 0.500  G 0.750  3,200 img/s" in second
