"""Discovery through entry points, with fake installed distributions in tmp_path."""

from __future__ import annotations

import importlib.metadata as md

import pytest

from bench.errors import PluginError, RegistryError
from bench.registry import Registry, discover

from helpers import GOOD_MODULE, make_dist

def test_discovery_reads_without_importing_and_sorts(tmp_path):
    make_dist(tmp_path, "pkg-b", {"zeta": "never_imported_z:SPEC", "alpha": "never_imported_a:SPEC"})
    entries = discover(md.distributions(path=[str(tmp_path)]))
    assert [e.name for e in entries] == ["alpha", "zeta"]
    assert entries[0].package == "pkg-b" and entries[0].value == "never_imported_a:SPEC"
    assert "never_imported_a" not in __import__("sys").modules


def test_duplicate_name_names_both_packages(tmp_path):
    make_dist(tmp_path, "first-pkg", {"same": "a:SPEC"})
    make_dist(tmp_path, "second-pkg", {"same": "b:SPEC"})
    registry = Registry(discover(md.distributions(path=[str(tmp_path)])))
    with pytest.raises(RegistryError, match="'same'.*first-pkg and second-pkg"):
        registry.load("same")


def test_a_name_clash_makes_only_that_name_unusable(tmp_path, monkeypatch):
    """Two packages declaring one name used to make discovery, and so every command, fail."""
    monkeypatch.syspath_prepend(str(tmp_path))
    make_dist(tmp_path, "first-pkg", {"same": "a:SPEC", "good": "good_arch:SPEC"},
              {"good_arch": GOOD_MODULE.replace("{name}", "good")})
    make_dist(tmp_path, "second-pkg", {"same": "b:SPEC"})
    make_dist(tmp_path, "third-pkg", {"same": "c:SPEC"})
    registry = Registry(discover(md.distributions(path=[str(tmp_path)])))
    assert registry.names() == ["good", "same"]
    assert registry.load("good").name == "good"
    with pytest.raises(RegistryError, match=r"^architecture 'same' is registered by several packages: "
                                            r"first-pkg, second-pkg and third-pkg; uninstall all but one$"):
        registry.entry("same")
    rows = {row.entry.name: row for row in registry.load_all()}
    assert rows["good"].spec is not None and rows["good"].error is None
    assert rows["same"].spec is None and isinstance(rows["same"].error, RegistryError)
    assert sorted({rows["same"].entry.package, *rows["same"].entry.clashes}) == ["first-pkg", "second-pkg", "third-pkg"]


def test_same_distribution_seen_twice_is_not_a_duplicate(tmp_path):
    make_dist(tmp_path, "pkg", {"one": "m:SPEC"})
    dists = list(md.distributions(path=[str(tmp_path)]))
    assert [e.name for e in discover(dists + dists)] == ["one"]


def test_broken_plugin_is_reported_and_others_still_load(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(tmp_path))
    make_dist(
        tmp_path, "plugins",
        {"good": "good_arch:SPEC", "broken": "broken_arch:SPEC", "wrong": "wrong_arch:SPEC"},
        {"good_arch": GOOD_MODULE.replace("{name}", "good"),
         "broken_arch": "raise ImportError('needs a library that is not installed')\n",
         "wrong_arch": "SPEC = 42\n"},
    )
    registry = Registry(discover(md.distributions(path=[str(tmp_path)])))
    with pytest.raises(PluginError, match="'broken'.*plugins.*ImportError: needs a library"):
        registry.load("broken")
    with pytest.raises(PluginError, match="'wrong'.*not a bench.contract.ArchSpec"):
        registry.load("wrong")
    assert registry.load("good").name == "good"
    rows = registry.load_all()
    assert [(e.name, spec is not None) for e, spec, _ in rows] == [("broken", False), ("good", True), ("wrong", False)]


def test_unknown_name_lists_known_and_closest(tmp_path):
    make_dist(tmp_path, "pkg", {"vanilla": "v:SPEC", "dcgan": "d:SPEC"})
    registry = Registry(discover(md.distributions(path=[str(tmp_path)])))
    with pytest.raises(
        RegistryError, match=r"unknown architecture 'vanila' \(did you mean 'vanilla'\?\); known: dcgan, vanilla"
    ):
        registry.entry("vanila")


def test_builtin_vanilla_is_an_entry_point_of_this_project():
    entries = {e.name: e for e in discover()}
    assert entries["vanilla"].package == "gan-bench"
    assert entries["vanilla"].value == "bench.architectures.vanilla:SPEC"
