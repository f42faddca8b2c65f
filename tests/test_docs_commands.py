"""The commands in the code blocks of README.md and docs/*.md run as written: every
``configs/...py`` path they name exists, every ``--flag`` is an option of the tool's own argument
parser (``train_net.py``, ``tools/*.py``), and every ``key=value`` override passes the override
checker (``denseclip.config.apply_overrides`` with the project's key tables, as
``load_config`` applies it) for the command's config.

A command is a line (joined over ``\\`` continuations) of a ``bash``, ``sh``, ``shell``,
``console`` or unlabelled fenced block that starts with ``python`` (after optional ``VAR=value``
environment assignments). Placeholders are allowed where a user fills in their own value: ``...``
and ``[...]`` (optional parts: the brackets are dropped, what is inside is checked), a config that
is not a ``configs/`` path (``CFG``: its overrides are checked against :data:`REFERENCE_CONFIG`),
the override ``key=value``, and file values (``train.init_checkpoint=DST`` is a string for a
string key, which the checker accepts; the key must still be valid).
"""

import argparse
import functools
import glob
import importlib.util
import os
import re
import shlex
from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

import pytest

from conftest import REPO_ROOT
from helpers import load_python_file

DOC_FILES = ["README.md"] + sorted(
    os.path.relpath(p, REPO_ROOT) for p in glob.glob(os.path.join(REPO_ROOT, "docs", "*.md"))
)
#: Fenced-block languages whose lines may be commands ("" = unlabelled).
COMMAND_LANGUAGES = {"", "bash", "sh", "shell", "console"}
#: The config a placeholder config (``--config-file CFG``) stands for, for its overrides.
REFERENCE_CONFIG = "configs/ADE20K/denseclip_fpn_res50_512x512_80k.py"
#: Flags whose value is the command's config.
CONFIG_DESTS = ("config_file", "config")

_FENCE = re.compile(r"^```(\w*)[^\n]*\n(.*?)^```", re.S | re.M)
_COMMAND = re.compile(r"^(?:[A-Z_][A-Z0-9_]*=\S*\s+)*python3?\s")
_ENVIRONMENT = re.compile(r"^[A-Z_][A-Z0-9_]*=")
_OVERRIDE = re.compile(r"^[A-Za-z_][\w.\[\]]*=")
_CONFIG_PATH = re.compile(r"configs/[\w./-]+\.py")


@dataclass(frozen=True)
class Command:
    """One documented command: where it is, and its text with continuations joined."""

    doc: str
    line: int
    text: str

    def __str__(self):
        return f"{self.doc}:{self.line}: {self.text}"


def code_blocks(markdown: str) -> List[Tuple[int, str, str]]:
    """``[(first line number of the body, language, body)]`` of the fenced blocks."""
    return [
        (markdown.count("\n", 0, m.start(2)) + 1, m.group(1).lower(), m.group(2))
        for m in _FENCE.finditer(markdown)
    ]


def documented_commands(markdown: str, doc: str = "<string>") -> List[Command]:
    """The ``python ...`` commands of the command blocks of ``markdown``."""
    commands = []
    for first_line, language, body in code_blocks(markdown):
        if language not in COMMAND_LANGUAGES:
            continue
        pending, start = "", None
        for number, line in enumerate(body.split("\n"), first_line):
            start = number if start is None else start
            if line.rstrip().endswith("\\"):
                pending += line.rstrip()[:-1] + " "
                continue
            text = (pending + line).strip()
            if text.startswith("$ "):
                text = text[2:]
            if _COMMAND.match(text):
                commands.append(Command(doc, start, " ".join(text.split())))
            pending, start = "", None
    return commands


def config_paths(markdown: str) -> List[str]:
    """The ``configs/...py`` paths named in the command blocks of ``markdown``."""
    return [
        path
        for _, language, body in code_blocks(markdown)
        if language in COMMAND_LANGUAGES
        for path in _CONFIG_PATH.findall(body)
    ]


@functools.lru_cache(maxsize=None)
def tool_parser(script: str) -> argparse.ArgumentParser:
    """The argument parser of ``train_net.py`` or a ``tools/*.py`` script, built without running
    the script (each has an ``argument_parser()`` function)."""
    return load_python_file(script).argument_parser()


