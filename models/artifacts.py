"""Signed model artifacts: pickle, hash, sign, store, and a loader that trusts nothing.

An artifact is a model pickled with protocol 5, the sha256 hex of those bytes, and a
signature: the hex HMAC-SHA256 of the sha256 hex string under the signing key
(``Settings.signing_key_bytes()``). Small pickles travel inline in the registry record;
larger ones (the broker takes 1 MB messages) go to an :class:`ArtifactStore`, named by
their sha256, and the record carries a ``file://`` URI.

:func:`load` checks, in this order and before reading anything from the store: that the
artifact is signed, that the signature is ours (``hmac.compare_digest``), that the bytes
hash to the signed sha256, and only then unpickles them, through an unpickler that
resolves only the globals a trained zoo model needs (:data:`ALLOWED_GLOBALS`,
:data:`ALLOWED_MODULES`). A pickle naming anything else, such as ``os.system``, is refused
before it can run, even when it carries a valid signature.

Examples
--------
>>> import tempfile
>>> from pathlib import Path
>>> from riverops.models.specs import get_spec
>>> store = ArtifactStore(Path(tempfile.mkdtemp()))
>>> model = get_spec("logreg").build()
>>> artifact = pack(model, key=b"secret", store=store)
>>> artifact.inline is not None, artifact.uri
(True, None)
>>> load(artifact, key=b"secret", store=store).predict_proba_one({"x": 1.0})
{False: 0.5, True: 0.5}
>>> load(artifact, key=b"other key", store=store)
Traceback (most recent call last):
...
riverops.schemas.errors.SignatureError: artifact signature does not match: it was not signed with this key, or its sha256 was altered
"""

from __future__ import annotations

import hashlib
import hmac
import inspect
import io
import os
import pickle
import re
import tempfile
from pathlib import Path
from typing import Any
from urllib.parse import urlparse
from urllib.request import url2pathname

from riverops.schemas.errors import ArtifactError, ConfigError, SignatureError
from riverops.schemas.events import Artifact

__all__ = [
    "PICKLE_PROTOCOL",
    "INLINE_LIMIT",
    "ALLOWED_MODULES",
    "ALLOWED_GLOBALS",
    "sha256_hex",
    "sign",
    "ArtifactStore",
    "safe_loads",
    "pack",
    "load",
]

PICKLE_PROTOCOL = 5
INLINE_LIMIT = 900_000
"""Largest pickle carried inline: the broker's default message limit is 1,000,000 bytes."""

ALLOWED_MODULES: tuple[str, ...] = (
    "river._river_rust",
    "river.compose",
    "river.drift",
    "river.forest",
    "river.linear_model",
    "river.metrics",
    "river.optim",
    "river.proba",
    "river.stats",
    "river.tree",
    "riverops.models.specs",
)
"""Modules (and their submodules) whose classes and functions an artifact may name.

Exactly the River subpackages the trained zoo models are made of (none of them execs,
opens files or starts processes), not ``river`` as a whole: ``river.datasets`` downloads
and unpacks archives. ``riverops.models.specs`` holds :class:`riverops.models.specs.FeatureEncoder`; the rest
of ``models`` (the artifact store writes files) is not allowed.
"""

ALLOWED_GLOBALS: frozenset[tuple[str, str]] = frozenset(
    {
        # plain types, named in a pickle as the factory of a defaultdict
        *(("builtins", name) for name in ("bool", "dict", "float", "int", "list", "set", "str")),
        ("collections", "Counter"),
        ("collections", "OrderedDict"),
        ("collections", "defaultdict"),
        ("functools", "partial"),
        ("random", "Random"),
        ("statistics", "NormalDist"),
        ("numpy", "dtype"),
        ("numpy._core.multiarray", "scalar"),
    }
)
"""Single globals an artifact may name outside :data:`ALLOWED_MODULES`.

Measured: a pickle of each zoo spec trained on numeric, boolean, string and missing
features names ``builtins`` dict, float and int, the three ``collections`` types,
``functools.partial`` (no added power: a pickle can already call an allowed callable),
``random.Random`` (the forest's RNG), ``statistics.NormalDist`` (Gaussian splitters) and
the two numpy names of a numpy scalar; list, set, bool and str are as harmless.
"""


_HEX64 = re.compile(r"[0-9a-f]{64}")


def sha256_hex(data: bytes) -> str:
    """The sha256 of ``data`` as 64 lowercase hex digits."""
    return hashlib.sha256(data).hexdigest()


def sign(sha256: str, *, key: bytes) -> str:
    """The signature of an artifact whose bytes hash to ``sha256``: hex HMAC-SHA256.

    >>> sign("0" * 64, key=b"k") == hmac.new(b"k", b"0" * 64, "sha256").hexdigest()
    True
    """
    if not key:
        raise ConfigError("an empty signing key cannot sign or verify model artifacts")
    return hmac.new(key, sha256.encode("ascii"), hashlib.sha256).hexdigest()


