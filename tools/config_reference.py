"""Writes docs/configs.md: every field of the default config with its default, type, meaning and
the check that enforces it, generated from the code so that it cannot go stale.

  python -m tools.config_reference              # rewrites docs/configs.md
  python -m tools.config_reference --check      # exit 1 if docs/configs.md is out of date

The meaning is the field's comment in configs/fashion_mnist.py (the line's own comment, else the
comment lines just above it). The check is found by running config_validation.validate on the
default config with the field set to a bad value of its type (tests/test_config_validation.py
does the same to require a check for every field): the one-line error it raises names the
allowed values; a field no range can check shows where it is checked instead (FREE_FIELDS).
"""

from __future__ import annotations

import dataclasses
import os
import re
import sys

from absl import app, flags

from configs import fashion_mnist
from diffmtl import config_validation, mtl
from diffmtl.errors import UserError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PAGE = os.path.join(ROOT, "docs", "configs.md")
CONFIG_FILE = os.path.join(ROOT, "configs", "fashion_mnist.py")
ASSIGNMENT = re.compile(r"^\s*config\.([\w.]+) = .*?(?:\s+#\s*(.*))?$")


def bad_values(value) -> list:
    """Values of the wrong kind or range for a field holding `value`."""
    if isinstance(value, bool):
        return ["maybe"]
    if isinstance(value, int):
        return [-1]
    if isinstance(value, float):
        return [-1.0, float("nan")]
    if isinstance(value, str):
        return ["no_such_value"]
    if isinstance(value, tuple):
        return [("x",)]
    return []


def fields(config) -> dict[tuple[str, ...], object]:
    """(section, ..., name) -> default value of every leaf field."""
    out = {}

    def walk(node, path):
        for key, value in node.items():
            if hasattr(value, "items"):
                walk(value, (*path, key))
            else:
                out[(*path, key)] = value

    walk(config, ())
    return out


def set_field(config, path, value) -> None:
    node = config
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value


def check_message(get_config, path, value) -> str | None:
    """The one-line error validate() raises for the field at `path` set to a bad value ('' when
    every bad value is accepted, None when the config refuses the value's type itself)."""
    field = ".".join(path)
    message = None
    for bad in bad_values(value):
        config = get_config()
        try:
            set_field(config, path, bad)
        except TypeError:
            continue
        try:
            config_validation.validate(config, 1, check_files=False)
            message = message or ""
        except UserError as e:
            if field in str(e):
                return str(e)
            message = message or ""
    return message


def comments(source: str) -> dict[str, str]:
    """field -> its comment in a config file's source."""
    out, above = {}, []
    for line in source.splitlines():
        stripped = line.strip()
        if stripped.startswith("#"):
            above.append(stripped.lstrip("# "))
            continue
        match = ASSIGNMENT.match(line)
        if match:
            out[match.group(1)] = match.group(2) or " ".join(above)
        above = []
    return out


def option_doc(method: str, option: str) -> str:
    """The meaning of an MTL method's option, from its Options dataclass."""
    fields = dataclasses.fields(mtl.method(method).options)
    return next(f.metadata["doc"] for f in fields if f.name == option)


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def reference() -> str:
    with open(CONFIG_FILE) as f:
        meaning = comments(f.read())
    rows = []
    for path, value in fields(fashion_mnist.get_config()).items():
        field = ".".join(path)
        if field in config_validation.FREE_FIELDS:
            check = f"not range-checked: {config_validation.FREE_FIELDS[field]}"
        else:
            message = check_message(fashion_mnist.get_config, path, value)
            check = {None: "its type (the config refuses another)", "": "-"}.get(message, message)
        text = meaning.get(field, "")
        if not text and path[0] == "mtl" and len(path) == 3:
            text = f"`mtl.method='{path[1]}'`: {option_doc(path[1], path[2])}"
        kind = type(value).__name__
        rows.append(f"| `{field}` | `{value!r}` | {kind} | {_cell(text)} | {_cell(check)} |")
    return "\n".join([
        "# Config reference",
        "",
        "Every field of the default config (`configs/fashion_mnist.py`; the other configs change",
        "values, not fields), its default and type, what it means, and the check that enforces it:",
        "the one-line error `config_validation.validate` gives for a bad value (which names what",
        "is allowed), or where a field no range can check is checked instead. Generated by",
        "`python -m tools.config_reference`; a test fails when this page is out of date.",
        "Cross-field checks (batch against micro-batches, clusters and devices; image size",
        "against the source; ...) are in `diffmtl/config_validation.py`.",
        "",
        "| field | default | type | meaning | check |",
        "|---|---|---|---|---|",
        *rows,
        "",
    ])  # fmt: skip


def main(argv):
    del argv
    text = reference()
    if FLAGS.check:
        with open(PAGE) as f:
            if f.read() != text:
                print("docs/configs.md is out of date: python -m tools.config_reference")
                sys.exit(1)
        return
    with open(PAGE, "w") as f:
        f.write(text)
    print(f"wrote {PAGE}")


if __name__ == "__main__":
    FLAGS = flags.FLAGS
    flags.DEFINE_bool("check", False, "Only check that docs/configs.md is up to date.")
    app.run(main)