def _strip_optional(token: str) -> str:
    """``[--flag`` → ``--flag``, ``value]`` → ``value``: usage brackets around optional parts
    (an unmatched ``]``; ``key=[]`` keeps its list)."""
    token = token[1:] if token.startswith("[") else token
    return token[:-1] if token.count("]") > token.count("[") else token


def _values(action: argparse.Action, tokens: Sequence[str]) -> List[str]:
    """The tokens that ``action`` consumes from the start of ``tokens``."""
    nargs = action.nargs
    if nargs == 0:
        return []
    if nargs is None or nargs == "?":
        return list(tokens[:1]) if tokens and not tokens[0].startswith("-") else []
    if isinstance(nargs, int):
        return list(tokens[:nargs])
    if nargs == argparse.REMAINDER:
        return list(tokens)
    taken = []
    for token in tokens:
        if token.startswith("-"):
            break
        taken.append(token)
    return taken


def split_arguments(
    parser: argparse.ArgumentParser, arguments: Sequence[str]
) -> Tuple[Optional[str], List[str], List[str]]:
    """``(config, overrides, unknown flags)`` of a command's arguments as ``parser`` reads them.

    Overrides are the ``key=value`` positionals and the ``key=value`` values of list-valued
    options (``--opts``); the value of a one-value option (``--dataset pets=/data/pets``) is not
    an override."""
    tokens = [_strip_optional(t) for t in arguments]
    tokens = [t for t in tokens if t not in ("", "...")]
    config, overrides, unknown = None, [], []
    index = 0
    while index < len(tokens):
        token = tokens[index]
        index += 1
        if not token.startswith("-"):
            if _OVERRIDE.match(token):
                overrides.append(token)
            continue
        flag, has_inline, inline = token.partition("=")
        action = parser._option_string_actions.get(flag)
        if action is None:
            unknown.append(flag)
            continue
        values = [inline] if has_inline else _values(action, tokens[index:])
        index += 0 if has_inline else len(values)
        if action.dest in CONFIG_DESTS and values:
            config = values[0]
        if action.nargs in ("*", "+", argparse.REMAINDER):
            overrides += [value for value in values if _OVERRIDE.match(value)]
    return config, overrides, unknown


def check_overrides(config: str, overrides: Sequence[str]) -> List[str]:
    """The override checker's message for each override that ``config`` rejects, applied in
    order as the tools apply them."""
    from detectron2.config import LazyConfig

    from denseclip.config import RUN_CONFIG_KEYS, ConfigOverrideError, apply_overrides

    cfg = LazyConfig.load(os.path.join(REPO_ROOT, config))
    problems = []
    for override in overrides:
        if override.split("=", 1)[0] == "key":
            continue
        try:
            apply_overrides(cfg, [override], RUN_CONFIG_KEYS)
        except ConfigOverrideError as error:
            problems.append(f"{override} (for {config}): {error}")
    return problems


def check_command(text: str) -> List[str]:
    """What is wrong with one documented command: [] when its script, flags, config path and
    overrides are all valid."""
    tokens = shlex.split(text, comments=True)
    while tokens and _ENVIRONMENT.match(tokens[0]):
        tokens.pop(0)
    arguments = tokens[1:]
    if arguments[:1] == ["-m"]:
        module = arguments[1]
        found = importlib.util.find_spec(module) is not None
        return [] if found else [f"python -m {module}: no such module"]
    script = arguments[0]
    if not os.path.isfile(os.path.join(REPO_ROOT, script)):
        return [f"{script} does not exist"]
    if script != "train_net.py" and not re.fullmatch(r"tools/\w+\.py", script):
        return [f"{script}: only train_net.py and tools/*.py are documented commands"]
    parser = tool_parser(script)
    config, overrides, unknown = split_arguments(parser, arguments[1:])
    problems = [f"{flag} is not an option of {script}" for flag in unknown]
    if config is None:
        config = next((a.default for a in parser._actions if a.dest in CONFIG_DESTS), None)
    if config and config.startswith("configs/"):
        if not os.path.isfile(os.path.join(REPO_ROOT, config)):
            return problems + [f"{config} does not exist"]
    elif overrides:
        config = REFERENCE_CONFIG
    if overrides:
        problems += check_overrides(config, overrides)
    return problems


