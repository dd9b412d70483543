"""A registry of named methods with typed options: what relaxations (``relaxation.py``) and invariance wrappers
(``invariance.py``) are filed in.

A setting names a method with its defaults (``"rpp"``) or gives one mapping (``{"method": "rpp", "free_wd": 1.0}``);
``settings`` turns either into the full mapping, the form configs, recipes and checkpoints keep. A method of another
package registers as ``"package.module:name"`` and is found by that name wherever it is first looked up.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any, Generic, Protocol, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from equisweep.errors import UserError


class MethodOptions(BaseModel):
    """A method's options: subclass it with one defaulted field per option (an alias spells a Python keyword)."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class Record(Protocol):
    name: str
    options: type[MethodOptions]


R = TypeVar("R", bound=Record)


class MethodRegistry(Generic[R]):
    """The records of one kind of method, filed by name; ``field`` is the setting that names them (``relaxation``,
    ``invariance``), which every error line starts with."""

    def __init__(self, field: str) -> None:
        self.field = field
        self._records: dict[str, R] = {}

    def register(self, record: R) -> R:
        """File ``record`` under its name; names are unique."""
        if record.name in self._records:
            raise ValueError(f"{self.field} {record.name!r} is already registered")
        self._records[record.name] = record
        return record

    def names(self) -> list[str]:
        """The registered methods, in the order they registered."""
        return list(self._records)

    def get(self, name: str) -> R:
        """The record registered as ``name``; ``"package.module:name"`` imports that module first, which registers it
        (so a sweep's trial processes find it too)."""
        module, colon, _ = name.partition(":")
        if name not in self._records and colon:
            try:
                importlib.import_module(module)
            except ImportError as err:
                raise UserError(f"{self.field}: cannot import {module!r} for the method {name!r} ({err}); check its "
                                "spelling and that it is on the Python path") from None
        if name not in self._records:
            raise UserError(f"{self.field}: unknown {self.field} {name!r}; choose from: {', '.join(self._records)}")
        return self._records[name]

    def resolve(self, setting: str | Mapping[str, Any]) -> tuple[R, Any]:
        """The record and validated options of a setting (a method's name, or ``{method: name, **options}``); one
        ``UserError`` line naming the field otherwise."""
        if isinstance(setting, str):
            setting = {"method": setting}
        if not isinstance(setting, Mapping) or not isinstance(setting.get("method"), str):
            raise UserError(f"{self.field}: give a method's name or {{method: NAME, ...its options}}, got {setting!r}")
        record = self.get(setting["method"])
        given = {key: value for key, value in setting.items() if key != "method"}
        try:
            return record, record.options.model_validate(given)
        except ValidationError as err:
            first = err.errors()[0]
            where = ".".join(map(str, (self.field, *first["loc"])))
            if first["type"] == "extra_forbidden":
                known = ", ".join(info.alias or key for key, info in record.options.model_fields.items()) or "none"
                raise UserError(f"{where}: {record.name} takes no option {first['loc'][-1]!r}; its options: "
                                f"{known}") from None
            problem = first["msg"].replace("Input should be", "must be")
            raise UserError(f"{where}: {problem}, got {first['input']!r}") from None

    def settings(self, setting: str | Mapping[str, Any]) -> dict[str, Any]:
        """The full mapping ``{method: name, **every option}`` of a setting, defaults filled in."""
        record, options = self.resolve(setting)
        return {"method": record.name, **options.model_dump(by_alias=True)}

    def label(self, setting: str | Mapping[str, Any]) -> str:
        """A setting in a few characters: the method's name, then any option off its default,
        ``rpp(free_wd=0.0001)``."""
        record, options = self.resolve(setting)
        defaults = record.options().model_dump(by_alias=True)
        changed = [f"{key}={value}" for key, value in options.model_dump(by_alias=True).items()
                   if value != defaults[key]]
        return f"{record.name}({', '.join(changed)})" if changed else record.name
