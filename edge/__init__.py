"""emotion-edge: the on-device daemon (windows, features, inference, fusion, publishing).

Nothing imported from here may pull in TensorFlow, pandas or neurokit2: the daemon has
a start-up budget of 2 s on one core (see README, benchmarks).
"""

__version__ = "0.1.0"


def package_version() -> str:
    """This package's version (pyproject.toml's, kept equal to ``__version__``)."""
    return __version__
