"""gan-bench: compare GAN architectures on MNIST, fairly and fast."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("gan-bench")
except PackageNotFoundError:  # imported from a source tree that was never installed
    __version__ = "0+unknown"
