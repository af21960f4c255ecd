"""The documentation checks itself: every relative link of README.md, CHANGELOG.md and docs/*.md
resolves (file and heading anchor), every `python -m X` names a module of this repository or an
installed one and every `main.py --config=` names a config file, the README's MTL snippet runs,
docs/configs.md is what tools/config_reference.py generates, and the README stays short."""

import glob
import importlib.util
import os
import re
import subprocess
import sys

import numpy as np
import pytest

from diffmtl import mtl
from main_runs import ROOT
from tools import config_reference, mtl_reference

PAGES = sorted(
    [os.path.join(ROOT, "README.md"), os.path.join(ROOT, "CHANGELOG.md")]
    + glob.glob(os.path.join(ROOT, "docs", "*.md"))
)
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
MODULE = re.compile(r"python3? -m ([\w.]+)")
CONFIG = re.compile(r"main\.py[^\n`]*?--config=([\w./]+\.py)")
HEADING = re.compile(r"^#+ (.*)$", re.MULTILINE)


def _text(path: str) -> str:
    with open(path) as f:
        return f.read()


def anchor(heading: str) -> str:
    """GitHub's anchor of a Markdown heading."""
    heading = re.sub(r"[`*_]", "", heading.strip().lower())
    return re.sub(r"[^\w\- ]", "", heading).replace(" ", "-")


def _name(path):
    return os.path.relpath(path, ROOT)


@pytest.mark.parametrize("page", PAGES, ids=_name)
def test_relative_links_resolve(page):
    broken = []
    for target in LINK.findall(_text(page)):
        if re.match(r"[a-z]+://|mailto:", target):
            continue
        file, _, fragment = target.partition("#")
        path = os.path.normpath(os.path.join(os.path.dirname(page), file)) if file else page
        headings = () if not path.endswith(".md") or not os.path.exists(path) else {
            anchor(h) for h in HEADING.findall(_text(path))
        }  # fmt: skip
        if not os.path.exists(path) or (fragment and headings and fragment not in headings):
            broken.append(target)
    assert not broken, broken


def _module_exists(name: str) -> bool:
    parts = name.split(".")
    base = os.path.join(ROOT, *parts)
    if os.path.isfile(base + ".py") or os.path.isfile(os.path.join(base, "__init__.py")):
        return True
    if parts[0] in {"diffmtl", "benchmarks", "tools", "configs"}:
        return False
    return importlib.util.find_spec(parts[0]) is not None  # pip, venv, jupytext, ...


@pytest.mark.parametrize("page", PAGES, ids=_name)
def test_commands_name_existing_modules_and_configs(page):
    text = _text(page)
    missing = [m for m in MODULE.findall(text) if not _module_exists(m)]
    missing += [c for c in CONFIG.findall(text) if c != "CONFIG" and not os.path.isfile(
        os.path.join(ROOT, c))]  # fmt: skip
    assert not missing, missing


def _example():
    path = os.path.join(ROOT, "examples", "multi_task_regression.py")
    spec = importlib.util.spec_from_file_location("multi_task_regression", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return path, module


def test_the_readme_is_a_short_guide_and_its_mtl_snippet_is_a_cut_of_the_example_that_runs():
    """The snippet's lines appear in the example in order (a cut: nothing rewritten), and run
    with the example's data, they train to the example's losses."""
    readme = _text(os.path.join(ROOT, "README.md"))
    assert len(readme.splitlines()) <= 250
    snippet = readme.split("<!-- mtl-snippet")[1].split("```python\n")[1].split("```")[0]
    path, example = _example()
    lines = iter(_text(path).splitlines())
    missing = [line for line in snippet.splitlines() if line not in lines]
    assert not missing, f"README snippet lines not in the example, in order: {missing[:3]}"
    namespace = {"make_data": example.make_data}
    exec(compile(snippet, "README.md", "exec"), namespace)  # noqa: S102
    np.testing.assert_array_equal(namespace["train"]("upgrad", 20), example.train("upgrad", 20))


@pytest.mark.parametrize("method", ["equal", "fixed", "pcgrad", "nash_mtl", "mgda", "famo"])
def test_the_standalone_example_trains_every_kind_of_method(method):
    """Every task's loss falls from its start (the heads start at zero: loss = mean y^2)."""
    _, example = _example()
    start = example.train(method, steps=0)
    end = example.train(method, steps=60)
    assert np.all(np.isfinite(end)) and float(np.sum(end)) < float(np.sum(start))


def test_the_example_runs_as_a_script():
    path, _ = _example()
    env = {**os.environ, "PYTHONPATH": ROOT, "JAX_PLATFORMS": "cpu"}
    result = subprocess.run([sys.executable, path, "--method=cagrad", "--steps=5"],
                            capture_output=True, text=True, env=env)  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.startswith("cagrad final task losses:")


def test_nothing_cites_a_file_outside_the_repository():
    listed = subprocess.run(
        ["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    outside = ("PAPER" + ".md", "DESIGN" + ".md", "STYLE" + ".md")
    cited = [
        name
        for name in listed
        if name.endswith((".py", ".md", ".toml", ".txt", ".sh", ".ipynb"))
        and any(word in _text(os.path.join(ROOT, name)) for word in outside)
    ]
    assert not cited, cited


def test_the_config_reference_page_is_up_to_date():
    assert _text(os.path.join(ROOT, "docs", "configs.md")) == config_reference.reference(), (
        "docs/configs.md is out of date: python -m tools.config_reference"
    )


def test_the_mtl_api_pages_are_up_to_date_and_every_public_name_is_documented():
    for name, text in mtl_reference.pages().items():
        assert _text(os.path.join(ROOT, "docs", "api", name)) == text, (
            f"docs/api/{name} is out of date: python -m tools.mtl_reference"
        )
    undocumented = [n for n in mtl.__all__ if not (getattr(mtl, n).__doc__ or "").strip()]
    assert not undocumented, undocumented


def test_the_manual_builds_with_mkdocs_strict(tmp_path):
    """Every page, link, anchor and mkdocstrings reference resolves (a warning fails)."""
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "NO_MKDOCS_2_WARNING": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-q", "-d", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, env=env,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
