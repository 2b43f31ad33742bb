"""The models a server holds, looked up by name."""

from __future__ import annotations

from service.errors import NotFound
from service.models.model import Model

# An empty model name picks the only model, or else the one with one of these names.
DEFAULT_NAMES = ("default", "demo")


class ModelRegistry:
    """Name → Model, with the default-model rule for requests that leave the name empty."""

    def __init__(self, models: dict[str, Model]) -> None:
        if not models:
            raise ValueError("models: a server needs at least one model")
        self._models = dict(sorted(models.items()))

    def __iter__(self):
        return iter(self._models.values())

    def __len__(self) -> int:
        return len(self._models)

    def get(self, name: str) -> Model:
        """The model called `name` (empty = the default model); NOT_FOUND otherwise."""
        if not name:
            if len(self._models) == 1:
                return next(iter(self._models.values()))
            for candidate in DEFAULT_NAMES:
                if candidate in self._models:
                    return self._models[candidate]
            raise NotFound(
                f"model_name: empty, and no default among {sorted(self._models)}; name one "
                f"(or call one of them {' or '.join(DEFAULT_NAMES)!s})"
            )
        try:
            return self._models[name]
        except KeyError:
            shown = name if len(name) <= 64 else f"{name[:64]}… ({len(name)} characters)"
            raise NotFound(
                f"model_name: no model {shown!r}; the server holds {sorted(self._models)}"
            ) from None
