"""Hyperparameter grids: options, TOML files and their points, checked against each architecture."""

from __future__ import annotations

import textwrap

from bench.cli import build_parser
from bench.plans.grid import grid_points, make_grid, read_grid_file
from bench.registry import default_registry


def test_grid_options_make_the_cartesian_product():
    args = build_parser().parse_args(
        ["sweep", "--arch", "vanilla", "--grid", "lr=1e-4,2e-4", "--grid", "batch_size=64,128"])
    points = grid_points("vanilla", default_registry().load("vanilla"), make_grid(args.grid, None), {})
    assert points == [{"lr": 1e-4, "batch_size": 64}, {"lr": 1e-4, "batch_size": 128},
                      {"lr": 2e-4, "batch_size": 64}, {"lr": 2e-4, "batch_size": 128}]
    assert build_parser().parse_args(["sweep", "--grid", "b1=0.5"]).grid == [("b1", ["0.5"])]


def test_grid_file_with_a_table_per_architecture(tmp_path):
    path = tmp_path / "grid.toml"
    path.write_text(textwrap.dedent("""
        [grid]
        lr = [1e-4, 2e-4]

        [grid.wgan]
        n_critic = [5, 10]
        clip_value = 0.02
    """))
    grid = read_grid_file(str(path))
    registry = default_registry()
    assert grid_points("vanilla", registry.load("vanilla"), grid, {}) == [{"lr": 1e-4}, {"lr": 2e-4}]
    wgan = grid_points("wgan", registry.load("wgan"), grid, {})
    assert len(wgan) == 4 and wgan[0] == {"lr": 1e-4, "n_critic": 5, "clip_value": 0.02}
    assert {p["n_critic"] for p in wgan} == {5, 10} and isinstance(wgan[0]["n_critic"], int)
    # --grid on top of the file wins on a shared key
    assert make_grid([("lr", ["3e-4"])], str(path)).for_arch("wgan")["lr"] == ["3e-4"]
