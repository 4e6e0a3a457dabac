"""Errors a user can cause, each carrying the name of the thing that was wrong.

The CLI prints ``str(error)`` as one line and exits non-zero; the daemon logs it as one
line and carries on with what still works.
"""


class EmotionEdgeError(Exception):
    """Base class: a problem the user can fix, told in one readable line."""


class ConfigError(EmotionEdgeError):
    """A configuration key or value is unknown or out of range."""


class ModelIntegrityError(EmotionEdgeError):
    """A model file is missing, does not match its manifest's sha256, or is not a model."""


class RuntimeMissingError(EmotionEdgeError):
    """No usable TFLite runtime: neither can be imported, the one $EMOTION_EDGE_TFLITE_RUNTIME names
    is absent, or tflite-runtime would run under numpy 2."""


class DecodeError(EmotionEdgeError):
    """Bytes from a sensor do not follow the wire format (reported, never raised out of a decoder)."""


class SourceError(EmotionEdgeError):
    """A sensor source cannot be opened (bad spec, missing file, no such port)."""


class DatasetError(EmotionEdgeError):
    """A dataset folder does not have the layout its KIND promises."""


class MissingExtraError(EmotionEdgeError):
    """A command needs a package from an optional extra that is not installed."""

    def __init__(self, package: str, extra: str, what: str = ""):
        self.package, self.extra = package, extra
        super().__init__(f"{what + ' ' if what else ''}needs {package}, which comes with the [{extra}] extra: "
                         f"pip install 'emotion-edge[{extra}]'")


class ReportSourceError(EmotionEdgeError):
    """A report's source (recording folder, states file, tags file) is absent or holds no states."""
