"""Temporal payload conversion that resolves each dataclass's type hints once.

Temporal's JSON converter rebuilds a dataclass from its type hints and calls
``typing.get_type_hints`` for every value it decodes; with postponed annotations that compiles
every annotation string again. In a 100-agent swarm that was the largest single cost of
decoding activity inputs in the worker's profile. :class:`CachedHintsConverter` does the same
conversion with the hints resolved once per class, and :func:`data_converter` installs it in
a client's data converter (kswarm's clients get it through their Temporal plugin). Values
decode to exactly what the default converter gives; anything that is not a dataclass is left
to it. Encoding is Temporal's too, without its deep copy of every dataclass
(:class:`FieldsJSONEncoder`).
"""

from __future__ import annotations

import dataclasses
import functools
import typing
from typing import Any

from temporalio.converter import (
    AdvancedJSONEncoder,
    CompositePayloadConverter,
    DataConverter,
    DefaultPayloadConverter,
    EncodingPayloadConverter,
    JSONPlainPayloadConverter,
    JSONTypeConverter,
    value_to_type,
)
from temporalio.plugin import SimplePlugin

__all__ = [
    "CachedHintsConverter",
    "ConverterPlugin",
    "FieldsJSONEncoder",
    "PayloadConverter",
    "data_converter",
]

_Field = tuple[str, Any, bool]


class CachedHintsConverter(JSONTypeConverter):
    """Decode dataclasses as Temporal does, with each class's field hints computed once."""

    def __init__(self) -> None:
        self._fields: dict[type, tuple[_Field, ...]] = {}
        self._converters: list[JSONTypeConverter] = [self]

    def _fields_of(self, cls: type) -> tuple[_Field, ...]:
        fields = self._fields.get(cls)
        if fields is None:
            hints = typing.get_type_hints(cls)
            fields = tuple((f.name, hints[f.name], f.init) for f in dataclasses.fields(cls))
            self._fields[cls] = fields
        return fields

    def to_typed_value(self, hint: type, value: Any) -> Any:
        if not (isinstance(hint, type) and dataclasses.is_dataclass(hint)):
            return JSONTypeConverter.Unhandled
        if not isinstance(value, dict):
            raise TypeError(f"Cannot convert to dataclass {hint}, value is {type(value)} not dict")
        init: dict[str, Any] = {}
        later: dict[str, Any] = {}
        for name, field_hint, in_init in self._fields_of(hint):
            if name not in value:
                continue  # a missing required field fails in the constructor, as in Temporal
            try:
                converted = value_to_type(field_hint, value[name], self._converters)
            except Exception as err:
                raise TypeError(f"Failed converting field {name} on dataclass {hint}") from err
            (init if in_init else later)[name] = converted
        obj = hint(**init)
        for name, v in later.items():
            object.__setattr__(obj, name, v)
        return obj


class PayloadConverter(CompositePayloadConverter):
    """Temporal's default payload converter, with :class:`CachedHintsConverter` for JSON.

    Temporal makes a new payload converter for every workflow activation, so the encoding
    converters are made once per process and shared (they keep no state but the hints cache,
    which then lasts for the process instead of one activation)."""

    def __init__(self) -> None:
        super().__init__(*_encoding_converters())


class FieldsJSONEncoder(AdvancedJSONEncoder):
    """Temporal's JSON encoder, with dataclasses encoded field by field.

    Temporal's encoder turns a dataclass into a dict with ``dataclasses.asdict``, which
    deep-copies every value on the way (each nested dict, list and dataclass) only for the
    encoder to walk the copy once more: in a 100-agent swarm that copying was a sizeable share
    of the worker's CPU for activity inputs and results. Here a dataclass becomes a dict of its
    fields as they are and the encoder walks into nested values itself; the JSON is the same,
    byte for byte.
    """

    def default(self, o: Any) -> Any:
        cls = type(o)
        names = _FIELD_NAMES.get(cls)
        if names is None:
            if not (dataclasses.is_dataclass(o) and not isinstance(o, type)):
                return super().default(o)
            names = _FIELD_NAMES[cls] = tuple(f.name for f in dataclasses.fields(o))
        return {name: getattr(o, name) for name in names}


_FIELD_NAMES: dict[type, tuple[str, ...]] = {}


@functools.cache
def _encoding_converters() -> tuple[EncodingPayloadConverter, ...]:
    hints = CachedHintsConverter()
    return tuple(
        JSONPlainPayloadConverter(encoder=FieldsJSONEncoder, custom_type_converters=[hints])
        if isinstance(c, JSONPlainPayloadConverter)
        else c
        for c in DefaultPayloadConverter.default_encoding_payload_converters
    )


def data_converter(existing: DataConverter | None = None) -> DataConverter:
    """``existing`` (by default Temporal's) with :class:`PayloadConverter`, unless it already
    has a payload converter of its own, which is kept."""
    existing = existing or DataConverter.default
    if existing.payload_converter_class is not DefaultPayloadConverter:
        return existing
    return dataclasses.replace(existing, payload_converter_class=PayloadConverter)


class ConverterPlugin(SimplePlugin):
    """Temporal plugin that installs :func:`data_converter` on a client and its workers."""

    def __init__(self) -> None:
        super().__init__("kswarm.converter", data_converter=data_converter)
