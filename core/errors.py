"""Errors a user of the CLI or the service can act on: each says what went wrong and where."""

from __future__ import annotations

from configs.settings import ConfigError  # raised by configs, which cannot import persona


class PersonaError(Exception):
    """Base of all expected failures. `message` names the file/source, row, column or customer."""

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message}\nhint: {self.hint}"


class SourceError(PersonaError):
    """A source cannot be read: missing file, missing required column, wrong type."""


class ValidationFailed(PersonaError):
    """Data failed validation in a way that stops the run."""


class FeatureStoreError(PersonaError):
    """The Feast feature store is unavailable or not set up."""


class RegistryError(PersonaError):
    """The MLflow registry has no usable model (e.g. no champion yet)."""


class CatalogError(PersonaError):
    """The tag catalog is invalid."""


class CrmError(PersonaError):
    """The CRM cannot be reached or refused a write."""


class StageSkipped(PersonaError):
    """A stage cannot run because an optional source is absent; the run goes on without it."""


USER_ERRORS: tuple[type[BaseException], ...] = (PersonaError, ConfigError)
