"""Config dataclasses from YAML mappings: an unknown key or a wrong type is an error that
names `section.key`. Shared by the run config (msp.config) and every model's Config
(msp.models), so neither imports the other for it.
"""

import dataclasses


def dataclass_from_dict(cls, section: str, values: dict | None):
    """Build a config dataclass; an unknown key or a wrong type is an error naming section.key."""
    values = dict(values or {})
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise ValueError(f"unknown key(s) {unknown} in section '{section}': valid keys are {sorted(names)}")
    for f in dataclasses.fields(cls):
        if f.name in values:
            values[f.name] = check_type(f"{section}.{f.name}", values[f.name], f.type)
    return cls(**values)


def check_type(key: str, value, annotation):
    """YAML scalars -> the field's type; a wrong type names the key (e.g. train.iterations: 'many')."""
    expected = {"int": int, "float": float, "str": str, "bool": bool, "dict": dict}.get(
        annotation if isinstance(annotation, str) else getattr(annotation, "__name__", ""))
    if expected is None:
        return value
    if expected is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if expected is float and isinstance(value, str):  # YAML reads 3e-4 (no dot) as a string
        try:
            return float(value)
        except ValueError:
            pass
    if not isinstance(value, expected) or (expected is int and isinstance(value, bool)):
        raise ValueError(f"{key} must be of type {expected.__name__}, got {value!r} ({type(value).__name__})")
    return value
