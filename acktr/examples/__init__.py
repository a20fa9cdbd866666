"""Supervised K-FAC examples: a deep autoencoder and a small CNN on digits or MNIST.

Run ``python -m acktr.examples --help``. The pieces are importable too:

* :mod:`acktr.examples.data`: digits (scikit-learn) and MNIST (IDX files) loaders.
* :mod:`acktr.examples.autoencoder`, :mod:`acktr.examples.cnn`: the models and losses.
* :mod:`acktr.examples.training`: one seeded training run with K-FAC, SGD or Adam.
* :mod:`acktr.examples.compare`: learning-rate sweeps, plots, CSV/JSON and a summary table.
"""

from __future__ import annotations
