"""systemd readiness and watchdog notifications (``sd_notify``) without a dependency.

Under ``Type=notify`` systemd passes ``$NOTIFY_SOCKET`` (a path, or ``@name`` for the abstract
namespace); the service sends datagrams such as ``READY=1``, ``WATCHDOG=1``, ``STATUS=…``,
``STOPPING=1``. Outside systemd the variable is unset and every call is a no-op returning False.
"""

from __future__ import annotations

import logging
import os
import socket

log = logging.getLogger(__name__)


def notify(*fields: str, env: dict[str, str] | None = None) -> bool:
    """Send ``KEY=VALUE`` fields (joined by newlines); True if a notify socket took them."""
    address = (env if env is not None else os.environ).get("NOTIFY_SOCKET")
    if not address or not fields:
        return False
    if address.startswith("@"):
        address = "\0" + address[1:]
    elif not address.startswith("/"):
        log.debug("sd_notify: NOTIFY_SOCKET %r is not a unix socket path; ignored", address)
        return False
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.sendto("\n".join(fields).encode("utf-8"), address)
        return True
    except OSError as exc:
        log.debug("sd_notify: %s", exc)
        return False


def ready(status: str | None = None) -> bool:
    return notify("READY=1", *([f"STATUS={status}"] if status else []))


def watchdog() -> bool:
    return notify("WATCHDOG=1")


def stopping() -> bool:
    return notify("STOPPING=1")


def watchdog_interval_s(env: dict[str, str] | None = None) -> float | None:
    """Half of ``$WATCHDOG_USEC`` in s (how often to send WATCHDOG=1), or None if not asked."""
    values = env if env is not None else os.environ
    usec = values.get("WATCHDOG_USEC")
    pid = values.get("WATCHDOG_PID")
    if not usec or (pid and pid != str(os.getpid())):
        return None
    try:
        return int(usec) / 2e6
    except ValueError:
        return None
