"""``bench list``: the registered architectures."""

from __future__ import annotations

import argparse

from bench import tables
from bench.registry import default_registry

DESCRIPTION = ("Show every registered architecture: name, package, image size and description "
               "(or why it failed to load).")


def add_arguments(p: argparse.ArgumentParser) -> None:
    pass


def run(args: argparse.Namespace) -> int:
    tables.print_architectures(default_registry().load_all())
    return 0
