"""The README stays true to the tree: it mentions every config, and every config or
tool path it mentions exists."""

import glob
import itertools
import os
import re

import pytest

from conftest import REPO_ROOT

with open(os.path.join(REPO_ROOT, "README.md")) as _f:
    README = _f.read()


def expand_braces(text):
    """ "a{b,c}d{e,f}" → ["abde", "abdf", "acde", "acdf"] (shell brace expansion, no nesting)."""
    parts = re.split(r"\{([^{}]*)\}", text)
    choices = [[p] if i % 2 == 0 else p.split(",") for i, p in enumerate(parts)]
    return ["".join(combination) for combination in itertools.product(*choices)]


def mentioned(pattern):
    """Every path the README mentions that matches ``pattern``, braces expanded."""
    return {path for token in re.findall(pattern, README) for path in expand_braces(token)}


CONFIG_PATHS = mentioned(r"configs/[\w./{},-]+\.py")
CONFIG_FILES = sorted(
    os.path.relpath(p, REPO_ROOT)
    for folder in ("ADE20K", "ADE20K/ablations", "COCO", "Synthetic")
    for p in glob.glob(os.path.join(REPO_ROOT, "configs", folder, "*.py"))
)


def test_brace_expansion_of_readme_paths():
    assert expand_braces("x_{a,b}_{c,d}.py") == ["x_a_c.py", "x_a_d.py", "x_b_c.py", "x_b_d.py"]
    assert expand_braces("plain.py") == ["plain.py"]


@pytest.mark.parametrize("path", CONFIG_FILES)
def test_readme_mentions_every_config(path):
    assert path in CONFIG_PATHS, f"README.md does not mention {path}"


@pytest.mark.parametrize("path", sorted(CONFIG_PATHS | mentioned(r"tools/[\w./{},-]+\.py")))
def test_every_path_the_readme_mentions_exists(path):
    assert os.path.isfile(os.path.join(REPO_ROOT, path)), f"README.md mentions missing {path}"