def _read(path: str) -> str:
    with open(os.path.join(REPO_ROOT, path)) as f:
        return f.read()


DOCS = {path: _read(path) for path in DOC_FILES}
COMMANDS = [command for doc, text in DOCS.items() for command in documented_commands(text, doc)]


def test_the_docs_hold_commands_to_check():
    scripts = {re.search(r"python3? (\S+)", c.text).group(1) for c in COMMANDS}
    assert len(COMMANDS) >= 30 and {"train_net.py", "tools/demo.py"} <= scripts


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: f"{c.doc}:{c.line}")
def test_documented_command_is_valid(command):
    problems = check_command(command.text)
    assert not problems, f"{command.doc}:{command.line}: " + "; ".join(problems)


@pytest.mark.parametrize(
    "doc, path", sorted({(doc, path) for doc, text in DOCS.items() for path in config_paths(text)})
)
def test_documented_config_path_exists(doc, path):
    assert os.path.isfile(os.path.join(REPO_ROOT, path)), f"{doc} names {path}"


def test_converted_clip_files_have_one_name():
    """``tools/convert_clip.py NAME.pt pretrained/NAME_d2.pth`` everywhere, and train_net.py's
    help uses that name."""
    for command in COMMANDS:
        tokens = shlex.split(command.text, comments=True)
        if tokens[1:2] == ["tools/convert_clip.py"]:
            src, dst = tokens[2:4]
            expected = f"pretrained/{os.path.splitext(os.path.basename(src))[0]}_d2.pth"
            assert dst == expected, f"{command}: write {expected}"
    epilog = tool_parser("train_net.py").epilog
    assert re.findall(r"pretrained/\S+\.pth", epilog) == ["pretrained/RN50_d2.pth"]


BROKEN_EXAMPLE = """
Some text, then a command block:

```bash
# a comment
python train_net.py --config-file configs/ADE20K/denseclip_fpn_res50_512x512_80k.py \\
    --num-gpus 8 sem_seg_head.loss_reduction=valid_pixels   # the model. prefix is missing
python train_net.py --config-file configs/ADE20K/denseclip_fpn_res50_512x512_80k.py --num-gpu 8
python train_net.py --config-file configs/ADE20K/no_such_config.py
python tools/demo.py --config-file configs/Synthetic/denseclip_fpn_demo.py --input a.jpg \\
    --output out --opts model.test_mode=whole train.max_iter=many
OMP_NUM_THREADS=1 python train_net.py --config-file CFG train.amp.enabled=True
```

```python
python = "not a command"
```
"""


def test_the_checker_catches_broken_examples():
    commands = documented_commands(BROKEN_EXAMPLE, "example.md")
    assert [c.line for c in commands] == [6, 8, 9, 10, 12]
    problems = [check_command(c.text) for c in commands]
    assert len(problems[0]) == 1 and "unknown config key 'sem_seg_head" in problems[0][0]
    assert problems[1] == ["--num-gpu is not an option of train_net.py"]
    assert problems[2] == ["configs/ADE20K/no_such_config.py does not exist"]
    assert len(problems[3]) == 1 and problems[3][0].startswith("train.max_iter=many")
    assert problems[4] == []
    assert config_paths(BROKEN_EXAMPLE)[-1] == "configs/Synthetic/denseclip_fpn_demo.py"


def test_the_checker_accepts_placeholders_and_reads_values_of_options():
    parser = tool_parser("train_net.py")
    config, overrides, unknown = split_arguments(
        parser,
        [
            "--config-file",
            "configs/COCO/mask_rcnn_denseclip_r50_fpn_1x_coco.py",
            "--dataset",
            "pets=/data/pets",
            "...",
            "[--resume]",
            "model.backbone.bottom_up.context_decoder=null",
            "dataloader.train.dataset.names=pets_train",
        ],
    )
    assert config == "configs/COCO/mask_rcnn_denseclip_r50_fpn_1x_coco.py"
    assert overrides == [
        "model.backbone.bottom_up.context_decoder=null",
        "dataloader.train.dataset.names=pets_train",
    ]
    assert unknown == [] and _strip_optional("x=[]") == "x=[]"
    text = "python tools/get_flops.py --config-file CFG --shape 512 512 [key=value ...]"
    assert check_command(text) == []
