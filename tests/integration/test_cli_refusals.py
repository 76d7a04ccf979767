"""A broker that refuses the credentials is reported as a refusal, in one line, at once."""

from __future__ import annotations

import subprocess
import sys

import pytest

from .procs import settings_env
from .secure import SecureKafka

pytestmark = pytest.mark.faults  # the secured cluster of the security tests


@pytest.mark.parametrize("args", [["status"], ["topics", "list"], ["tail", "features"]])
def test_a_wrong_password_is_a_refusal_not_an_unreachable_broker(secure_kafka: SecureKafka,
                                                                 args: list[str]) -> None:
    wrong = secure_kafka.settings("operator", secret="not-the-password")
    done = subprocess.run([sys.executable, "-c", "from riverops.cli.main import main; main()", *args],
                          env=settings_env(wrong), capture_output=True, text=True, timeout=120)
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 1, (done.stdout, done.stderr)
    assert len(lines) == 1 and lines[0].startswith("Error: the broker refused the connection to "), lines
    assert "SASL" in lines[0] or "uthentication" in lines[0], lines
    assert done.stdout == ""


def test_the_right_password_gets_through(secure_kafka: SecureKafka) -> None:
    operator = secure_kafka.settings("operator")
    done = subprocess.run([sys.executable, "-c", "from riverops.cli.main import main; main()",
                           "topics", "list"], env=settings_env(operator), capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
