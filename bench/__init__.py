"""gan-bench: compare GAN architectures on MNIST, fairly and fast."""

__version__ = "0.1.0"
