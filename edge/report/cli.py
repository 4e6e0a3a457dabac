"""``emotion-edge report``: a session's states -> one self-contained HTML page.

SOURCE is a recording folder (``run --record DIR``), a states JSON-lines file (``listen --json``
output; ``-`` for standard input), or, with ``--broker URL``, the states that arrive during
``--duration S`` (MQTT keeps no history: only a persistent ``--session NAME`` gives back what
was published while nobody listened, and only since that session last disconnected).
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from edge.errors import ConfigError, ReportSourceError
from edge.publish import DEFAULT_TOPIC_PREFIX

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("source", nargs="?", default=None, metavar="SOURCE",
                        help="a recording folder or a states JSON-lines file (- = standard input); "
                             "omit with --broker")
    parser.add_argument("--out", default="report.html", metavar="FILE", help="the HTML file to write (default report.html)")
    parser.add_argument("--tags", default=None, metavar="CSV",
                        help="event marks: unix times, one a line (e.g. an E4 tags_SXX.csv); "
                             "the summary gives the mean stress between consecutive marks")
    parser.add_argument("--device-id", default=None, metavar="ID",
                        help="the device to report on (needed where a source holds several)")
    parser.add_argument("--since", default=None, metavar="TIME",
                        help="only states with ts at or after TIME (unix s, or ISO 8601 such as "
                             "2022-02-07T10:00:00Z; no zone = UTC)")
    parser.add_argument("--until", default=None, metavar="TIME", help="only states with ts at or before TIME")
    parser.add_argument("--title", default=None, help="the page's title (default: device and date)")
    broker = parser.add_argument_group("from a broker (instead of SOURCE)")
    broker.add_argument("--broker", default=None, metavar="URL",
                        help="collect the states published during --duration from this broker")
    broker.add_argument("--duration", type=float, default=None, metavar="S",
                        help="seconds to collect for (needed with --broker)")
    broker.add_argument("--session", default=None, metavar="NAME",
                        help="persistent session: first receive what the broker queued for NAME "
                             "since it last disconnected (see listen --session)")
    broker.add_argument("--topic-prefix", default=DEFAULT_TOPIC_PREFIX, help=f"default {DEFAULT_TOPIC_PREFIX}")
    broker.add_argument("--username", default=None, help="MQTT username (when the URL has none)")
    broker.add_argument("--password-file", default=None, metavar="FILE", help="first line is the MQTT password")
    broker.add_argument("--ca-file", default=None, help="CA certificate for an mqtts:// broker")
    broker.add_argument("--cert-file", default=None, help="client certificate (mutual TLS)")
    broker.add_argument("--key-file", default=None, help="the client certificate's private key")


def _load(args: argparse.Namespace):  # -> Session
    from edge.report import source  # noqa: PLC0415

    if args.broker is not None:
        if args.source is not None:
            raise ConfigError(f"SOURCE {args.source} and --broker {args.broker}: give one of them")
        if args.duration is None or args.duration <= 0:
            raise ConfigError("--broker needs --duration S (seconds to collect): MQTT keeps no history, "
                              "so the report covers what arrives while it listens")
        from edge.listen import _password  # noqa: PLC0415

        log.info("collecting states from %s for %g s", args.broker, args.duration)
        return source.collect_from_broker(
            args.broker, device_id=args.device_id or "+", duration_s=args.duration,
            topic_prefix=args.topic_prefix, session=args.session, ca_file=args.ca_file,
            cert_file=args.cert_file, key_file=args.key_file, username=args.username,
            password=_password(args))
    if args.source is None:
        raise ConfigError("nothing to report on: give SOURCE (recording folder or states file) or --broker URL")
    for flag in ("duration", "session"):
        if getattr(args, flag) is not None:
            raise ConfigError(f"--{flag} goes with --broker; SOURCE {args.source} is read as it is")
    return source.read_source(Path(args.source))


def main(args: argparse.Namespace) -> int:
    from edge.report import source  # noqa: PLC0415
    from edge.report.tags import read_tags  # noqa: PLC0415

    since = source.parse_time(args.since, "--since") if args.since is not None else None
    until = source.parse_time(args.until, "--until") if args.until is not None else None
    tags = read_tags(Path(args.tags)) if args.tags else []
    out = Path(args.out)
    if not out.parent.is_dir():
        raise ConfigError(f"--out {out}: folder {out.parent} does not exist")
    session = source.select_states(_load(args), device_id=args.device_id, since_unix=since, until_unix=until)
    for warning in session.warnings:
        log.warning("%s", warning)

    from edge.report import page, plots  # noqa: PLC0415  (matplotlib: the [report] extra)

    title = args.title or f"emotion-edge session: {session.device_id}, {page.utc_clock(float(session.states[0]['ts']))[:10]}"
    figures = plots.report_figures(session.states, session.events, tags)
    html_text = page.render(session, tags, figures, title)
    partial = out.with_name(out.name + ".part")  # a reader never sees half a page
    try:
        partial.write_text(html_text, encoding="utf-8")
        partial.replace(out)
    except OSError as exc:
        partial.unlink(missing_ok=True)
        raise ReportSourceError(f"--out {out}: cannot write ({exc.strerror or exc})") from None
    log.info("wrote %s: %d states, %d tags, %d KiB", out, len(session.states), len(tags), len(html_text) // 1024)
    return 0
