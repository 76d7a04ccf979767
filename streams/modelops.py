"""Model operations shared by the CLI, the learner and the retrainer: build, sign, register."""

from __future__ import annotations

import platform
import subprocess
from collections.abc import Mapping
from importlib import metadata
from pathlib import Path
from typing import Any

from riverops.models.artifacts import ArtifactStore, load, pack
from riverops.models.batch import learn_in_order
from riverops.models.registry import Registry
from riverops.models.specs import get_spec
from riverops.schemas.errors import ConfigError, RegistryError
from riverops.schemas.events import Lineage, ModelVersion, OffsetRange, Stage
from riverops.settings import Settings

__all__ = ["library_versions", "code_version", "register_trained", "build_and_register", "model_loader"]


def library_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for package in ("river", "scikit-learn", "numpy", "pandas", "riverops"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            continue
    return versions


def code_version() -> str:
    """The git commit of the running code when there is one, else the package version."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=2,
            cwd=Path(__file__).resolve().parent,
        )
        if out.returncode == 0 and out.stdout.strip():
            return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        pass
    return f"riverops-{metadata.version('riverops')}"


def register_trained(
    settings: Settings,
    registry: Registry,
    model: str,
    estimator: Any,
    *,
    spec_name: str,
    stage: Stage,
    by: str,
    reason: str,
    seed: int | None = None,
    share: float | None = None,
    params: dict[str, Any] | None = None,
    metrics: dict[str, float] | None = None,
    samples: int = 0,
    training_data: list[OffsetRange] | None = None,
    parent: int | None = None,
) -> list[ModelVersion]:
    """Sign and store ``estimator`` and return the registry records that add it."""
    spec = get_spec(spec_name)
    artifact = pack(
        estimator, key=settings.signing_key_bytes(), store=ArtifactStore(settings.artifact_dir)
    )
    champion = registry.champion(model)
    lineage = Lineage(
        parent=parent if parent is not None else (champion.version if champion else None),
        training_data=training_data or [],
        samples=samples,
        library_versions=library_versions(),
        code_version=code_version(),
    )
    return registry.new_version(
        model, spec=spec.name, task=spec.task, artifact=artifact, changed_by=by, reason=reason,
        stage=stage, params=params if params is not None else dict(spec.params), seed=seed,
        share=share, metrics=metrics, lineage=lineage,
    )


def build_and_register(
    settings: Settings,
    registry: Registry,
    model: str,
    *,
    spec_name: str,
    stage: str,
    by: str,
    reason: str,
    seed: int = 42,
    share: float | None = None,
    train_file: Path | None = None,
    label_column: str = "label",
    params: Mapping[str, Any] | None = None,
) -> list[ModelVersion]:
    """Build a fresh model from a spec with ``params`` over its defaults, optionally train
    it on a file, and register it (the record keeps every param, defaults included)."""
    from riverops.cli.replay import read_table

    spec = get_spec(spec_name)
    chosen = {**spec.params, **spec.check_params(params or {})}
    estimator = spec.build(seed=seed, **chosen)
    samples = 0
    if train_file is not None:
        frame = read_table(train_file)
        if label_column not in frame.columns:
            raise ConfigError(f"{train_file} has no label column {label_column!r}")
        labels = frame.pop(label_column).tolist()
        drop = [c for c in ("event_id", "model", "entity_id", "event_time") if c in frame.columns]
        rows = frame.drop(columns=drop).to_dict(orient="records")
        learn_in_order(estimator, rows, labels)
        samples = len(rows)
    return register_trained(
        settings, registry, model, estimator, spec_name=spec_name, stage=stage,  # type: ignore[arg-type]
        by=by, reason=reason, seed=seed, share=share, samples=samples, params=chosen,
    )


def model_loader(settings: Settings) -> Any:
    """A function loading a registry record's model, verifying its signature first."""
    key = settings.signing_key_bytes()
    store = ArtifactStore(settings.artifact_dir)

    def load_version(record: ModelVersion) -> Any:
        if record.artifact.inline is None and record.artifact.uri is None:
            raise RegistryError(f"{record.model}:{record.version}: its artifact bytes were released "
                                "by this process's registry (RIVEROPS_REGISTRY_KEEP_ARTIFACTS)")
        return load(record.artifact, key=key, store=store)

    return load_version
