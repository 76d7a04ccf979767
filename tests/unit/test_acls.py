"""The ACL bindings of `riverops acls` are least privilege and agree with docs/security.md."""

from __future__ import annotations

import re
from pathlib import Path

from click.testing import CliRunner

from riverops.cli.main import cli
from riverops.kafka.acls import ACL_ROLES, ROLE_TOPICS, all_acls, role_acls

ROOT = Path(__file__).resolve().parents[2]


def _doc_rows() -> dict[str, tuple[set[str], set[str]]]:
    text = (ROOT / "docs/security.md").read_text()
    section = text.split("## Least-privilege ACLs per role", 1)[1]
    rows: dict[str, tuple[set[str], set[str]]] = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 4 and cells[0] in ACL_ROLES:
            def topics(cell: str) -> set[str]:
                return {t for t in re.split(r",\s*", cell) if t and " " not in t}
            rows[cells[0]] = (topics(cells[1]), topics(cells[2]))
    return rows


def test_the_docs_table_lists_every_role_with_the_code_s_topics() -> None:
    rows = _doc_rows()
    assert set(rows) == set(ACL_ROLES)
    for role, (reads, writes) in ROLE_TOPICS.items():
        assert rows[role] == (set(reads), set(writes)), role


def test_each_role_gets_its_topics_and_its_group_only() -> None:
    rules = role_acls("scorer", topic_prefix="p.", group_prefix="g")
    assert {(r.operation, r.resource, r.name, r.pattern) for r in rules} == {
        ("READ", "TOPIC", "p.features", "LITERAL"), ("READ", "TOPIC", "p.model-registry", "LITERAL"),
        ("WRITE", "TOPIC", "p.predictions", "LITERAL"), ("WRITE", "TOPIC", "p.deadletter", "LITERAL"),
        ("READ", "GROUP", "g-scorer", "LITERAL"),
        ("WRITE", "TRANSACTIONAL_ID", "g-scorer.", "PREFIXED"),
    }
    assert {r.principal for r in rules} == {"User:scorer"}
    service = role_acls("service", topic_prefix="p.", group_prefix="g")
    assert {(r.operation, r.name) for r in service} == {("WRITE", "p.features"), ("WRITE", "p.labels")}
    for role in ACL_ROLES:  # nobody but the operator gets ALL, nobody writes by prefix
        for rule in role_acls(role, topic_prefix="p.", group_prefix="g"):
            assert rule.operation != "ALL" or role == "operator"
            assert rule.operation != "WRITE" or rule.pattern == "LITERAL" or rule.resource == "TRANSACTIONAL_ID"


def test_one_principal_for_two_roles_gets_each_binding_once() -> None:
    rules = all_acls(topic_prefix="p.", group_prefix="g", roles=("learner", "retrainer"),
                     principal_template="User:trainer")
    assert len(rules) == len(set(rules))
    assert {r.principal for r in rules} == {"User:trainer"}
    assert {r.name for r in rules if r.resource == "GROUP"} == {"g-learner", "g-retrainer"}


def test_the_command_prints_the_bindings_for_the_prefixes() -> None:
    result = CliRunner().invoke(cli, ["--topic-prefix", "prod.", "acls", "--group-prefix", "fraud",
                                      "--role", "joiner", "--principal", "User:svc-{role}"])
    assert result.exit_code == 0, result.output
    lines = result.output.strip().splitlines()
    assert "User:svc-joiner\tREAD\tGROUP\tfraud-joiner\tLITERAL" in lines
    assert "User:svc-joiner\tWRITE\tTOPIC\tprod.feedback\tLITERAL" in lines
    assert "User:svc-joiner\tWRITE\tTRANSACTIONAL_ID\tfraud-joiner.\tPREFIXED" in lines
    assert "User:svc-joiner\tWRITE\tTOPIC\tprod.fraud-joiner.join-state\tLITERAL" in lines
    # 3 reads, 2 writes, the group, the transactional ids, create/read/write of the changelog
    assert len(lines) == 10
