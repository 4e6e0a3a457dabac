"""Native libraries write straight to file descriptors 1 and 2, below Python's logging.

The TFLite runtime prints ``INFO: Created TensorFlow Lite XNNPACK delegate for CPU.`` the first
time an interpreter is built; TensorFlow prints absl and oneDNN banners on import and a
``Saved artifact … TensorSpec … Captures`` listing on stdout for every conversion. None of it
is an error, but it turns the CLI's one-line messages into five. ``native_output_filtered``
captures the descriptors around such a call, drops the lines known to be banners and passes
everything else on, so a real native error is still seen.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import tempfile
from collections.abc import Iterator

# Lines native code prints that say nothing a user can act on.
BANNER_LINES = re.compile(
    r"^(INFO: Created TensorFlow Lite XNNPACK delegate"
    r"|WARNING: All log messages before absl::InitializeLog\(\) is called"
    r"|[IW]\d{4} [\d:.]+ +\d+ \S+\.cc:\d+\] "  # absl INFO/WARNING lines (oneDNN, cpu_feature_guard, …)
    r"|To enable the following instructions: .* in other operations, rebuild TensorFlow"
    r"|fully_quantize: \d+, inference_type: )"  # the int8 converter's parameter echo
)


def _drop_banners(text: str) -> str:
    return "".join(line for line in text.splitlines(keepends=True) if not BANNER_LINES.match(line))


@contextlib.contextmanager
def native_output_filtered(stdout: bool = False) -> Iterator[None]:
    """Capture fd 2 (and fd 1 with ``stdout=True``) for the block; re-emit what is not a banner.

    With ``stdout=True`` everything printed to fd 1 in the block is dropped unless the block
    raises (TensorFlow's conversion listing is the only thing written there).
    """
    fds = (1, 2) if stdout else (2,)
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    saved = {fd: os.dup(fd) for fd in fds}
    captures = {fd: tempfile.TemporaryFile() for fd in fds}  # noqa: SIM115 - closed below
    failed = False
    try:
        for fd in fds:
            os.dup2(captures[fd].fileno(), fd)
        yield
    except BaseException:
        failed = True
        raise
    finally:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        for fd in fds:
            os.dup2(saved[fd], fd)
            os.close(saved[fd])
            captures[fd].seek(0)
            text = captures[fd].read().decode("utf-8", "replace")
            captures[fd].close()
            if fd == 1 and not failed:
                continue
            kept = _drop_banners(text)
            if kept:
                os.write(fd, kept.encode())
