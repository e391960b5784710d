"""Load-time checks of a project's settings: which folder is the project (``--project``,
``$RAGTUNE_PROJECT_DIR`` or a search upwards), where an invalid setting came from (the file or an environment
variable, named as the user spelled it), and whether the store and model folders can be created.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel
from pydantic_settings import SettingsError

from ragtune.errors import ConfigError

if TYPE_CHECKING:
    from ragtune.config import Settings

CONFIG_NAME = "ragtune.yaml"
ENV_PREFIX = "RAGTUNE_"
PROJECT_DIR_ENV = "RAGTUNE_PROJECT_DIR"


def find_project(start: Path | None = None) -> Path:
    """The nearest folder at or above ``start`` (default: the current folder) holding ``ragtune.yaml``."""
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / CONFIG_NAME).is_file():
            return folder
    raise ConfigError(
        f"no {CONFIG_NAME} found in {here} or its parents: run `ragtune init` there, or pass --project DIR"
    )


def env_name(name: str) -> str | None:
    """The environment variable named ``name``, matched without regard to case as pydantic-settings does."""
    if name in os.environ:
        return name
    return next((k for k in os.environ if k.lower() == name.lower()), None)


def setting_origin(loc: Sequence[int | str], path: Path) -> str:
    """Where the setting at ``loc`` came from: an environment variable, else the settings file."""
    keys = [str(k) for k in loc]
    for i in range(len(keys), 0, -1):
        var = env_name(ENV_PREFIX + "__".join(keys[:i]).upper())
        if var is None:
            continue
        if i == len(keys):
            return f"environment variable {var}"
        try:  # a section given as JSON, e.g. RAGTUNE_RETRIEVAL='{"top_k": 0}'
            node: Any = json.loads(os.environ[var])
        except ValueError:
            continue
        for key in keys[i:]:
            if not (isinstance(node, dict) and key in node):
                break
            node = node[key]
        else:
            return f"environment variable {var} (key '{'.'.join(keys[i:])}')"
    where = f"{path}: setting '{'.'.join(keys)}'" if keys else str(path)
    prefix = (ENV_PREFIX + "__".join(keys) + "__").lower()
    deeper = sorted(k for k in os.environ if keys and k.lower().startswith(prefix))
    if deeper:
        where += f" (with environment variable{'s' if len(deeper) > 1 else ''} {', '.join(deeper)})"
    return where


def bad_json_variable(exc: SettingsError, settings_cls: type[BaseModel]) -> str:
    """The ``RAGTUNE_<SECTION>`` variable (a section of ``settings_cls``) whose value is not valid JSON."""
    for name, field in settings_cls.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            var = env_name(ENV_PREFIX + name.upper())
            if var is not None:
                try:
                    json.loads(os.environ[var])
                except ValueError:
                    return var
    found = re.search(r'field "(\w+)"', str(exc))
    return (env_name(ENV_PREFIX + found.group(1).upper()) or ENV_PREFIX + found.group(1).upper()) if found \
        else f"a {ENV_PREFIX}* variable"


def uncreatable(folder: Path) -> str | None:
    """Why ``folder`` cannot be created (None when it exists as a folder or could be made); creates nothing."""
    try:
        if folder.exists():
            return None if folder.is_dir() else f"{folder} exists and is not a folder"
        ancestor = folder.parent
        while not ancestor.exists() and ancestor != ancestor.parent:
            ancestor = ancestor.parent
        if not ancestor.is_dir():
            return f"{ancestor} is not a folder"
    except OSError as exc:
        return f"{folder} cannot be inspected ({exc.strerror or exc})"
    if not os.access(ancestor, os.W_OK | os.X_OK):
        return f"{ancestor} is not writable"
    if hasattr(os, "statvfs"):
        try:
            if os.statvfs(ancestor).f_flag & getattr(os, "ST_RDONLY", 1):
                return f"{ancestor} is on a read-only file system"
        except OSError:
            pass
    fstype = filesystem_type(ancestor)
    if fstype in _PSEUDO_FILESYSTEMS:
        return f"{ancestor} is on the {fstype} pseudo file system, which cannot hold files"
    return None


# Kernel file systems where no ordinary folder can be made, even by root (who passes every access check).
_PSEUDO_FILESYSTEMS = frozenset({"proc", "sysfs", "devpts", "cgroup", "cgroup2", "securityfs", "debugfs", "tracefs",
                                 "pstore", "bpf", "configfs", "fusectl", "mqueue", "binfmt_misc", "efivarfs"})


def filesystem_type(folder: Path) -> str | None:
    """The type of the file system mounted nearest above ``folder`` (Linux only; None elsewhere)."""
    try:
        lines = Path("/proc/self/mounts").read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return None
    target = str(folder.resolve())
    best, best_type = "", None
    for line in lines:
        fields = line.split()
        if len(fields) < 3:
            continue
        point = fields[1].replace("\\040", " ")
        inside = target == point or target.startswith(point.rstrip("/") + "/")
        if inside and len(point) >= len(best):
            best, best_type = point, fields[2]
    return best_type


def choose_project(project: Path | None) -> Path:
    """The project folder: ``project`` if given, else ``$RAGTUNE_PROJECT_DIR``, else found from the current folder.

    When both the argument and the variable are given they must name the same folder.
    """
    var = env_name(PROJECT_DIR_ENV)
    raw = os.environ.get(var, "") if var else ""
    from_env = Path(raw).expanduser().resolve() if raw.strip() else None
    if project is not None:
        project = project.expanduser().resolve()
        if from_env is not None and from_env != project:
            shown = raw if Path(raw).expanduser() == from_env else f"{raw} ({from_env})"
            raise ConfigError(f"the project folder {project} (--project) and {var}={shown} differ: "
                              f"unset {var} or drop --project, so only one of them chooses the project")
        if not (project / CONFIG_NAME).is_file():
            raise ConfigError(f"{project} is not a ragtune project (no {CONFIG_NAME}): run `ragtune init {project}`")
        return project
    if from_env is not None:
        if not (from_env / CONFIG_NAME).is_file():
            raise ConfigError(f"{var}={raw} names {from_env}, which is not a ragtune project (no {CONFIG_NAME}): "
                              f"run `ragtune init {from_env}` or unset {var}")
        return from_env
    return find_project()


def check_folders(settings: Settings, path: Path) -> None:
    """Refuse settings whose store or model folder cannot be created (``path``: the settings file)."""
    for key, folder in (("store_path", settings.index_dir), ("models_path", settings.models_dir)):
        reason = uncreatable(folder)
        if reason is not None:
            raise ConfigError(f"{setting_origin((key,), path)}: cannot create {folder}: {reason}; "
                              f"point {key} at a writable folder")
