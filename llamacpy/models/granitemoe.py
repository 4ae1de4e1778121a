"""granitemoe (Granite 3.x MoE): granite's multipliers around routed experts (renormalized), plus an ungated
shared expert where the file has one (Granite MoE Shared)."""

from __future__ import annotations

from . import granite


class Model(granite.Model):
    pass
