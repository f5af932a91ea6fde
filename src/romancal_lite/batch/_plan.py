"""What a batch does: its inputs expanded into exposures, associations and tasks.

Inputs are files, globs, directories (their ``*_uncal.asdf``) or association files.
An association file is one association (its science members, its product name);
loose files are grouped by exposure: the detectors of one exposure
(``<visit>_<exposure>_wfiNN_uncal.asdf``) are one association, aligned together as
``romancal-lite run roman_elp <its files>`` would. An association of one file is run
as ``romancal-lite run roman_elp <file>``.
"""

from __future__ import annotations

import glob
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from romancal_lite.errors import ConfigError

__all__ = ["Group", "Member", "expand_inputs"]

_DETECTOR = re.compile(r"^(?P<exposure>.+)_wfi\d\d(_[a-z0-9]+)?$", re.IGNORECASE)


@dataclass
class Member:
    """One exposure-detector: its input file and association group id."""

    path: str
    group_id: str | None = None

    @property
    def name(self) -> str:
        """Basename without extension and known suffix (names its tasks and outputs)."""
        from romancal_lite.stpipe.naming import remove_suffix

        return remove_suffix(os.path.splitext(os.path.basename(self.path))[0])


@dataclass
class Group:
    """Exposure-detectors aligned together (one association), and its product name."""

    name: str
    members: list[Member] = field(default_factory=list)
    asn: str | None = None


def _exposure_key(path: str) -> str:
    from romancal_lite.stpipe.naming import remove_suffix

    stem = remove_suffix(os.path.splitext(os.path.basename(path))[0])
    match = _DETECTOR.match(stem)
    return match.group("exposure") if match else stem


def expand_inputs(items: list[str]) -> list[Group]:
    """Expand the command line's inputs into associations of exposure-detectors.

    Parameters
    ----------
    items : list of str
        Files, globs, directories, association files.

    Returns
    -------
    list of Group
        In the order given (loose files sorted and grouped by exposure).

    Raises
    ------
    ConfigError
        If an input matches nothing, or an exposure is given twice.
    """
    from romancal_lite.associations import is_association, load_asn

    groups: list[Group] = []
    loose: dict[str, Group] = {}
    seen: dict[str, str] = {}

    def add(group: Group, member: Member) -> None:
        if member.name in seen:
            raise ConfigError(
                f"{member.path}: exposure {member.name} is given twice (also {seen[member.name]});"
                " its outputs would collide"
            )
        seen[member.name] = member.path
        group.members.append(member)

    for item in items:
        if any(c in item for c in "*?["):
            paths = sorted(glob.glob(item))
            if not paths:
                raise ConfigError(f"{item}: no file matches")
        elif os.path.isdir(item):
            paths = sorted(str(p) for p in Path(item).glob("*_uncal.asdf"))
            if not paths:
                raise ConfigError(f"{item}: directory without *_uncal.asdf files")
        else:
            if not os.path.exists(item):
                raise ConfigError(f"{item}: no such file")
            paths = [item]
        for path in paths:
            if is_association(path):
                asn = load_asn(path)
                science = asn.science()
                if not science:
                    raise ConfigError(f"{path}: the association has no science member")
                group = Group(str(asn.name or _exposure_key(path)), asn=str(path))
                for m in science:
                    add(group, Member(os.fspath(m.path), m.group_id))
                groups.append(group)
            else:
                key = _exposure_key(path)
                if key not in loose:
                    loose[key] = Group(key)
                    groups.append(loose[key])
                add(loose[key], Member(path))
    if not groups:
        raise ConfigError("no input exposure")
    return groups
