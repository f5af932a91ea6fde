"""Typed, validated step parameters.

A parameter is declared as a class attribute of a `~romancal_lite.stpipe.Step`::

    class SaturationStep(Step):
        class_alias = "saturation"
        n_pix_grow_sat = Param(int, 0, "Grow saturated pixels by this many pixels",
                               minimum=0)

`Param` is a descriptor: on an instance it reads and writes the step's validated value,
so ``step.n_pix_grow_sat`` is an ``int`` to type checkers too (stpipe's configobj spec
strings are invisible to them, see ``docs/style-anchors.md`` section 3).

Values are validated by `validate_parameters`, which reports every problem of a set of
values in one `~romancal_lite.errors.ConfigError` and rejects unknown names.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar, overload

from romancal_lite.errors import ConfigError

__all__ = ["Param", "coerce_value", "format_errors", "validate_parameters"]

T = TypeVar("T")

_TRUE = {"true", "yes", "on", "1", "t", "y"}
_FALSE = {"false", "no", "off", "0", "f", "n"}
_NONE = {"none", "null", "~", ""}
_SUPPORTED_TYPES = (bool, int, float, str)


@dataclass(eq=False)
class Param(Generic[T]):
    """Declaration of one step parameter.

    Parameters
    ----------
    type : type
        One of ``bool``, ``int``, ``float``, ``str``. Strings (from the command line or
        a parameter file) are converted to this type; an ``int`` is accepted for a
        ``float`` parameter, a ``bool`` is never accepted for a number.
    default : object
        Default value; must itself be valid (checked when the class is defined).
    help : str
        One-line description shown by ``--help``.
    choices : sequence, optional
        Allowed values.
    minimum, maximum : float, optional
        Inclusive bounds for numeric parameters.
    nullable : bool, optional
        Whether ``None`` is allowed. Defaults to ``default is None``.
    """

    type: type[T]
    default: T | None
    help: str = ""
    choices: Sequence[T] | None = None
    minimum: float | None = None
    maximum: float | None = None
    nullable: bool | None = None
    name: str = field(default="", init=False)

    def __post_init__(self) -> None:
        if self.type not in _SUPPORTED_TYPES:
            raise TypeError(f"Param type must be one of bool, int, float, str, not {self.type!r}")
        if self.nullable is None:
            self.nullable = self.default is None
        if self.choices is not None:
            self.choices = tuple(self.choices)

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name
        error = self.check(self.default)[1]
        if error is not None:
            raise TypeError(f"{owner.__name__}.{name}: invalid default: {error}")

    @overload
    def __get__(self, instance: None, owner: type) -> Param[T]: ...

    @overload
    def __get__(self, instance: object, owner: type) -> T: ...

    def __get__(self, instance: object | None, owner: type) -> Param[T] | T:
        if instance is None:
            return self
        return instance._values[self.name]  # type: ignore[attr-defined]

    def __set__(self, instance: object, value: object) -> None:
        converted, error = self.check(value)
        if error is not None:
            raise ConfigError(f"invalid value for parameter {self.name!r}: {error}")
        instance._values[self.name] = converted  # type: ignore[attr-defined]

    def check(self, value: object) -> tuple[Any, str | None]:
        """Convert ``value`` to this parameter's type and check it.

        Parameters
        ----------
        value : object
            Candidate value, possibly a string from the command line.

        Returns
        -------
        converted : object
            The converted value (undefined when there is an error).
        error : str or None
            Why the value is not acceptable, or None.
        """
        try:
            converted = coerce_value(value, self.type, bool(self.nullable))
        except ValueError as exc:
            return None, str(exc)
        if converted is None:
            return None, None
        if self.choices is not None and converted not in self.choices:
            allowed = ", ".join(repr(c) for c in self.choices)
            return None, f"{converted!r} is not one of {allowed}"
        if self.minimum is not None and converted < self.minimum:
            return None, f"{converted!r} is less than the minimum {self.minimum!r}"
        if self.maximum is not None and converted > self.maximum:
            return None, f"{converted!r} is greater than the maximum {self.maximum!r}"
        return converted, None

    def describe(self) -> str:
        """Return the type and constraints as a short string for help output.

        Returns
        -------
        str
            E.g. ``"int >= 0"`` or ``"str, one of 'a', 'b'"``.
        """
        text = self.type.__name__
        if self.choices is not None:
            text += ", one of " + ", ".join(repr(c) for c in self.choices)
        if self.minimum is not None:
            text += f", >= {self.minimum}"
        if self.maximum is not None:
            text += f", <= {self.maximum}"
        if self.nullable:
            text += " or None"
        return text


def coerce_value(value: object, typ: type, nullable: bool) -> Any:
    """Convert ``value`` to ``typ``, accepting the string spellings of the CLI.

    Parameters
    ----------
    value : object
        Value to convert.
    typ : type
        ``bool``, ``int``, ``float`` or ``str``.
    nullable : bool
        Whether ``None`` (or the strings ``"none"``/``"null"``) is allowed.

    Returns
    -------
    object
        The converted value.

    Raises
    ------
    ValueError
        If the value cannot be converted; the message names the expected type and
        echoes the value.
    """
    if isinstance(value, str) and typ is not str and value.strip().lower() in _NONE:
        value = None
    if value is None:
        if nullable:
            return None
        raise ValueError(f"expected {_article(typ)}, got None")
    if typ is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
            return value.strip().lower() in _TRUE
        raise ValueError(f"expected a boolean, got {value!r}")
    if typ is int:
        if isinstance(value, bool):
            raise ValueError(f"expected an integer, got {value!r}")
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                return int(value.strip())
            except ValueError:
                pass
        raise ValueError(f"expected an integer, got {value!r}")
    if typ is float:
        if isinstance(value, bool):
            raise ValueError(f"expected a number, got {value!r}")
        if isinstance(value, int | float):
            return float(value)
        if isinstance(value, str):
            try:
                result = float(value.strip())
            except ValueError:
                pass
            else:
                if not math.isnan(result):
                    return result
        raise ValueError(f"expected a number, got {value!r}")
    if isinstance(value, str):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    raise ValueError(f"expected a string, got {value!r}")


def _article(typ: type) -> str:
    return {bool: "a boolean", int: "an integer", float: "a number", str: "a string"}[typ]


def validate_parameters(
    spec: Mapping[str, Param], values: Mapping[str, object], prefix: str = ""
) -> tuple[dict[str, Any], list[str]]:
    """Validate a mapping of parameter values against a spec.

    Parameters
    ----------
    spec : mapping of str to Param
        The declared parameters.
    values : mapping of str to object
        Values to check (only the ones given; defaults are not filled in).
    prefix : str, optional
        Prepended to parameter names in messages, e.g. ``"steps.saturation."``.

    Returns
    -------
    converted : dict
        The valid values, converted to their declared types.
    errors : list of str
        One message per problem: unknown names and invalid values, in input order.
    """
    converted: dict[str, Any] = {}
    errors: list[str] = []
    for key, value in values.items():
        param = spec.get(key)
        if param is None:
            errors.append(f"{prefix}{key}: unknown parameter")
            continue
        result, error = param.check(value)
        if error is not None:
            errors.append(f"{prefix}{key}: {error}")
        else:
            converted[key] = result
    return converted, errors


def format_errors(what: str, errors: Sequence[str]) -> str:
    """Join validation problems into the one-line message of a ConfigError.

    Parameters
    ----------
    what : str
        What was being configured, e.g. ``"step 'saturation'"``.
    errors : sequence of str
        The problems.

    Returns
    -------
    str
        ``"invalid parameters for <what>: <e1>; <e2>"``.
    """
    return f"invalid parameters for {what}: " + "; ".join(errors)
