"""Config fields named by a user that do not exist: one line with the field's new place (a field
renamed since an earlier release) or the closest existing names, instead of ml_collections'
AttributeError traceback. Used by main.py for --config.<field>=<value> and by sweeps for their
override dicts. The renames are kept in CHANGELOG.md too.
"""

from __future__ import annotations

import difflib
import importlib.util
import os

from diffmtl.errors import UserError

# Fields renamed since an earlier release: old dotted name -> new one.
RENAMES = {
    "mtl.uw_learning_rate": "mtl.uw.learning_rate",
    "mtl.pcgrad_seed": "mtl.pcgrad.seed",
    "mtl.nash_update_every": "mtl.nash_mtl.update_every",
    "mtl.nash_max_norm": "mtl.nash_mtl.max_norm",
}


def field_names(config, prefix: str = "") -> list[str]:
    """Every dotted field name of `config`, sections included."""
    names = []
    for key, value in config.items():
        name = f"{prefix}{key}"
        names.append(name)
        if hasattr(value, "items"):
            names += field_names(value, f"{name}.")
    return names


def has_field(config, field: str) -> bool:
    node = config
    for key in field.split("."):
        if not hasattr(node, "items") or key not in node:
            return False
        node = node[key]
    return True


def check_field(config, field: str, where: str = "config field") -> None:
    """UserError in one line unless `field` (dotted) is a field of `config`."""
    if has_field(config, field):
        return
    if field in RENAMES:
        raise UserError(f"{where} {field} was renamed to {RENAMES[field]} (CHANGELOG.md)")
    close = difflib.get_close_matches(field, field_names(config), n=3, cutoff=0.6)
    hint = f"did you mean {' or '.join(close)}?" if close else "the fields are in docs/configs.md"
    raise UserError(f"{where} {field} does not exist; {hint}")


def load_config_file(spec: str):
    """The config of `path[:argument]` as --config names it (get_config(argument))."""
    path, _, argument = spec.partition(":")
    if not os.path.isfile(path):
        raise UserError(f"--config={spec}: no such file {path}")
    module_spec = importlib.util.spec_from_file_location("_diffmtl_config", path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module.get_config(argument) if argument else module.get_config()


def check_command_line(argv: list[str], flag: str = "config") -> None:
    """UserError naming the first --config.<field> override of `argv` that is not a field of
    the config file --config names (nothing when all exist or no file is named)."""
    spec, fields = None, []
    for i, arg in enumerate(argv):
        if arg.startswith(f"--{flag}="):
            spec = arg.split("=", 1)[1]
        elif arg.startswith(f"--{flag}."):
            fields.append(arg[len(flag) + 3 :].split("=", 1)[0])
        elif arg == f"--{flag}" and i + 1 < len(argv):
            spec = argv[i + 1]
    if spec is None or not fields:
        return
    config = load_config_file(spec)
    for field in fields:
        check_field(config, field)
