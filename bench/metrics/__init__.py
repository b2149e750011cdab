"""Sample-quality metrics in the feature space of the shipped MNIST classifier.

Nothing is re-exported: import the submodule that owns a name (``bench.metrics.evaluator``,
``bench.metrics.classifier``, ...), so that importing one stays cheap and each name has one
import path.
"""
