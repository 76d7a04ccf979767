"""Signed artifacts: round trips inline and through the store, and every refusal."""

from __future__ import annotations

import os
import pickle
import random
from pathlib import Path
from typing import Any

import pytest
from river import datasets

from riverops.models.artifacts import ArtifactStore, load, pack, safe_loads, sha256_hex, sign
from riverops.models.batch import learn_batch
from riverops.models.specs import ZOO, drop_missing, get_spec
from riverops.schemas.errors import ArtifactError, ConfigError, SignatureError
from riverops.schemas.events import Artifact

KEY = b"test-signing-key"


@pytest.fixture
def store(tmp_path: Path) -> ArtifactStore:
    return ArtifactStore(tmp_path / "artifact store")  # a space: URIs are percent-encoded


def _rows(n: int, *, regression: bool = False) -> tuple[list[dict[str, Any]], list[Any]]:
    """Phishing with a string, a boolean and a sometimes-missing feature added."""
    rng = random.Random(1)
    rows, labels = [], []
    for x, y in datasets.Phishing().take(n):
        rows.append({**x, "channel": rng.choice(["web", "app"]), "vip": rng.random() < 0.3,
                     "age_of_domain": None if rng.random() < 0.2 else x["age_of_domain"]})
        labels.append(float(y) * 10 + rng.random() if regression else bool(y))
    return rows, labels


def _trained(name: str, n: int = 1000) -> Any:
    spec = get_spec(name)
    rows, labels = _rows(300 if name == "arf" else n, regression=spec.task == "regression")
    model = spec.build(seed=1)
    learn_batch(model, rows, labels)
    return model


def _signed(data: bytes, *, key: bytes = KEY) -> Artifact:
    digest = sha256_hex(data)
    return Artifact(inline=data, sha256=digest, signature=sign(digest, key=key), size=len(data))


def _predictions(model: Any, *, regression: bool = False) -> list[Any]:
    rows = [drop_missing(x) for x in _rows(30)[0]]
    if regression:
        return [model.predict_one(x) for x in rows]
    return [model.predict_proba_one(x) for x in rows]


# --- round trips ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(ZOO))
def test_every_trained_zoo_model_loads_through_the_allowlist(name: str, store: ArtifactStore) -> None:
    model = _trained(name)
    artifact = pack(model, key=KEY, store=store)
    loaded = load(artifact, key=KEY, store=store)
    assert loaded is not model
    regression = ZOO[name].task == "regression"
    assert _predictions(loaded, regression=regression) == _predictions(model, regression=regression)


def test_small_artifacts_travel_inline(store: ArtifactStore) -> None:
    model = _trained("logreg")
    artifact = pack(model, key=KEY, store=store)
    assert artifact.uri is None and artifact.inline is not None
    assert artifact.size == len(artifact.inline)
    assert artifact.sha256 == sha256_hex(artifact.inline)
    assert pickle.loads(artifact.inline).__class__ is model.__class__
    assert not store.root.exists()  # nothing written for an inline artifact


def test_large_artifacts_go_to_the_store(store: ArtifactStore) -> None:
    model = _trained("hat")
    artifact = pack(model, key=KEY, store=store, inline_limit=10_000)
    assert artifact.inline is None and artifact.uri is not None
    assert artifact.size > 10_000
    path = store.root / f"{artifact.sha256}.pkl"
    assert artifact.uri == path.resolve().as_uri()
    assert path.read_bytes() == store.get(artifact.uri)
    assert _predictions(load(artifact, key=KEY, store=store)) == _predictions(model)


def test_the_store_is_content_addressed_and_leaves_no_temporary_files(store: ArtifactStore) -> None:
    first, second = store.put(b"same bytes"), store.put(b"same bytes")
    assert first == second and "%20" in first
    assert [p.name for p in store.root.iterdir()] == [f"{sha256_hex(b'same bytes')}.pkl"]
    assert store.get(first) == b"same bytes"


