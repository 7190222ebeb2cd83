"""Every command shown in README.md and docs/ is real and says what runs it (issue #16).

Each fenced ``bash``/``sh`` block carries a ``# run by: ...`` line naming the tests (``tests/...py``
or ``tests/...py::name``), ``quickstart`` or ``.ci/run`` that run its commands; this test checks
that those exist, and that every ``ubdiff-onnx`` subcommand and ``--flag`` shown is one the CLI has.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
import typer.main

from ubdiff_onnx.cli.main import app

REPO = Path(__file__).resolve().parent.parent
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
BLOCK = re.compile(r"^[ \t]*```(bash|sh|shell|console)\n(.*?)^[ \t]*```", re.S | re.M)
RUN_BY = re.compile(r"^\s*#\s*run by:\s*(.+)$", re.M)
TARGET = re.compile(r"(tests/[\w/]+\.py(?:::\w+)?|\.ci/run|quickstart|scripts/[\w.]+|benchmarks/[\w.]+)")


def shell_blocks() -> list[tuple[str, int, str]]:
    out = []
    for doc in DOCS:
        text = doc.read_text()
        for m in BLOCK.finditer(text):
            out.append((doc.relative_to(REPO).as_posix(), text[: m.start()].count("\n") + 1, m.group(2)))
    return out


def commands(block: str) -> list[str]:
    """The block's command lines (continuations joined, comments and prompts dropped)."""
    joined = re.sub(r"\\\n\s*", " ", block)
    lines = []
    for line in joined.splitlines():
        line = line.strip().removeprefix("$ ")
        if line and not line.startswith("#"):
            lines.append(line)
    return lines


BLOCKS = shell_blocks()


def test_docs_have_shell_blocks():
    assert len(BLOCKS) >= 10 and any(doc == "README.md" for doc, _, _ in BLOCKS)


@pytest.mark.parametrize("doc,line,block", BLOCKS, ids=[f"{d}:{n}" for d, n, _ in BLOCKS])
def test_block_names_what_runs_it(doc, line, block):
    found = RUN_BY.findall(block)
    assert found, f"{doc}:{line}: the block has no '# run by: ...' line naming the test or quickstart step that runs it"
    targets = TARGET.findall(" ".join(found))
    assert targets, f"{doc}:{line}: '# run by:' names no tests/…py, quickstart or .ci/run"
    for target in targets:
        if target == "quickstart":
            continue
        path, _, name = target.partition("::")
        assert (REPO / path).is_file(), f"{doc}:{line}: {path} does not exist"
        if name:
            assert re.search(rf"^\s*def {name}\b", (REPO / path).read_text(), re.M), f"{doc}:{line}: no {name} in {path}"


def _is_group(cmd) -> bool:  # typer vendors its own click: duck-type instead of isinstance
    return hasattr(cmd, "commands")


def _resolve(tokens: list[str]):
    cmd = typer.main.get_command(app)
    rest = tokens
    while _is_group(cmd) and rest and not rest[0].startswith("-"):
        sub = cmd.commands.get(rest[0])
        if sub is None:
            break
        cmd, rest = sub, rest[1:]
    return cmd, rest


@pytest.mark.parametrize("doc,line,block", BLOCKS, ids=[f"{d}:{n}" for d, n, _ in BLOCKS])
def test_cli_commands_and_flags_exist(doc, line, block):
    for command in commands(block):
        for part in re.split(r"\s*(?:&&|\|\||;|\|)\s*", command):
            m = re.match(r"^ubdiff-onnx\s+(.*)$", part) or re.search(r"-m ubdiff_onnx\s+(.*)$", part)  # also python -m, torchrun -m
            if not m:
                continue
            tokens = shlex.split(m.group(1), comments=True)
            cmd, rest = _resolve(tokens)
            assert not _is_group(cmd) or not rest or rest[0].startswith("-") or rest[0] == "--help", \
                f"{doc}:{line}: unknown subcommand in `{part}`"
            if _is_group(cmd):
                continue
            known = {o for p in cmd.params for o in (*p.opts, *p.secondary_opts)} | {"--help"}
            for tok in rest:
                flag = tok.strip("[]").split("=", 1)[0]
                if flag.startswith("--"):
                    assert flag in known, f"{doc}:{line}: `ubdiff-onnx {cmd.name}` has no option {flag} (in `{part}`)"


def test_the_flag_check_catches_a_made_up_flag():
    with pytest.raises(AssertionError, match="no option --frobnicate"):
        test_cli_commands_and_flags_exist("x.md", 1, "ubdiff-onnx sample b --frobnicate 3\n# run by: quickstart\n")
    with pytest.raises(AssertionError, match="unknown subcommand"):
        test_cli_commands_and_flags_exist("x.md", 1, "ubdiff-onnx data frobnicate b\n")
