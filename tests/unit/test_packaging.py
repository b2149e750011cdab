"""The package declaration: one top-level package, the built-ins inside it, entry points that resolve."""

from __future__ import annotations

import importlib.metadata as md

import pytest

from helpers import BUILTIN_PACKAGE, REPO

tomllib = pytest.importorskip("tomllib", reason="Python 3.11 reads TOML")


def project():
    return tomllib.loads((REPO / "pyproject.toml").read_text())


def test_every_package_folder_is_declared_and_architectures_installs_inside_bench():
    setuptools = project()["tool"]["setuptools"]
    folders = {".".join(p.parent.relative_to(REPO).parts) for p in (REPO / "bench").rglob("__init__.py")}
    assert set(setuptools["packages"]) == folders | {"bench.architectures"}
    assert setuptools["package-dir"] == {"bench.architectures": "architectures"}
    assert (REPO / "architectures" / "__init__.py").is_file()
    assert not any(name.split(".")[0] != "bench" for name in setuptools["packages"])


def test_the_built_in_entry_points_name_modules_inside_bench_and_load():
    declared = project()["project"]["entry-points"]["gan_bench.architectures"]
    assert declared and all(value.startswith("bench.architectures.") for value in declared.values())
    installed = {e.name: e.value for e in md.distribution(BUILTIN_PACKAGE).entry_points
                 if e.group == "gan_bench.architectures"}
    assert installed == declared, "reinstall gan-bench (pip install -e .): its entry points are stale"
    for entry in md.distribution(BUILTIN_PACKAGE).entry_points:
        if entry.group == "gan_bench.architectures":
            assert entry.load().name == entry.name


def test_version_prints_the_installed_version_without_building_every_command(capsys, monkeypatch):
    from bench import cli

    built = []
    monkeypatch.setattr(cli, "command_module", lambda name: built.append(name))  # any command built would fail
    with pytest.raises(SystemExit) as info:
        cli.main(["--version"])
    assert info.value.code == 0 and built == []
    assert capsys.readouterr().out == f"gan-bench {md.version('gan-bench')}\n"
