"""Least-privilege ACLs per role: the table of docs/security.md as Kafka ACL bindings.

One principal per role (``User:scorer`` by default, from a SCRAM user or a client
certificate's CN). A worker reads with its consumer group ``GROUP_PREFIX-ROLE``; the
registry follower and the lag probe assign partitions without joining a group, so they
need no group ACL. ``riverops acls`` prints the bindings, ``--apply`` creates them.

Examples
--------
>>> rules = role_acls("scorer", topic_prefix="riverops.", group_prefix="riverops")
>>> sorted((r.operation, r.resource, r.name) for r in rules)[:3]
[('READ', 'GROUP', 'riverops-scorer'), ('READ', 'TOPIC', 'riverops.features'), ('READ', 'TOPIC', 'riverops.model-registry')]
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal, get_args

from riverops.schemas.errors import AuthorizationError, RiveropsError

__all__ = ["AclRole", "ACL_ROLES", "Acl", "ROLE_TOPICS", "role_acls", "all_acls", "apply_acls"]

AclRole = Literal["scorer", "joiner", "monitor", "learner", "retrainer", "online", "lag", "service", "operator"]
ACL_ROLES: tuple[AclRole, ...] = get_args(AclRole)

# role -> (topics it reads, topics it writes); the one place these rights are written down
ROLE_TOPICS: dict[AclRole, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "scorer": (("features", "model-registry"), ("predictions", "deadletter")),
    "joiner": (("features", "predictions", "labels"), ("feedback", "deadletter")),
    "monitor": (("feedback", "model-registry"), ("metrics", "drift", "deadletter")),
    "learner": (("feedback", "model-registry"), ("model-registry", "deadletter")),
    "retrainer": (("feedback", "drift", "metrics", "retrain", "model-registry"), ("retrain", "model-registry")),
    "online": (("features", "labels", "model-registry"), ("predictions", "deadletter")),
    "lag": ((), ()),
    "service": ((), ("features", "labels")),
    "operator": ((), ()),
}
_GROUP_ROLES = ("scorer", "joiner", "monitor", "learner", "retrainer", "online")


@dataclass(frozen=True, order=True)
class Acl:
    """One ALLOW binding: principal may ``operation`` on a resource (``LITERAL`` or ``PREFIXED``)."""

    principal: str
    operation: str
    resource: Literal["TOPIC", "GROUP", "CLUSTER", "TRANSACTIONAL_ID"]
    name: str
    pattern: Literal["LITERAL", "PREFIXED"] = "LITERAL"

    def line(self) -> str:
        return f"{self.principal}\t{self.operation}\t{self.resource}\t{self.name}\t{self.pattern}"


def role_acls(role: AclRole, *, topic_prefix: str, group_prefix: str,
              principal: str | None = None) -> list[Acl]:
    """The bindings ``role`` needs and nothing more."""
    who = principal or f"User:{role}"
    reads, writes = ROLE_TOPICS[role]
    rules = [Acl(who, "READ", "TOPIC", topic_prefix + t) for t in reads]
    rules += [Acl(who, "WRITE", "TOPIC", topic_prefix + t) for t in writes]
    if role in _GROUP_ROLES:
        group = f"{group_prefix}-{role}"
        rules.append(Acl(who, "READ", "GROUP", group))
        # exactly once: its transactional ids are GROUP.HOST.SLOT (riverops.kafka.identity)
        rules.append(Acl(who, "WRITE", "TRANSACTIONAL_ID", f"{group}.", "PREFIXED"))
    if "model-registry" in writes or role == "operator":  # registry writers share one id
        rules.append(Acl(who, "WRITE", "TRANSACTIONAL_ID", f"{topic_prefix}model-registry.writer"))
    if role == "joiner":  # its state changelog, made by the joiner when missing
        changelog = f"{topic_prefix}{group_prefix}-joiner.join-state"
        rules += [Acl(who, operation, "TOPIC", changelog) for operation in ("CREATE", "READ", "WRITE")]
    if role == "lag":  # list and describe the groups, read the topics' fetch watermarks
        rules += [Acl(who, "DESCRIBE", "GROUP", group_prefix, "PREFIXED"),
                  Acl(who, "READ", "TOPIC", topic_prefix, "PREFIXED")]
    if role == "operator":  # riverops topics create, models ..., status, retrain
        rules += [Acl(who, "ALL", "TOPIC", topic_prefix, "PREFIXED"),
                  Acl(who, "ALL", "GROUP", group_prefix, "PREFIXED")]
    return sorted(set(rules))


def all_acls(*, topic_prefix: str, group_prefix: str, roles: Iterable[AclRole] = ACL_ROLES,
             principal_template: str = "User:{role}") -> list[Acl]:
    """Every role's bindings, each role under ``principal_template.format(role=...)``; a
    binding two roles of one principal share is listed once."""
    out: list[Acl] = []
    for role in roles:
        out += role_acls(role, topic_prefix=topic_prefix, group_prefix=group_prefix,
                         principal=principal_template.format(role=role))
    return list(dict.fromkeys(out))


def _binding(acl: Acl) -> Any:
    from confluent_kafka.admin import (  # type: ignore[attr-defined]
        AclBinding,
        AclOperation,
        AclPermissionType,
        ResourcePatternType,
        ResourceType,
    )

    return AclBinding(ResourceType[acl.resource], acl.name, ResourcePatternType[acl.pattern],
                      acl.principal, "*", AclOperation[acl.operation], AclPermissionType.ALLOW)


def apply_acls(admin: Any, acls: list[Acl], *, timeout: float = 15.0) -> int:
    """Create ``acls`` through ``admin`` (an AdminClient); idempotent. The count created."""
    from confluent_kafka import KafkaError, KafkaException

    if not acls:
        return 0
    try:
        admin.list_topics(timeout=timeout)
    except KafkaException as exc:
        raise RiveropsError(f"cannot reach the broker: {exc.args[0].str()}") from exc
    futures = admin.create_acls([_binding(acl) for acl in acls], request_timeout=timeout)
    for binding, future in futures.items():
        try:
            future.result(timeout=timeout)
        except KafkaException as exc:
            error = exc.args[0]
            code = error.code() if isinstance(error, KafkaError) else None
            if code == KafkaError.SECURITY_DISABLED:
                raise RiveropsError("the broker has no authorizer configured: ACLs cannot be "
                                    "created (authorizer.class.name is unset)") from exc
            if code == KafkaError.CLUSTER_AUTHORIZATION_FAILED:
                raise AuthorizationError(f"not allowed to create ACLs: {error.str()}") from exc
            raise RiveropsError(f"cannot create ACL {binding}: {exc}") from exc
    return len(futures)
