"""Click options declared once, from a dataclass (the vcztools pattern).

An :class:`OptionGroup` turns fields of a dataclass plus a table of :class:`FieldOption`
(option names, click type, help) into click options, and the parsed values back into
field values (:meth:`OptionGroup.values`) or an instance (:meth:`OptionGroup.from_click_kwargs`).
Defaults come from the dataclass; a help text may name the field's default as
``{default}``. Each option's click parameter is named after its field, so the command
function receives field names.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import click

__all__ = ["FROM_DATACLASS", "FieldOption", "OptionGroup", "stacked"]


class _FromDataclass:
    def __repr__(self) -> str:
        return "FROM_DATACLASS"


#: Marker: an option's default is its field's default in the dataclass.
FROM_DATACLASS: Any = _FromDataclass()


def stacked(*decorators: Callable[[Callable], Callable]) -> Callable[[Callable], Callable]:
    """One decorator that applies ``decorators`` as if they were written, in this order,
    above the function (click lists options in that order)."""

    def apply(func: Callable[..., Any]) -> Callable[..., Any]:
        for decorate in reversed(decorators):
            func = decorate(func)
        return func

    return apply


@dataclasses.dataclass(frozen=True)
class FieldOption:
    """How one dataclass field appears on the command line.

    field: the dataclass field (also the click parameter name).
    decls: option names, e.g. ``("-o", "--out")``.
    help: help text; ``{default}`` is replaced with the field's default.
    type: click type; None: a flag for a ``bool`` field, else click's default (text).
    default: the option's default; :data:`FROM_DATACLASS`: the field's default.
    show_default, multiple: as for :func:`click.option`.
    parse: the field's value from the option's value (default: as given).
    flag_value: the value of the option given without a value (``--opt`` as well as
        ``--opt VALUE``); None: the option needs a value.
    """

    field: str
    decls: tuple[str, ...]
    help: str = ""
    type: Any = None
    default: Any = FROM_DATACLASS
    show_default: bool = False
    multiple: bool = False
    parse: Callable[[Any], Any] | None = None
    flag_value: Any = None


class OptionGroup:
    """The options of some fields of dataclass ``cls``, in the order of ``specs``.

    Used as a decorator it adds the options to a click command; ``extra`` click options
    (not fields) may stand between them: ``{field: decorator}`` places ``decorator`` just
    after the option of ``field``. ``default``: the default of options whose spec leaves
    it to the group (e.g. None: "not given", for a class that merges given values over its
    own defaults); :data:`FROM_DATACLASS`: the field's default.
    """

    def __init__(
        self,
        cls: type,
        specs: Sequence[FieldOption],
        extra: dict[str, Callable[[Callable], Callable]] | None = None,
        default: Any = FROM_DATACLASS,
    ) -> None:
        self.cls = cls
        self.fields = {f.name: f for f in dataclasses.fields(cls)}
        unknown = [s.field for s in specs if s.field not in self.fields]
        if unknown:
            raise TypeError(f"{cls.__name__} has no field(s) {', '.join(unknown)}")
        self.specs = tuple(specs)
        self.extra = dict(extra or {})
        self.default = default

    def field_default(self, name: str) -> Any:
        """The dataclass default of field ``name`` (None when it has none)."""
        f = self.fields[name]
        if f.default is not dataclasses.MISSING:
            return f.default
        if f.default_factory is not dataclasses.MISSING:
            return f.default_factory()
        return None

    def option(self, spec: FieldOption) -> Callable[[Callable], Callable]:
        """The click option decorator of one field."""
        field_default = self.field_default(spec.field)
        default = self.default if spec.default is FROM_DATACLASS else spec.default
        if default is FROM_DATACLASS:
            default = field_default
        kwargs: dict[str, Any] = {"help": spec.help.replace("{default}", str(field_default))}
        if spec.type is None and self.fields[spec.field].type in (bool, "bool"):
            kwargs["is_flag"] = True
        else:
            kwargs.update(type=spec.type, default=default)
        if spec.show_default:
            kwargs["show_default"] = True
        if spec.multiple:
            kwargs["multiple"] = True
        if spec.flag_value is not None:
            kwargs.update(is_flag=False, flag_value=spec.flag_value)
        return click.option(*spec.decls, spec.field, **kwargs)

    def __call__(self, func: Callable) -> Callable:
        decorators = []
        for spec in self.specs:
            decorators.append(self.option(spec))
            if spec.field in self.extra:
                decorators.append(self.extra[spec.field])
        return stacked(*decorators)(func)

    def values(self, kwargs: dict[str, Any]) -> dict[str, Any]:
        """Remove this group's parameters from click's ``kwargs``; returns them as field
        values (each through its ``parse``), in the order of the specs."""
        out = {}
        for spec in self.specs:
            value = kwargs.pop(spec.field)
            out[spec.field] = value if spec.parse is None else spec.parse(value)
        return out

    def from_click_kwargs(self, kwargs: dict[str, Any]) -> Any:
        """An instance of the dataclass from click's ``kwargs`` (this group's parameters
        are removed from them; fields without an option take their defaults)."""
        return self.cls(**self.values(kwargs))
