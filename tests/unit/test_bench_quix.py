"""The bench's Quix Streams baseline, without a broker: what its venv holds, and how the
report puts riverops' scorer against it."""

from __future__ import annotations

from importlib import metadata

from bench import report
from bench.quix_baseline import QUIX_VERSION, requirements


def test_quix_venv_pins_this_interpreters_river() -> None:
    # the same River model on both sides: the pickle must load into the same version
    assert f"river=={metadata.version('river')}" in requirements()
    assert f"quixstreams=={QUIX_VERSION}" in requirements()


def test_report_ratios_are_riverops_over_quix() -> None:
    results = {
        "machine": {"when": "now", "cpu_count": 2, "cpu_model": "x", "python": "CPython",
                    "broker": "apache-kafka 4.1.1", "load_average_at_start": [0, 0, 0],
                    "packages": {}},
        "options": {},
        "scorer": {"events_per_s": 20_000.0, "cpu_us_per_event": 40.0, "events": 10, "seconds": 1.0},
        "quix": {"packages": {"quixstreams": QUIX_VERSION},
                 "default": {"events_per_s": 10_000.0, "cpu_us_per_event": 80.0, "events": 10,
                             "seconds": 1.0, "startup_s": 2.0},
                 "tuned": {"error": "RuntimeError: boom"}},
    }
    text = report.markdown(results)
    assert f"| Quix Streams {QUIX_VERSION}, defaults, 1 app process | 10,000 /s | 80.0 µs" in text
    assert "| defaults | 10,000 /s | 80.0 µs | 20,000 /s | 40.0 µs | 2.00x | 0.50x |" in text
    assert "not measured: RuntimeError: boom" in text
    assert "| quix default | 10 | 1.00 | started in 2.0 s" in text
