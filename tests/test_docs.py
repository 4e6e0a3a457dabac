"""The docs check: every command the README, docs/ and the model cards show exists as shown.

Each `emotion-edge …` command (inline code or a shell block) must name real subcommands and
actions, and every `--flag` in it must be an option of that subcommand; each `make TARGET` must
be a target of the Makefile. Renaming a flag without the docs, or documenting one that was never
written, fails here. (The commands' behaviour is tested where each is implemented.)
"""

from __future__ import annotations

import argparse
import re

import pytest

from conftest import REPO_ROOT
from edge.cli import build_parser

DOC_FILES = [REPO_ROOT / "README.md", *sorted((REPO_ROOT / "docs").glob("*.md")),
             *sorted((REPO_ROOT / "models").glob("*.md"))]
INLINE = re.compile(r"`((?:emotion-edge|make) [^`]*)`")
SHELL_BLOCK = re.compile(r"```(?:sh|bash|console)\n(.*?)```", re.S)


def documented_commands() -> list[tuple[str, str]]:
    """(file name, command) for every command shown in the docs; synopsis alternatives split on |."""
    found = []
    for path in DOC_FILES:
        text = path.read_text()
        lines = INLINE.findall(text)
        for block in SHELL_BLOCK.findall(text):
            lines += [ln.split("#")[0].strip().lstrip("$ ") for ln in block.splitlines()]
        for line in lines:
            line = line.replace("\\|", "|")
            if not line.startswith(("emotion-edge", "make ")):
                continue
            head, *alternatives = [part.strip() for part in line.split(" | ")]
            found.append((path.name, head))
            prefix = " ".join(head.split()[:2])  # `emotion-edge models list | inspect FILE | …`
            found += [(path.name, f"{prefix} {alt}") for alt in alternatives]
    return found


def subparsers_of(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def options_of(parser: argparse.ArgumentParser) -> set[str]:
    return {opt for action in parser._actions for opt in action.option_strings}


def check_emotion_edge(command: str) -> None:
    parser, _ = build_parser()
    tokens = command.replace("…", " ").split()[1:]
    top_options = options_of(parser)
    chain = [parser]
    words = [t for t in tokens if not t.startswith(("-", "[", "<", '"'))]
    for word in words:
        choices = subparsers_of(chain[-1])
        if not choices:
            break
        assert word in choices, f"{command!r}: no subcommand {word!r} (known: {', '.join(choices)})"
        chain.append(choices[word])
    known = options_of(chain[-1]) | top_options
    for token in tokens:
        flag = token.strip("[]()").split("=")[0]
        if flag.startswith("--"):
            assert flag in known, f"{command!r}: {flag} is not an option of {' '.join(tokens[:1])} ({sorted(known)})"


def makefile_targets() -> set[str]:
    text = (REPO_ROOT / "Makefile").read_text()
    return {m.group(1) for m in re.finditer(r"^([a-z][\w-]*):", text, re.M)}


COMMANDS = documented_commands()


def test_the_docs_show_commands():
    names = {c.split()[1] for _, c in COMMANDS if c.startswith("emotion-edge ")}
    assert {"run", "demo", "listen", "doctor", "train", "models", "bench"} <= names


@pytest.mark.parametrize("where,command", COMMANDS, ids=[f"{w}:{c[:60]}" for w, c in COMMANDS])
def test_documented_command_exists_as_shown(where, command):
    if command.startswith("make "):
        target = command.split()[1]
        assert target in makefile_targets(), f"{where}: make {target}: no such Makefile target"
    else:
        check_emotion_edge(command)


def test_the_check_catches_a_renamed_flag():
    with pytest.raises(AssertionError, match="--brokr"):
        check_emotion_edge("emotion-edge run --brokr mqtt://x")
    with pytest.raises(AssertionError, match="no subcommand"):
        check_emotion_edge("emotion-edge modles list")
