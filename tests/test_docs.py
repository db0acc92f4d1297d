"""Docs that cannot rot: every `bench ...` command line in README.md and docs/ exists, with every
option it uses (checked against the CLI's own click objects, which typer builds with its bundled
click; no subprocess); docs/cli.md lists every option; every repository path the docs name exists;
every docs page is linked from the README, and every relative link resolves.
"""
from __future__ import annotations

import copy
import re
import shlex
from pathlib import Path

import pytest
import typer

REPO = Path(__file__).resolve().parents[1]
DOCS = sorted((REPO / "docs").glob("*.md"))
PAGES = [REPO / "README.md", *DOCS]

FENCE = re.compile(r"^(```|~~~)")
INLINE = re.compile(r"(?<!`)`([^`\n]+)`(?!`)")
# `bench` as a command: at the start, or after `VAR=value` environment assignments.
COMMAND = re.compile(r"^(?:[A-Z_][A-Z0-9_]*=\S*\s+)*(bench(?:\s+[-a-z].*)?)$")
PATH = re.compile(r"(?<![\w./-])((?:bench|methods|scripts|tests|docs|au|backbones)/[\w./-]*\.(?:py|md|toml|sh|csv))")
LINK = re.compile(r"\]\(([^)\s#]+)(?:#[^)]*)?\)")


def cli():
    from bench.cli.main import app

    return typer.main.get_command(app)


def command_lines(text: str) -> list[str]:
    """`bench ...` lines: whole lines of fenced blocks (continuations joined) and inline code spans."""
    found, in_fence, pending = [], False, ""
    for line in text.splitlines():
        if FENCE.match(line.strip()):
            in_fence, pending = not in_fence, ""
            continue
        if in_fence:
            line = pending + line.strip()
            if line.endswith("\\"):
                pending = line[:-1] + " "
                continue
            pending = ""
            match = COMMAND.match(line.removeprefix("$ "))
            if match:
                found.append(match.group(1))
        else:
            for span in INLINE.findall(line):
                match = COMMAND.match(span.strip())
                if match:
                    found.append(match.group(1))
    return found


def _is_option(param) -> bool:
    return getattr(param, "param_type_name", "") == "option"


def _options(command) -> set[str]:
    names = {"--help"}
    for param in command.params:
        if _is_option(param):
            names.update(param.opts)
            names.update(param.secondary_opts)
    return names


def problems(line: str, group) -> list[str]:
    """What is wrong with one documented command line: an unknown command or option."""
    match = COMMAND.match(line)
    line = match.group(1) if match else line
    try:
        tokens = shlex.split(line, comments=True)
    except ValueError:
        tokens = line.split()
    tokens = [t for t in tokens[1:] if t not in ("...", "…") and not t.startswith(("|", ">"))]
    command = group
    path = ["bench"]
    out = []
    for i, token in enumerate(tokens):
        if token.startswith("-"):
            continue
        # the first word that is not an option value names a sub-command of a group
        if hasattr(command, "commands") and (i == 0 or not tokens[i - 1].startswith("-")
                                                 or _is_flag(command, tokens[i - 1])):
            sub = command.commands.get(token)
            if sub is None:
                return [f"`{line}`: `{' '.join(path)} {token}` is not a command"]
            command, path = sub, [*path, token]
    known = _options(command)
    for token in tokens:
        if token.startswith("-") and len(token) > 1 and not token[1:2].isdigit():
            name = token.split("=", 1)[0]
            if name not in known:
                out.append(f"`{line}`: `{' '.join(path)}` has no option {name}")
    return out


def _is_flag(command, token: str) -> bool:
    name = token.split("=", 1)[0]
    for param in command.params:
        if _is_option(param) and name in (*param.opts, *param.secondary_opts):
            return param.is_flag or "=" in token
    return False


def doc_problems(group) -> list[str]:
    out = []
    for page in PAGES:
        for line in command_lines(page.read_text(encoding="utf-8")):
            out.extend(f"{page.relative_to(REPO)}: {p}" for p in problems(line, group))
    return out


def test_the_docs_name_commands():
    lines = [line for page in PAGES for line in command_lines(page.read_text(encoding="utf-8"))]
    assert len(lines) > 40, "the command-line reader found almost nothing: is it broken?"


def test_every_documented_command_and_option_exists():
    wrong = doc_problems(cli())
    assert not wrong, "\n".join(wrong)


def _all_options(command) -> set[str]:
    names = _options(command)
    for sub in getattr(command, "commands", {}).values():
        names |= _all_options(sub)
    return names


