"""The one way the tools load TensorFlow: quietly, and with a one-line error where it is absent.

TensorFlow belongs to the tools (training, quantization); the daemon never imports it. On a
runtime-only install ``import_tensorflow`` raises ``MissingExtraError`` naming the extra to
install instead of a ``ModuleNotFoundError`` traceback.
"""

from __future__ import annotations

import importlib.util
import logging
import os
from typing import Any

from edge.errors import MissingExtraError
from edge.native_output import native_output_filtered


def import_tensorflow() -> Any:
    """``tensorflow``, imported with its absl/oneDNN banners filtered out and its logger at ERROR."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # C++ INFO and WARNING lines after absl starts
    try:
        with native_output_filtered():
            import tensorflow as tf  # tools only
    except ModuleNotFoundError as exc:
        if exc.name and exc.name.split(".")[0] == "tensorflow":
            raise MissingExtraError("tensorflow", "train") from None
        raise
    tf.get_logger().setLevel(logging.ERROR)
    logging.getLogger("absl").setLevel(logging.ERROR)
    return tf


def require_tensorflow() -> None:
    """Fail in one line, before any data is read, where the [train] extra is not installed."""
    try:
        present = importlib.util.find_spec("tensorflow") is not None
    except ValueError:  # a module set to None in sys.modules, i.e. deliberately absent
        present = False
    if not present:
        raise MissingExtraError("tensorflow", "train")