def test_the_store_rewrites_a_truncated_file(store: ArtifactStore) -> None:
    uri = store.put(b"whole artifact")
    store.path_of(sha256_hex(b"whole artifact")).write_bytes(b"whole")
    assert store.put(b"whole artifact") == uri
    assert store.get(uri) == b"whole artifact"


# --- refusals: signature and integrity ----------------------------------------------------------


@pytest.mark.parametrize("signature", ["", None])
def test_unsigned_artifacts_are_refused(signature: str | None, store: ArtifactStore) -> None:
    good = pack(_trained("logreg", 50), key=KEY, store=store)
    unsigned = Artifact.model_construct(**{**good.model_dump(), "signature": signature})
    with pytest.raises(SignatureError, match="unsigned"):
        load(unsigned, key=KEY, store=store)


def test_a_signature_made_with_another_key_is_refused(store: ArtifactStore) -> None:
    artifact = pack(_trained("logreg", 50), key=b"someone else", store=store)
    with pytest.raises(SignatureError, match="not signed with this key"):
        load(artifact, key=KEY, store=store)


def test_a_malformed_signature_is_refused(store: ArtifactStore) -> None:
    good = pack(_trained("logreg", 50), key=KEY, store=store)
    bad = Artifact.model_construct(**{**good.model_dump(), "signature": "é" * 64})
    with pytest.raises(SignatureError, match="not 64 hex digits"):
        load(bad, key=KEY, store=store)


def test_tampered_inline_bytes_are_refused(store: ArtifactStore) -> None:
    good = pack(_trained("logreg", 50), key=KEY, store=store)
    assert good.inline is not None
    tampered = good.inline.replace(b"LogisticRegression", b"LogisticRegressioN")
    assert tampered != good.inline
    with pytest.raises(SignatureError, match="do not hash to the signed sha256"):
        load(good.model_copy(update={"inline": tampered}), key=KEY, store=store)
    # re-hashing the tampered bytes does not help: the signature covers the sha256
    rehashed = good.model_copy(update={"inline": tampered, "sha256": sha256_hex(tampered)})
    with pytest.raises(SignatureError, match="not signed with this key"):
        load(rehashed, key=KEY, store=store)


def test_a_tampered_stored_file_is_refused(store: ArtifactStore) -> None:
    artifact = pack(_trained("hat", 300), key=KEY, store=store, inline_limit=0)
    assert artifact.uri is not None
    path = store.root / f"{artifact.sha256}.pkl"
    path.write_bytes(path.read_bytes()[:-1] + b"!")
    with pytest.raises(SignatureError, match="tampered with or corrupted"):
        load(artifact, key=KEY, store=store)


def test_the_signature_is_checked_before_the_store_is_read(store: ArtifactStore) -> None:
    artifact = Artifact(uri="file:///etc/passwd", sha256="0" * 64, signature="1" * 64, size=1)
    with pytest.raises(SignatureError):
        load(artifact, key=KEY, store=store)


def test_an_empty_key_signs_and_verifies_nothing(store: ArtifactStore) -> None:
    with pytest.raises(ConfigError, match="empty signing key"):
        pack(_trained("logreg", 50), key=b"", store=store)
    artifact = pack(_trained("logreg", 50), key=KEY, store=store)
    with pytest.raises(ConfigError, match="empty signing key"):
        load(artifact, key=b"", store=store)


def test_an_artifact_needs_exactly_one_location(store: ArtifactStore) -> None:
    good = pack(_trained("logreg", 50), key=KEY, store=store)
    both = good.model_copy(update={"uri": store.put(b"x")})
    neither = good.model_copy(update={"inline": None})
    for artifact in (both, neither):
        with pytest.raises(ArtifactError, match="exactly one of inline bytes and a uri"):
            load(artifact, key=KEY, store=store)