def test_every_option_named_in_prose_exists():
    """An option quoted alone in the text (`--max-failures N`) must be an option of some command."""
    known, wrong = _all_options(cli()), []
    for page in PAGES:
        for line in page.read_text(encoding="utf-8").splitlines():
            for span in INLINE.findall(line):
                match = re.match(r"^(--[a-z][\w-]*)", span.strip())
                if match and match.group(1) not in known:
                    wrong.append(f"{page.relative_to(REPO)}: `{span}`")
    assert not wrong, "\n".join(wrong)


def test_the_cli_page_documents_every_command_and_option():
    """docs/cli.md has a section per command and a row per option: a new option needs its line."""
    page = (REPO / "docs" / "cli.md").read_text(encoding="utf-8")
    missing = []

    def walk(command, path):
        if len(path) > 1:
            section = page.split(f"### `{' '.join(path)}`\n", 1)
            if len(section) < 2:
                missing.append(f"section ### `{' '.join(path)}`")
                return
            body = section[1].split("\n### ", 1)[0]
            for param in command.params:
                if _is_option(param) and f"`{param.opts[0]}`" not in body:
                    missing.append(f"{' '.join(path)} {param.opts[0]}")
        for name, sub in getattr(command, "commands", {}).items():
            walk(sub, [*path, name])

    walk(cli(), ["bench"])
    assert not missing, "docs/cli.md lacks: " + ", ".join(missing)


def test_a_renamed_option_is_caught():
    """The check is only worth having if it fails: rename an option in a copy of the CLI."""
    group = copy.deepcopy(cli())
    run = group.commands["run"]
    param = next(p for p in run.params if "--reuse-older-code" in getattr(p, "opts", ()))
    param.opts = ["--reuse-old-code"]
    wrong = doc_problems(group)
    assert any("has no option --reuse-older-code" in w for w in wrong), wrong
    group.commands["tables"] = group.commands.pop("table")
    assert any("`bench table` is not a command" in w for w in doc_problems(group))


@pytest.mark.parametrize("line, expected", [
    ("bench run --methods cam --au both", []),
    ("bench run --no-share --set train.epochs=1", []),
    ("BENCH_PLUGINS=mymodule bench run --methods mycam", []),
    ("bench cache prune --older-than 30d --dry-run", []),
    ("bench table --run a,b -o out.md", []),
    ("bench run --epochs 3", ["`bench run --epochs 3`: `bench run` has no option --epochs"]),
    ("bench cache purge", ["`bench cache purge`: `bench cache purge` is not a command"]),
])
def test_the_checker_itself(line, expected):
    assert problems(line, cli()) == expected


def test_every_named_path_exists():
    missing = []
    for page in PAGES:
        for path in PATH.findall(page.read_text(encoding="utf-8")):
            if not (REPO / path).exists():
                missing.append(f"{page.relative_to(REPO)}: {path}")
    assert not missing, "\n".join(missing)


def test_every_relative_link_resolves():
    broken = []
    for page in PAGES:
        for target in LINK.findall(page.read_text(encoding="utf-8")):
            if re.match(r"^[a-z]+:", target):
                continue
            if not (page.parent / target).exists():
                broken.append(f"{page.relative_to(REPO)}: {target}")
    assert not broken, "\n".join(broken)


def test_every_docs_page_is_linked_from_the_readme():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    linked = set(LINK.findall(readme))
    unlinked = [f"docs/{p.name}" for p in DOCS if f"docs/{p.name}" not in linked]
    assert not unlinked, unlinked


def test_the_readme_keeps_the_two_commands_and_stays_short():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert "make run" in readme and "make test" in readme
    assert len(readme.splitlines()) <= 220


def _literal(path: str, name: str):
    """A module-level constant read from source (no import: ``bench.plan.identity`` would import torch)."""
    import ast

    for node in ast.parse((REPO / path).read_text(encoding="utf-8")).body:
        targets = node.targets if isinstance(node, ast.Assign) else [getattr(node, "target", None)]
        if any(getattr(t, "id", None) == name for t in targets) and node.value is not None:
            return ast.literal_eval(node.value)
    raise AssertionError(f"{name} not found in {path}")


def test_the_identity_page_lists_what_the_code_counts():
    """The code roots and the settings that never reach the weights, as docs/reproducibility.md names them."""
    page = (REPO / "docs" / "reproducibility.md").read_text(encoding="utf-8")
    expected = [*_literal("bench/plan/code.py", "TRAINING_ROOTS"), *_literal("bench/plan/code.py", "EVALUATION_ROOTS")]
    for section, keys in _literal("bench/plan/identity.py", "NOT_TRAINING").items():
        expected.extend([f"{section}.*"] if keys is None else [f"{section}.{key}" for key in keys])
    spans = set(INLINE.findall(page))
    missing = [name for name in expected if name not in spans]
    assert not missing, f"docs/reproducibility.md does not name: {missing}"
