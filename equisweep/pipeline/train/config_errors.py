"""The wording of settings errors: a pydantic ``ValidationError`` of the run config (or of a model that holds it,
such as a sweep spec) as one ``field: message`` line that names the field and the fix, and the "did you mean" for
the relaxation options' old flat names.
"""

from __future__ import annotations

import difflib
from typing import Any, get_args, get_origin

from pydantic import BaseModel, ValidationError

from equisweep.errors import UserError
from equisweep.pipeline.train.config import GROUPS, RunConfig

# The relaxation options' flat names from before they moved into the one mapping: name -> (method, option).
OLD_RELAXATION_KEYS = {"relax_banks": ("relaxed", "banks"), "relax_alpha": ("relaxed", "alpha"),
                       "rpp_free_wd": ("rpp", "free_wd"), "rpp_equiv_wd": ("rpp", "equiv_wd"),
                       "partial_lambda": ("partial", "lambda")}


def old_relaxation_key(key: str, value: Any = "...") -> str | None:
    """The "did you mean" for a relaxation option under its old flat name; None for any other key."""
    if key not in OLD_RELAXATION_KEYS:
        return None
    method, option = OLD_RELAXATION_KEYS[key]
    return f"{key}: unknown key; did you mean relaxation: {{method: {method}, {option}: {value}}}?"


# What a value of each pydantic error type should have been, in plain words.
_EXPECTED = {"int": "a whole number", "float": "a number", "bool": "true or false", "string": "text",
             "list": "a list", "tuple": "a list", "dict": "a mapping (key: value)", "model": "a mapping (key: value)",
             "literal": None}
_BOUNDS = {"greater_than": "above", "greater_than_equal": "at least", "less_than": "below",
           "less_than_equal": "at most"}


def describe_validation_error(err: ValidationError, schema: type[BaseModel] = RunConfig) -> str:
    """The first problem as ``field: message`` (a run setting by its flat name, another nested field as ``a.b``), in
    one line, in plain words: an unknown key gets the closest allowed ones of ``schema`` (the model that was
    validated) as "did you mean". Unknown keys come first: a misspelt key is often why a required one is missing."""
    errors = err.errors()
    first = next((e for e in errors if e["type"] == "extra_forbidden"), errors[0])
    loc = first["loc"]
    field = _field_name(schema, loc)
    kind, ctx, value = first["type"], first.get("ctx", {}), first.get("input")
    cause = ctx.get("error")
    if isinstance(cause, UserError):
        return str(cause)
    if cause is not None:  # a validator's ValueError carries its own message
        return f"{field}: {cause}"
    if kind == "extra_forbidden":
        old = old_relaxation_key(str(loc[-1]), value)
        if old is not None:
            return old
        allowed = _keys_at(schema, loc[:-1])
        close = difflib.get_close_matches(str(loc[-1]), allowed, n=3, cutoff=0.6)
        if close:
            return f"{field}: unknown key; did you mean {' or '.join(map(repr, close))}?"
        return f"{field}: unknown key; remove it, or use one of: {', '.join(allowed)}"
    if kind == "missing":
        return f"{field}: required; set it"
    if kind == "literal_error":
        return f"{field}: must be {ctx['expected']}, got {value!r}"
    if kind in _BOUNDS:
        bound = next(iter(ctx.values()))
        return f"{field}: must be {_BOUNDS[kind]} {bound}, got {value!r}"
    if kind == "int_from_float":
        return f"{field}: must be a whole number, got {value!r}"
    expected = _EXPECTED.get(kind.split("_")[0])
    if expected is not None:
        return f"{field}: must be {expected}, got {value!r}"
    return f"{field}: {first['msg']} (got {value!r})"


def _keys_at(schema: type[BaseModel], path: tuple[int | str, ...]) -> list[str]:
    """The keys allowed at ``path`` inside ``schema`` (following nested models, and the entries of their lists and
    mappings); empty where the path leaves the models."""
    model, parts = schema, list(path)
    while parts:
        field = model.model_fields.get(str(parts.pop(0)))
        nested, in_container = _nested_model(field.annotation) if field is not None else (None, False)
        if nested is None:
            return []
        if in_container and parts:
            parts.pop(0)  # the list index or mapping key
        model = nested
    accepted = getattr(model, "accepted_keys", None)  # a model that also takes other spellings lists them
    return accepted() if accepted is not None else list(model.model_fields)


def _field_name(schema: type[BaseModel], loc: tuple[int | str, ...]) -> str:
    """``loc`` as the user names it: a run setting by its flat name (``lr``, not ``optim.lr`` or ``base.optim.lr``),
    any other nested field as ``a.b``."""
    containers = (RunConfig, *GROUPS.values())
    model: type[BaseModel] | None = schema
    shown = []
    for i, part in enumerate(loc):
        field = model.model_fields.get(str(part)) if model is not None else None
        model = _nested_model(field.annotation)[0] if field is not None else None
        if model not in containers or i == len(loc) - 1:
            shown.append(str(part))
    return ".".join(shown) or "config"


def _nested_model(annotation: Any) -> tuple[type[BaseModel] | None, bool]:
    """The model inside a field's annotation (``X``, ``X | None``, ``list[X]``, ``dict[str, X]``), and whether it sits
    in a list or mapping."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation, False
    for arg in get_args(annotation):
        nested, in_container = _nested_model(arg)
        if nested is not None:
            return nested, in_container or get_origin(annotation) in (list, dict)
    return None, False
