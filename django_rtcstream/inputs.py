"""Declarations of a stream's additional inputs, and their validation.

A stream declares its inputs as Gradio components (``gr.Slider(minimum=0,
maximum=1)``), exactly as with FastRTC, or as the look-alikes defined here
(same constructor arguments) when gradio is not installed. Gradio components
are read by duck typing, so gradio is never imported.

Every declaration becomes an :class:`InputSpec`, which validates and coerces
values: a slider's value is a float within its bounds, a dropdown's one of
its choices, a checkbox's a bool, a textbox's a string.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from django_rtcstream.exceptions import InvalidInput

KINDS = ("slider", "number", "dropdown", "checkbox", "textbox", "any")


@dataclass
class InputSpec:
    """One additional input: its kind, name, default and bounds."""

    kind: str
    name: str
    label: str | None = None
    value: Any = None
    minimum: float | None = None
    maximum: float | None = None
    step: float | None = None
    precision: int | None = None
    choices: list[Any] = field(default_factory=list)
    multiselect: bool = False
    max_length: int = 10_000

    def default(self) -> Any:
        """The value a session starts with."""
        if self.value is not None and not callable(self.value):
            return self.clean(self.value)
        return {
            "slider": self.clean(self.minimum if self.minimum is not None else 0),
            "number": self.minimum if self.minimum is not None else 0,
            "dropdown": ([] if self.multiselect else (self.choices[0] if self.choices else None)),
            "checkbox": False,
            "textbox": "",
        }.get(self.kind)

    def clean(self, value: Any) -> Any:
        """Validate and coerce one value; raises ValueError with a plain message."""
        if self.kind in ("slider", "number"):
            if isinstance(value, bool) or not isinstance(value, (int, float, str)):
                raise ValueError(f"Expected a number, got {type(value).__name__}.")
            try:
                number = float(value)
            except ValueError:
                raise ValueError(f"Expected a number, got {value!r}.") from None
            except OverflowError:  # an int past float's range (JSON carries any int)
                raise ValueError("Expected a number within float's range.") from None
            if not math.isfinite(number):
                raise ValueError("Expected a finite number.")
            if self.minimum is not None and number < self.minimum:
                raise ValueError(f"Ensure this value is greater than or equal to {self.minimum}.")
            if self.maximum is not None and number > self.maximum:
                raise ValueError(f"Ensure this value is less than or equal to {self.maximum}.")
            if self.is_integer():
                if not number.is_integer():
                    raise ValueError("Expected a whole number.")
                return int(number)
            if self.precision is not None and self.precision > 0:
                return round(number, self.precision)
            if self.kind == "number" and isinstance(value, int):
                return value  # gradio's Number keeps what the client sent
            return number
        if self.kind == "checkbox":
            if isinstance(value, bool):
                return value
            if value in ("true", "True", "1", 1):
                return True
            if value in ("false", "False", "0", 0):
                return False
            raise ValueError(f"Expected a boolean, got {value!r}.")
        if self.kind == "textbox":
            if not isinstance(value, str):
                raise ValueError(f"Expected a string, got {type(value).__name__}.")
            if len(value) > self.max_length:
                raise ValueError(f"Ensure this value has at most {self.max_length} characters.")
            return value
        if self.kind == "dropdown":
            allowed = self.choice_values()
            values = value if self.multiselect else [value]
            if self.multiselect and not isinstance(value, list):
                raise ValueError("Expected a list of choices.")
            for item in values:
                if allowed and item not in allowed:
                    raise ValueError(f"{item!r} is not one of the available choices {allowed!r}.")
            return value
        return value

    def is_integer(self) -> bool:
        """Whether values are ints, as Gradio hands them to the handler.

        ``precision=0`` rounds to an int in Gradio; a slider whose minimum and
        step are whole numbers (``gr.Slider(1, 10, step=1)``) can only produce
        whole numbers, which reach the handler as ints.
        """
        if self.kind not in ("slider", "number"):
            return False
        if self.precision == 0:
            return True
        if self.kind != "slider" or self.precision is not None:
            return False
        return all(
            isinstance(x, (int, float)) and float(x).is_integer()
            for x in (self.step, self.minimum if self.minimum is not None else 0)
        )

    def choice_values(self) -> list[Any]:
        """The values (not labels) a dropdown accepts."""
        return [c[1] if isinstance(c, (tuple, list)) and len(c) == 2 else c for c in self.choices]

    def describe(self) -> dict[str, Any]:
        """JSON-ready metadata for clients and the built-in page."""
        data: dict[str, Any] = {"name": self.name, "kind": self.kind, "label": self.label}
        data["default"] = self.default()
        if self.kind in ("slider", "number"):
            data.update(minimum=self.minimum, maximum=self.maximum, step=self.step)
            data["type"] = "integer" if self.is_integer() else "number"
        elif self.kind == "dropdown":
            data.update(choices=self.choice_values(), multiselect=self.multiselect)
            data["type"] = "array" if self.multiselect else "choice"
        else:
            data["type"] = {"checkbox": "boolean", "textbox": "string"}.get(self.kind, "any")
        return data


def _declare(
    kind: str, value: Any, *, label: str | None = None, name: str | None = None, **kwargs: Any
) -> InputSpec:
    """An InputSpec from a gradio look-alike's arguments; gradio's others are ignored."""
    known = {k: v for k, v in kwargs.items() if k in InputSpec.__dataclass_fields__}
    return InputSpec(kind=kind, name=name or "", label=label, value=value, **known)


def Slider(minimum: float = 0, maximum: float = 100, value: Any = None, **kwargs: Any) -> InputSpec:
    """Declare a slider input in ``[minimum, maximum]`` (gradio's arguments).

    Values are ints when ``minimum`` and ``step`` are whole numbers, floats
    otherwise. Without ``step``, the step is gradio's: a power of ten about a
    hundredth of the range (1 for 0-100, 0.01 for 0-1).
    """
    if kwargs.get("step") is None:
        kwargs["step"] = (
            10 ** math.floor(math.log10(maximum - minimum) - 2) if maximum > minimum else 1
        )
    return _declare("slider", value, minimum=minimum, maximum=maximum, **kwargs)


def Number(value: Any = None, **kwargs: Any) -> InputSpec:
    """Declare a number input, optionally bounded; ``precision=0`` means an integer."""
    return _declare("number", value, **kwargs)


def Dropdown(choices: list[Any] | None = None, value: Any = None, **kwargs: Any) -> InputSpec:
    """Declare a dropdown input: one of ``choices`` (values or ``(label, value)`` pairs)."""
    return _declare("dropdown", value, choices=list(choices or []), **kwargs)


def Checkbox(value: bool = False, **kwargs: Any) -> InputSpec:
    """Declare a checkbox input: a bool."""
    return _declare("checkbox", value, **kwargs)


def Textbox(value: str = "", **kwargs: Any) -> InputSpec:
    """Declare a text input: a string."""
    return _declare("textbox", value, **kwargs)


_GRADIO_KINDS = {
    "Slider": "slider",
    "Number": "number",
    "Dropdown": "dropdown",
    "Radio": "dropdown",
    "Checkbox": "checkbox",
    "Textbox": "textbox",
    "Text": "textbox",
    "TextArea": "textbox",
}


def to_spec(declaration: Any, index: int) -> InputSpec:
    """Read one declaration (our InputSpec or a Gradio component) without importing gradio."""
    if isinstance(declaration, InputSpec):
        spec = declaration
    else:
        kind = _GRADIO_KINDS.get(type(declaration).__name__, "any")

        def get(attr: str) -> Any:
            return getattr(declaration, attr, None)

        spec = InputSpec(
            kind=kind,
            name=get("elem_id") or "",
            label=get("label"),
            value=get("value"),
            minimum=get("minimum"),
            maximum=get("maximum"),
            step=get("step"),
            precision=get("precision"),
            choices=list(get("choices") or []),
            multiselect=bool(get("multiselect")),
        )
    if not spec.name:
        spec.name = _slug(spec.label) or f"input_{index}"
    return spec


def _slug(label: str | None) -> str:
    if not label:
        return ""
    out = "".join(c.lower() if c.isalnum() else "_" for c in str(label)).strip("_")
    return out if out and out[0].isalpha() else ""


class InputSchema:
    """The validated form of a stream's ``additional_inputs``."""

    def __init__(self, declarations: list[Any] | None) -> None:
        self.specs = [to_spec(d, i) for i, d in enumerate(declarations or [])]
        names = [s.name for s in self.specs]
        # Two inputs with the same label would collide as named fields.
        for i, spec in enumerate(self.specs):
            if names.count(spec.name) > 1:
                spec.name = f"{spec.name}_{i}"

    def __len__(self) -> int:
        return len(self.specs)

    def defaults(self) -> list[Any]:
        """The values a new session starts with."""
        return [s.default() for s in self.specs]

    def clean_args(self, args: list[Any] | tuple[Any, ...]) -> list[Any]:
        """Validate positional values (``set_input(id, *args)``).

        With declarations, exactly one value per declared input is required.
        Without, any values pass through unchanged.
        """
        if not self.specs:
            return list(args)
        if len(args) != len(self.specs):
            raise InvalidInput(
                {
                    "non_field_errors": [
                        f"Expected {len(self.specs)} values "
                        f"({', '.join(s.name for s in self.specs)}), got {len(args)}."
                    ]
                }
            )
        errors: dict[str, list[str]] = {}
        cleaned = []
        for spec, value in zip(self.specs, args, strict=True):
            try:
                cleaned.append(spec.clean(value))
            except ValueError as exc:
                errors[spec.name] = [str(exc)]
        if errors:
            raise InvalidInput(errors)
        return cleaned

    def clean_changes(self, values: dict[str, Any]) -> dict[str, Any]:
        """Validate named values (an input hook's body) on their own; cleaned, by name.

        They are merged with the session's current values later, where the session
        runs (``merge``), so that concurrent changes to different inputs all apply.
        """
        by_name = {s.name: s for s in self.specs}
        unknown = [k for k in values if k not in by_name]
        if unknown:
            raise InvalidInput({k: ["Unknown input."] for k in unknown})
        errors: dict[str, list[str]] = {}
        cleaned: dict[str, Any] = {}
        for name, value in values.items():
            try:
                cleaned[name] = by_name[name].clean(value)
            except ValueError as exc:
                errors[name] = [str(exc)]
        if errors:
            raise InvalidInput(errors)
        return cleaned

    def merge(self, current: list[Any], changes: dict[str, Any]) -> list[Any]:
        """``current`` (the defaults, if it does not fit) with cleaned named ``changes`` set."""
        merged = list(current) if len(current) == len(self.specs) else self.defaults()
        index = {s.name: i for i, s in enumerate(self.specs)}
        for name, value in changes.items():
            merged[index[name]] = value
        return merged

    def clean_named(self, values: dict[str, Any], current: list[Any]) -> list[Any]:
        """Validate named values, keeping ``current`` for missing ones."""
        return self.merge(current, self.clean_changes(values))

    def describe(self) -> list[dict[str, Any]]:
        return [s.describe() for s in self.specs]