class ArtifactStore:
    """A directory of pickles named by their sha256; written atomically, read by URI.

    ``get`` refuses URIs that are not ``file://`` or that point outside ``root`` (after
    resolving ``..`` and symbolic links): a registry record must not make a scorer read
    arbitrary files.
    """

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def path_of(self, sha256: str) -> Path:
        """Where the pickle with this sha256 lives."""
        return self.root / f"{sha256}.pkl"

    def put(self, data: bytes) -> str:
        """Store ``data`` (once: same bytes, same file) and return its ``file://`` URI."""
        path = self.path_of(sha256_hex(data))
        # same name, same size: already stored (load re-checks the hash of what it reads)
        if not (path.exists() and path.stat().st_size == len(data)):
            try:
                self.root.mkdir(parents=True, exist_ok=True)
                fd, tmp = tempfile.mkstemp(dir=self.root, prefix=".tmp-", suffix=".pkl")
                try:
                    with os.fdopen(fd, "wb") as handle:
                        handle.write(data)
                        handle.flush()
                        os.fsync(handle.fileno())
                    os.chmod(tmp, 0o644)  # mkstemp makes 0600; scorers may run as other users
                    os.replace(tmp, path)  # readers see the whole file or none
                except BaseException:
                    Path(tmp).unlink(missing_ok=True)
                    raise
            except OSError as exc:
                raise ArtifactError(f"cannot write artifact to {self.root}: {exc}") from exc
        return path.resolve().as_uri()

    def get(self, uri: str) -> bytes:
        """The bytes behind a URI that ``put`` returned."""
        parsed = urlparse(uri)
        if parsed.scheme != "file" or parsed.netloc not in ("", "localhost"):
            raise ArtifactError(f"artifact uri {uri!r} is not a local file:// uri")
        path = Path(url2pathname(parsed.path)).resolve()
        root = self.root.resolve()
        if not path.is_relative_to(root):
            raise ArtifactError(f"artifact uri {uri!r} is outside the artifact store {root}")
        try:
            return path.read_bytes()
        except OSError as exc:
            raise ArtifactError(f"cannot read artifact {uri!r}: {exc}") from exc


def _module_allowed(module: str) -> bool:
    return any(module == m or module.startswith(m + ".") for m in ALLOWED_MODULES)


class _Refused(pickle.UnpicklingError):
    """A global the allowlist does not cover."""


RENAMED_MODULES: dict[str, str] = {"models.specs": "riverops.models.specs"}
"""Modules named by artifacts pickled before riverops had its namespace (0.1), and their
names now: a registry written then still loads."""


class _RestrictedUnpickler(pickle.Unpickler):
    """Resolves only allowed globals; everything else is refused before it is imported."""

    def find_class(self, module: str, name: str) -> Any:
        module = RENAMED_MODULES.get(module, module)
        if (module, name) in ALLOWED_GLOBALS:
            return super().find_class(module, name)
        if _module_allowed(module) and not any(p.startswith("__") for p in name.split(".")):
            found = super().find_class(module, name)
            # a dotted name can reach what a module imported (``np.load``): check the target
            if (inspect.isclass(found) or inspect.isfunction(found)) and _module_allowed(
                getattr(found, "__module__", None) or ""
            ):
                return found
        raise _Refused(f"global {module}.{name} is not in the artifact allowlist")


def safe_loads(data: bytes) -> Any:
    """Unpickle ``data`` through the allowlist; an :class:`ArtifactError` on any refusal."""
    try:
        return _RestrictedUnpickler(io.BytesIO(data)).load()
    except _Refused as exc:
        raise ArtifactError(f"refused to load the model: {exc}") from exc
    except Exception as exc:  # a corrupt pickle can raise almost anything
        raise ArtifactError(f"cannot unpickle the model: {type(exc).__name__}: {exc}") from exc


def pack(
    model: Any, *, key: bytes, store: ArtifactStore, inline_limit: int = INLINE_LIMIT
) -> Artifact:
    """Pickle, hash and sign ``model``: inline up to ``inline_limit`` bytes, else stored."""
    try:
        data = pickle.dumps(model, protocol=PICKLE_PROTOCOL)
    except Exception as exc:
        raise ArtifactError(f"cannot pickle {type(model).__name__}: {exc}") from exc
    digest = sha256_hex(data)
    signature = sign(digest, key=key)
    if len(data) <= inline_limit:
        return Artifact(inline=data, sha256=digest, signature=signature, size=len(data))
    uri = store.put(data)
    return Artifact(uri=uri, sha256=digest, signature=signature, size=len(data))


def load(artifact: Artifact, *, key: bytes, store: ArtifactStore) -> Any:
    """The model of a signed artifact, after checking signature, then hash, then globals."""
    signature, digest = artifact.signature, artifact.sha256
    if not signature:
        raise SignatureError("artifact is unsigned: refusing to load it")
    # records built without validation (model_construct) may carry anything: check the form
    if not (isinstance(signature, str) and _HEX64.fullmatch(signature)):
        raise SignatureError("artifact signature is not 64 hex digits: refusing to load it")
    if not (isinstance(digest, str) and _HEX64.fullmatch(digest)):
        raise SignatureError("artifact sha256 is not 64 hex digits: refusing to load it")
    if not hmac.compare_digest(sign(digest, key=key), signature):
        raise SignatureError(
            "artifact signature does not match: it was not signed with this key, "
            "or its sha256 was altered"
        )
    if artifact.inline is not None and artifact.uri is None:
        data = artifact.inline
    elif artifact.uri is not None and artifact.inline is None:
        data = store.get(artifact.uri)
    else:
        raise ArtifactError("artifact must carry exactly one of inline bytes and a uri")
    if not hmac.compare_digest(sha256_hex(data), digest):
        raise SignatureError(
            "artifact bytes do not hash to the signed sha256: tampered with or corrupted"
        )
    if len(data) != artifact.size:
        raise ArtifactError(f"artifact is {len(data)} bytes but its record says {artifact.size}")
    return safe_loads(data)
