"""Route patterns: ``"user.{id}"`` matches ``"user.42"`` with ``id="42"``.

A ``{name}`` variable matches one segment (no ``.`` or ``/``); ``{name:regex}`` uses the given regular
expression instead. Everything else matches literally.
"""

from __future__ import annotations

import re

_VARIABLE = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)(?::([^{}]*(?:\{[^{}]*\}[^{}]*)*))?\}")
_SEGMENT = r"[^./]+"


class RoutePattern:
    """A compiled route pattern; :attr:`variables` lists the variable names in order."""

    __slots__ = ("_regex", "pattern", "variables")

    def __init__(self, pattern: str) -> None:
        if not isinstance(pattern, str) or not pattern:
            raise ValueError("a route pattern must be a non-empty str")
        self.pattern = pattern
        names: list[str] = []
        parts: list[str] = []
        position = 0
        for match in _VARIABLE.finditer(pattern):
            parts.append(re.escape(pattern[position : match.start()]))
            name, regex = match.group(1), match.group(2)
            if name in names:
                raise ValueError(f"route pattern {pattern!r} uses the variable {name!r} twice")
            if regex is not None:
                try:
                    if re.compile(regex).groups:
                        raise ValueError(f"route pattern {pattern!r}: use (?:...) instead of groups")
                except re.error as exc:
                    raise ValueError(f"route pattern {pattern!r}: bad regular expression: {exc}") from None
            names.append(name)
            parts.append(f"(?P<{name}>{regex if regex is not None else _SEGMENT})")
            position = match.end()
        rest = pattern[position:]
        if "{" in rest or "}" in rest:
            raise ValueError(f"route pattern {pattern!r} has an unbalanced or invalid {{variable}}")
        parts.append(re.escape(rest))
        self.variables: tuple[str, ...] = tuple(names)
        self._regex = re.compile("".join(parts))

    @property
    def is_literal(self) -> bool:
        """True when the pattern has no variables."""
        return not self.variables

    def match(self, route: str) -> dict[str, str] | None:
        """The variables if ``route`` matches the whole pattern, else ``None``."""
        match = self._regex.fullmatch(route)
        return None if match is None else match.groupdict()

    def __repr__(self) -> str:
        return f"RoutePattern({self.pattern!r})"


__all__ = ["RoutePattern"]
