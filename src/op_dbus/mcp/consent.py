"""Asking the user through the client (MCP elicitation) to consent to a plan's dangerous
actions the agent did not acknowledge itself.

Only a client that declared form elicitation is asked; one that did not gets the refusal
telling it to pass `acknowledge`. The question names each dangerous action with the engine's
reasons. The answer is data for `McpService.apply_shown`: accepted, it acknowledges exactly
the actions asked about; declined or cancelled, the call is refused as before.
"""

from __future__ import annotations

from typing import Any

from mcp.server.elicitation import AcceptedElicitation
from mcp.server.mcpserver import Context
from pydantic import BaseModel, Field


class Consent(BaseModel):
    """What the user is asked to fill in: one explicit yes."""

    run_dangerous: bool = Field(
        title="Run these dangerous actions",
        description="Yes: apply the plan with the actions listed (as a try, rolled back by "
        "itself unless confirmed).",
    )


def can_elicit(ctx: Context) -> bool:
    """Did the client declare form elicitation? (A bare `elicitation: {}`, from before
    elicitation had modes, means form; url-only does not.)"""
    capabilities = ctx.client_capabilities
    elicitation = capabilities.elicitation if capabilities is not None else None
    return elicitation is not None and (elicitation.form is not None or elicitation.url is None)


def question(plan_id: str, actions: dict[str, tuple[str, ...]]) -> str:
    """The message the user reads: each dangerous action and why it is dangerous."""
    lines = [f"An agent asks to apply plan {plan_id}, which has dangerous actions:"]
    lines += [
        f"- {action}: {'; '.join(why)}" if why else f"- {action}" for action, why in actions.items()
    ]
    lines.append("Run them? Nothing is changed unless you accept.")
    return "\n".join(lines)


def answer(outcome: Any) -> str | None:
    """The elicitation's outcome as `accept`, `decline` or `cancel`; None when nobody was
    asked (the resolver returned no question). Accepted without the yes is a decline."""
    if isinstance(outcome, AcceptedElicitation):
        if outcome.data is None:
            return None
        return "accept" if outcome.data.run_dangerous else "decline"
    return str(outcome.action)
