"""Who may do what: roles, the scopes each grants, and the principal acting.

Scopes are the API's vocabulary (`contacts:read`, `reports:read`, …). A role
grants a fixed set of them; the `integration` role holds exactly the scopes
its key was given. On top of scopes, two rules narrow what a role sees:

- an `agent` reads only contacts with an open task in one of its queues;
- only `admin` and `integration` see who is behind report rows: for a
  `marketer` or an `analyst`, contact ids in the message log are masked and
  a contact's timeline is refused.

Break-glass access lifts both rules for a short, stated time; every read
made under it is audited with the purpose `emergency`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum


class Role(StrEnum):
    ADMIN = "admin"
    MARKETER = "marketer"  # workflows, templates, segments; aggregates; no raw PHI
    ANALYST = "analyst"  # aggregates only, identities masked
    AGENT = "agent"  # the contacts of its task queues
    INTEGRATION = "integration"  # the scopes its key holds


SCOPES = frozenset(
    {
        "events:write",
        "contacts:read",
        "contacts:write",
        "resources:write",
        "workflows:read",
        "workflows:write",
        "tasks:read",
        "tasks:write",
        "reports:read",
    }
)
ROLE_SCOPES: dict[Role, frozenset[str]] = {
    Role.ADMIN: SCOPES,
    Role.MARKETER: frozenset(
        {"resources:write", "workflows:read", "workflows:write", "reports:read"}
    ),
    Role.ANALYST: frozenset({"workflows:read", "reports:read"}),
    Role.AGENT: frozenset({"tasks:read", "tasks:write", "contacts:read", "contacts:write"}),
}
SEES_IDENTITIES = frozenset({Role.ADMIN, Role.INTEGRATION})
BREAK_GLASS_LONGEST = timedelta(hours=4)


@dataclass(frozen=True)
class Principal:
    """Someone acting: an API key, a command-line user, or carepath itself."""

    name: str  # as the audit log names it, e.g. `key:ehr-bridge` or `cli:alice`
    role: Role
    scopes: frozenset[str]
    queues: frozenset[str] = frozenset()  # an agent's task queues

    @property
    def sees_identities(self) -> bool:
        return self.role in SEES_IDENTITIES

    @property
    def limited_to_queues(self) -> bool:
        return self.role is Role.AGENT


def role_scopes(role: Role, scopes: frozenset[str]) -> frozenset[str]:
    """What a key of `role` may do: the role's scopes, or for an integration its own."""
    return scopes if role is Role.INTEGRATION else ROLE_SCOPES[role]


SYSTEM = Principal("carepath", Role.ADMIN, SCOPES)  # carepath's own steps and simulations
