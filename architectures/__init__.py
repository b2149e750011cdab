"""The built-in architectures of gan-bench, each registered as an entry point in pyproject.toml.

Shared building blocks live in :mod:`bench.architectures.nets` (networks) and
:mod:`bench.architectures.losses` (objectives); each architecture module holds only its spec,
its hyperparameters and its training step.
"""
