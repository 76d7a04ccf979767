"""The built wheel installs under one ``riverops`` namespace, beside a user's own ``models``."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_wheel_installs_beside_a_package_named_models(tmp_path: Path) -> None:
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(tmp_path / "dist"), str(ROOT)],
        capture_output=True, text=True, timeout=600,
    )
    assert built.returncode == 0, built.stderr[-2000:]
    assert "Warning" not in built.stderr, built.stderr  # setuptools says nothing at install
    wheel = next((tmp_path / "dist").glob("riverops-*.whl"))
    tops = {name.split("/")[0] for name in zipfile.ZipFile(wheel).namelist()}
    assert {t for t in tops if not t.endswith(".dist-info")} == {"riverops"}
    assert any(n.endswith("schemas/avro/FeatureEvent.avsc") for n in zipfile.ZipFile(wheel).namelist())

    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--quiet", "--target", str(site),
                    str(wheel)], check=True, timeout=300)
    theirs = tmp_path / "theirs" / "models"
    theirs.mkdir(parents=True)
    (theirs / "__init__.py").write_text("OWNER = 'the user'\n")
    code = (
        "import models, riverops, riverops.models.registry, riverops.schemas.contracts as c; "
        "print(models.OWNER); print(riverops.__file__); print(len(c.SchemaStore.bundled().names))"
    )
    env = {**os.environ, "PYTHONPATH": f"{site}{os.pathsep}{theirs.parent}"}
    shown = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                           cwd=tmp_path, timeout=120)
    assert shown.returncode == 0, shown.stderr[-2000:]
    owner, location, schemas = shown.stdout.split("\n")[:3]
    assert owner == "the user"
    assert location.startswith(str(site)), location  # the installed copy, not the source tree
    assert int(schemas) >= 8

    version = subprocess.run([sys.executable, "-m", "riverops", "--version"], env=env,
                             capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert version.returncode == 0, version.stderr[-2000:]
    assert version.stdout.startswith("riverops, version "), version.stdout