# --- refusals: the store ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "uri",
    ["file:///etc/passwd", "http://example.com/model.pkl", "file://otherhost/tmp/x.pkl", "s3://b/k"],
)
def test_the_store_refuses_uris_it_does_not_own(uri: str, store: ArtifactStore) -> None:
    with pytest.raises(ArtifactError, match="not a local file:// uri|outside the artifact store"):
        store.get(uri)


def test_the_store_refuses_escapes_through_dots_and_symlinks(tmp_path: Path, store: ArtifactStore) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("not a model")
    store.put(b"x")
    inside = store.root.resolve()
    with pytest.raises(ArtifactError, match="outside the artifact store"):
        store.get((inside / ".." / "secret.txt").as_uri())
    (inside / "link.pkl").symlink_to(secret)
    with pytest.raises(ArtifactError, match="outside the artifact store"):
        store.get((inside / "link.pkl").as_uri())


def test_a_signed_uri_outside_the_store_is_refused(store: ArtifactStore, tmp_path: Path) -> None:
    outside = tmp_path / "elsewhere.pkl"
    outside.write_bytes(pickle.dumps(1))
    data = outside.read_bytes()
    artifact = _signed(data).model_copy(update={"inline": None, "uri": outside.as_uri()})
    with pytest.raises(ArtifactError, match="outside the artifact store"):
        load(artifact, key=KEY, store=store)


def test_a_missing_stored_file_is_an_artifact_error(store: ArtifactStore) -> None:
    uri = (store.root / f"{'a' * 64}.pkl").resolve().as_uri()
    with pytest.raises(ArtifactError, match="cannot read artifact"):
        store.get(uri)


# --- refusals: what the pickle names --------------------------------------------------------------


class _RunsACommand:
    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.system, (self.command,))


def _global_call(module: str, name: str, argument: str) -> bytes:
    """A protocol-4 pickle that calls ``module.name(argument)``."""

    def text(value: str) -> bytes:
        raw = value.encode()
        return b"\x8c" + bytes([len(raw)]) + raw  # SHORT_BINUNICODE

    return b"\x80\x04" + text(module) + text(name) + b"\x93" + text(argument) + b"\x85R."


def test_a_signed_malicious_pickle_never_runs(tmp_path: Path, store: ArtifactStore) -> None:
    marker = tmp_path / "pwned"
    artifact = _signed(pickle.dumps(_RunsACommand(f"touch {marker}"), protocol=5))
    with pytest.raises(ArtifactError, match=r"(posix|os)\.system is not in the artifact allowlist"):
        load(artifact, key=KEY, store=store)
    assert not marker.exists()


def test_a_malicious_object_hidden_in_a_real_model_never_runs(tmp_path: Path, store: ArtifactStore) -> None:
    marker = tmp_path / "pwned"
    model = _trained("logreg", 50)
    model.payload = _RunsACommand(f"touch {marker}")
    with pytest.raises(ArtifactError, match="allowlist"):
        load(pack(model, key=KEY, store=store), key=KEY, store=store)
    assert not marker.exists()


@pytest.mark.parametrize(
    ("module", "name"),
    [
        ("os", "system"),
        ("builtins", "eval"),
        ("builtins", "exec"),
        ("builtins", "getattr"),
        ("subprocess", "getoutput"),
        ("river.preprocessing.scale", "np.load"),  # an allowed module's import
        ("river.compose.pipeline", "__builtins__.exec"),
        ("riverops.models.artifacts", "ArtifactStore"),  # writes files: not allowed
        ("river.datasets.base", "RemoteDataset"),  # downloads: not allowed
        ("numpy.testing", "run_module_suite"),
    ],
)
def test_globals_outside_the_allowlist_are_refused(module: str, name: str, tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    with pytest.raises(ArtifactError, match="not in the artifact allowlist"):
        safe_loads(_global_call(module, name, f"touch {marker}"))
    assert not marker.exists()


def test_a_corrupt_pickle_is_an_artifact_error(store: ArtifactStore) -> None:
    with pytest.raises(ArtifactError, match="cannot unpickle"):
        load(_signed(b"\x80\x05not a pickle"), key=KEY, store=store)
