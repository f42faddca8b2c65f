"""The README and the pages under docs/ stay true to the tree: together they mention every config,
every config or tool path they mention exists, and every relative link resolves."""

import glob
import itertools
import os
import re

import pytest

from conftest import REPO_ROOT

DOC_FILES = ["README.md"] + sorted(
    os.path.relpath(p, REPO_ROOT) for p in glob.glob(os.path.join(REPO_ROOT, "docs", "*.md"))
)


def _read(path):
    with open(os.path.join(REPO_ROOT, path)) as f:
        return f.read()


DOCS = {path: _read(path) for path in DOC_FILES}
ALL_TEXT = "\n".join(DOCS.values())


def expand_braces(text):
    """ "a{b,c}d{e,f}" → ["abde", "abdf", "acde", "acdf"] (shell brace expansion, no nesting)."""
    parts = re.split(r"\{([^{}]*)\}", text)
    choices = [[p] if i % 2 == 0 else p.split(",") for i, p in enumerate(parts)]
    return ["".join(combination) for combination in itertools.product(*choices)]


def mentioned(pattern):
    """Every path the documentation mentions that matches ``pattern``, braces expanded."""
    return {path for token in re.findall(pattern, ALL_TEXT) for path in expand_braces(token)}


CONFIG_PATHS = mentioned(r"configs/[\w./{},-]+\.py")
CONFIG_FILES = sorted(
    os.path.relpath(p, REPO_ROOT)
    for folder in ("ADE20K", "ADE20K/ablations", "COCO", "Synthetic")
    for p in glob.glob(os.path.join(REPO_ROOT, "configs", folder, "*.py"))
)
#: (document, link target) of every relative Markdown link, anchors dropped
RELATIVE_LINKS = sorted(
    (doc, target.split("#")[0])
    for doc, text in DOCS.items()
    for target in re.findall(r"\]\(([^)\s]+)\)", text)
    if "://" not in target and not target.startswith("#")
)


def test_brace_expansion_of_documented_paths():
    assert expand_braces("x_{a,b}_{c,d}.py") == ["x_a_c.py", "x_a_d.py", "x_b_c.py", "x_b_d.py"]
    assert expand_braces("plain.py") == ["plain.py"]


@pytest.mark.parametrize("path", CONFIG_FILES)
def test_the_documentation_mentions_every_config(path):
    assert path in CONFIG_PATHS, f"neither README.md nor docs/*.md mention {path}"


@pytest.mark.parametrize("path", sorted(CONFIG_PATHS | mentioned(r"tools/[\w./{},-]+\.py")))
def test_every_path_the_documentation_mentions_exists(path):
    assert os.path.isfile(os.path.join(REPO_ROOT, path)), f"the documentation mentions {path}"


@pytest.mark.parametrize("doc, target", RELATIVE_LINKS)
def test_every_relative_link_resolves(doc, target):
    path = os.path.normpath(os.path.join(REPO_ROOT, os.path.dirname(doc), target))
    assert os.path.exists(path), f"{doc} links to {target}, which does not exist"


@pytest.mark.parametrize("page", [p for p in DOC_FILES if p != "README.md"])
def test_the_readme_links_every_docs_page(page):
    assert f"({page})" in DOCS["README.md"], f"README.md does not link {page}"
