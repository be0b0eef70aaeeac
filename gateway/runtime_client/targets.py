"""A routable model version: what the runtime client needs to address and identify it."""

from __future__ import annotations

from dataclasses import dataclass, field

from runtimes.manifest import Manifest


@dataclass(frozen=True, slots=True)
class ModelTarget:
    """One model version, the endpoints that serve it and its manifest."""

    model: str
    version: str
    endpoints: tuple[str, ...]
    manifest: Manifest
    feature_schema_version: str = field(init=False, compare=False)
    served_name: str = field(init=False, compare=False)
    """The OIP v2 model name the runtimes serve this version under."""

    def __post_init__(self) -> None:
        # Derived once per config load: the schema hash is dear, and both are read per row.
        object.__setattr__(self, "feature_schema_version", self.manifest.feature_schema_version)
        object.__setattr__(self, "served_name", self.manifest.served_name)
