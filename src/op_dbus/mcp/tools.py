"""The MCP surface: tools and resources on the SDK's `MCPServer`, over one `McpService`.

Descriptions are written for a model: what a tool is for, what it changes, and what to do
next. Errors come back as tool errors (`isError`) in the CLI's vocabulary: the kind
(InvalidInput, Refused, AccessDenied, Busy, NothingPending, ComponentMissing), the exit code
the CLI would give, the D-Bus error name, and the message.

(No `from __future__ import annotations` here: the SDK reads `Resolve(...)` markers from the
tools' evaluated annotations, and `apply_plan`'s consent resolver is local to `build_server`.)
"""

import functools
import inspect
import json
import os
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, NotRequired, TypedDict

from mcp.server import MCPServer
from mcp.server.mcpserver import Context, Elicit, ElicitationResult, Resolve
from mcp.types import CallToolResult, TextContent, ToolAnnotations
from pydantic import Field

from op_dbus.errors import OpError
from op_dbus.mcp import consent
from op_dbus.mcp.service import TRY_DEFAULT, TRY_MAX, TRY_MIN, McpService

INSTRUCTIONS = """\
op-dbus manages this Linux host declaratively: Open vSwitch bridges and ports with their
addresses (section net), LXC containers wired into those bridges (lxc), systemd units (systemd).
Read with query_state, show_topology, status, verify, explain_drift and the ledger tools.
To change the host: call plan with a state document (only what it names is changed), show the
plan text to the user, then apply_plan with the plan id. Every change is a try: it is rolled
back by itself unless you call confirm within confirm_within seconds, after checking that the
host still works. A plan is refused if the host changed after it was made: plan again.
"""

Name = Annotated[str, Field(max_length=128)]
"""A resource name, pattern or action description: bounded like every input."""
READ = ToolAnnotations(read_only_hint=True, destructive_hint=False, idempotent_hint=True)
CLIENT_NAME_MAX = 64

StateDoc = Annotated[
    dict[str, Any] | str,
    Field(
        description=(
            "A state document: an object {'version': 1, 'plugins': {'net': ..., 'lxc': ..., "
            "'systemd': ...}} or the sections at top level ({'net': {'interfaces': [...]}}), "
            "or the same as JSON or YAML text. Only what it names is changed."
        )
    ),
]


class PlanReply(TypedDict):
    plan_id: str | None
    revision: str
    pending: bool
    summary: dict[str, Any]
    dangerous: list[str]
    text: str
    plan: dict[str, Any]
    mode: str
    expires: NotRequired[str]
    """When plan_id stops being valid (UTC)."""
    not_appliable: NotRequired[str]
    """Why no plan_id: the sections that cannot be handled, and why."""


ApplyReply = TypedDict(
    "ApplyReply",
    {
        "plan": dict[str, Any],
        "result": dict[str, Any],
        "try": dict[str, Any] | None,
        "next": str | None,
    },
)


class QueryReply(TypedDict):
    state: dict[str, Any]
    skipped: dict[str, str]


def error_result(err: OpError) -> CallToolResult:
    kind = type(err).__name__
    data = {
        "error": {
            "kind": kind,
            "exit_code": int(err.code),
            "dbus_name": err.dbus_name,
            "message": err.message,
        }
    }
    return CallToolResult(
        content=[TextContent(text=f"{kind}: {err.message}")],
        structured_content=data,
        is_error=True,
    )


def reply(data: dict[str, Any], text: str | None = None) -> CallToolResult:
    """Structured content, and for the model's eyes `text` (default: the JSON)."""
    body = text if text is not None else json.dumps(data, indent=1, sort_keys=True, default=str)
    return CallToolResult(content=[TextContent(text=body)], structured_content=data)


def guarded(fn: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
    """op-dbus errors become tool errors; anything else is the SDK's generic tool error."""

    @functools.wraps(fn)
    async def call(*args: Any, **kwargs: Any) -> Any:
        try:
            return await fn(*args, **kwargs)
        except OpError as err:
            return error_result(err)

    call.__doc__ = inspect.cleandoc(fn.__doc__ or "")
    return call


def _printable(text: str) -> str:
    kept = "".join(c if c.isalnum() or c in "._-@/+" else "_" for c in text)
    return kept[:CLIENT_NAME_MAX] or "unnamed"


def caller_of(ctx: Context) -> tuple[str, str]:
    """(actor for the ledger, rate-limit key): the client's own name and, over HTTP, the id
    of the token it presented (`uid` on stdio, where the server acts as its caller)."""
    params = ctx.session.client_params
    info = params.client_info if params is not None else None
    name = _printable(info.name if info is not None else "")
    request = ctx.request_context.request
    scope = getattr(request, "scope", None)
    if scope is not None:
        who = f"token={scope.get('opdbus.token_id', 'none')}"
    else:
        who = f"uid={os.getuid()}"
    return f"mcp client={name} {who}", who


def build_server(service: McpService) -> MCPServer:
    server = MCPServer(
        name="op-dbus", instructions=INSTRUCTIONS, version="0.1.0", log_level="WARNING"
    )
    write = service.options.allow_write
    writes_note = (
        ""
        if write
        else " This server is read-only: the call is refused (AccessDenied) unless it was "
        "started with --allow-write."
    )

    @server.tool(name="query_state", annotations=READ, structured_output=True)
    @guarded
    async def query_state(
        sections: Annotated[
            list[Name] | None,
            Field(max_length=8, description="Sections to read: net, lxc, systemd (default: all)."),
        ] = None,
        names: Annotated[
            list[Name],
            Field(
                max_length=64,
                description="Keep only resources whose name matches one of these shell "
                "patterns (bridges/ports, containers by name or id, units), e.g. ['ovsbr*'].",
            ),
        ] = [],  # noqa: B006 - pydantic copies defaults
    ) -> QueryReply:
        """The host's current state in the state file's own shape (plus read-only facts such
        as owned, ofport, pid). Sections that cannot be read are listed in `skipped`."""
        data = await service.query(sections, names)
        return reply(data)  # type: ignore[return-value]

    @server.tool(name="show_topology", annotations=READ)
    @guarded
    async def show_topology() -> dict[str, Any]:
        """What is wired to what: each bridge with its addresses and ports, the container
        behind each container port, and containers attached to no bridge."""
        return reply(await service.topology())  # type: ignore[return-value]

    @server.tool(name="plan", annotations=READ, structured_output=True)
    @guarded
    async def plan(state: StateDoc) -> PlanReply:
        """Plan a change: what making the host match `state` would create, change and
        delete. Changes nothing. Returns a plan_id for apply_plan, the plan as text (show
        it to the user), the actions that need an explicit acknowledgement (`dangerous`),
        and the host revision the plan was read at. plan_id is null when a section cannot
        be handled (see not_appliable)."""
        data = await service.plan(state)
        return reply(data, data["text"] + f"\nplan_id: {data['plan_id']}")  # type: ignore[return-value]

    def ask_consent(
        ctx: Context, plan_id: str, acknowledge: list[str]
    ) -> Elicit[consent.Consent] | None:
        """The question for the user (elicitation) when the plan has dangerous actions the
        agent left out of `acknowledge` and its client can ask; None: nothing to ask."""
        actions = service.to_consent(plan_id, acknowledge)
        if not actions or not consent.can_elicit(ctx):
            return None
        return Elicit(consent.question(plan_id, actions), consent.Consent)

    @server.tool(
        name="apply_plan",
        annotations=ToolAnnotations(
            read_only_hint=False, destructive_hint=True, idempotent_hint=False
        ),
        structured_output=True,
        description=(
            "Apply a plan made by `plan`, exactly as shown: refused (Refused) if the host "
            "changed since the plan was made; plan again then. The change is a try: it is "
            "rolled back by itself unless `confirm` comes within confirm_within seconds, so "
            "check the host (query_state, verify) before confirming. Dangerous actions of "
            "the plan must be listed in `acknowledge`; a client that supports elicitation "
            "is asked for the user's consent to those left out instead. Recorded in the "
            "ledger under this client's name." + writes_note
        ),
    )
    @guarded
    async def apply_plan_tool(
        ctx: Context,
        plan_id: Annotated[str, Field(max_length=64, description="The plan_id `plan` returned.")],
        confirm_within: Annotated[
            int,
            Field(
                ge=TRY_MIN,
                le=TRY_MAX,
                description="Seconds until the change is rolled back unless confirmed.",
            ),
        ] = TRY_DEFAULT,
        acknowledge: Annotated[
            list[Name],
            Field(
                max_length=256,
                description="Each dangerous action of the plan, as `plan` listed it.",
            ),
        ] = [],  # noqa: B006
        asked: Annotated[ElicitationResult[consent.Consent], Resolve(ask_consent)] = None,  # type: ignore[assignment]
    ) -> ApplyReply:
        actor, caller = caller_of(ctx)
        data = await service.apply_shown(
            plan_id,
            confirm_within,
            acknowledge,
            actor=actor,
            caller=caller,
            consent=consent.answer(asked),
        )
        return reply(data)  # type: ignore[return-value]

    @server.tool(
        name="confirm",
        annotations=ToolAnnotations(
            read_only_hint=False, destructive_hint=False, idempotent_hint=False
        ),
        description="Keep the pending try (the change apply_plan made): it is no longer "
        "rolled back. NothingPending when no try waits." + writes_note,
    )
    @guarded
    async def confirm(ctx: Context) -> dict[str, Any]:
        actor, caller = caller_of(ctx)
        return reply(await service.confirm(actor=actor, caller=caller))  # type: ignore[return-value]

    @server.tool(
        name="rollback",
        annotations=ToolAnnotations(
            read_only_hint=False, destructive_hint=True, idempotent_hint=False
        ),
        description="Roll the pending try back now, to the state before it. NothingPending "
        "when no try waits." + writes_note,
    )
    @guarded
    async def rollback(ctx: Context) -> dict[str, Any]:
        actor, caller = caller_of(ctx)
        return reply(await service.rollback(actor=actor, caller=caller))  # type: ignore[return-value]

    @server.tool(name="verify", annotations=READ)
    @guarded
    async def verify(state: StateDoc) -> dict[str, Any]:
        """Does the host match `state`? Lists every mismatch (resource, field, expected,
        actual) and sections that cannot be checked; `matches` is true when none."""
        return reply(await service.verify(state))  # type: ignore[return-value]

    @server.tool(name="explain_drift", annotations=READ)
    @guarded
    async def explain_drift(
        state: Annotated[
            dict[str, Any] | str | None,
            Field(
                description="The state to compare with (default: the state file the "
                "daemon enforces)."
            ),
        ] = None,
    ) -> dict[str, Any]:
        """Why the host differs from its desired state: each mismatch in words, what a
        repair would do (a plan, not applied), and what the daemon does about drift."""
        data = await service.explain_drift(state)
        return reply(data, "\n".join(data["explanation"]) or "no drift: the host matches")  # type: ignore[return-value]

    @server.tool(name="status", annotations=READ)
    @guarded
    async def status() -> dict[str, Any]:
        """The daemon (pid, mode, policy, state file), its runtime changes, a pending try
        and its deadline, the last apply, drift counters, the apply lock's holder, and
        whether this server allows writes."""
        return reply(await service.status())  # type: ignore[return-value]

    @server.tool(name="doctor", annotations=READ)
    @guarded
    async def doctor(
        mode: Annotated[
            Name, Field(description="agent, standalone or full: the mode to check for.")
        ] = "full",
    ) -> dict[str, Any]:
        """What the mode needs (D-Bus, systemd, Open vSwitch, LXC, ...), whether each is
        usable here, and how to fix what is missing (Debian and NixOS)."""
        return reply(await service.doctor(mode))  # type: ignore[return-value]

    @server.tool(name="ledger_log", annotations=READ)
    @guarded
    async def ledger_log(
        count: Annotated[int, Field(ge=1, le=500, description="How many latest entries.")] = 20,
        plugin: Annotated[Name | None, Field(description="Only this plugin's actions.")] = None,
        since: Annotated[
            Name | None, Field(description="Only entries at or after this ISO 8601 time.")
        ] = None,
    ) -> dict[str, Any]:
        """The latest entries of the tamper-evident ledger: every apply (actor, mode,
        result), its actions, confirmations and observed drift."""
        return reply(service.ledger_log(count, plugin, since))  # type: ignore[return-value]

    @server.tool(name="ledger_verify", annotations=READ)
    @guarded
    async def ledger_verify() -> dict[str, Any]:
        """Recompute every hash of the ledger and check it against every signed
        checkpoint; `ok` false names the first bad entry."""
        return reply(service.ledger_verify())  # type: ignore[return-value]

    @server.tool(name="ledger_proof", annotations=READ)
    @guarded
    async def ledger_proof(
        index: Annotated[int, Field(ge=0, description="The entry's index.")],
        size: Annotated[
            int | None, Field(ge=1, description="Tree size (default: the latest checkpoint's).")
        ] = None,
    ) -> dict[str, Any]:
        """An RFC 9162 inclusion proof that entry `index` is in the tree of `size`, checked
        against the stored root before it is returned."""
        return reply(service.ledger_proof(index, size))  # type: ignore[return-value]

    def resource_json(data: dict[str, Any]) -> str:
        return json.dumps(data, indent=1, sort_keys=True, default=str)

    @server.resource("opdbus://state/current", mime_type="application/json")
    async def current_state() -> str:
        """The host's current state (as query_state without filters)."""
        return resource_json(await service.query(None, []))

    @server.resource("opdbus://state/desired", mime_type="application/json")
    async def desired_state() -> str:
        """The state the daemon enforces (its state file) and its runtime changes."""
        return resource_json(await service.desired())

    @server.resource("opdbus://ledger/checkpoint", mime_type="application/json")
    async def checkpoint() -> str:
        """The ledger's latest signed checkpoint (C2SP signed note) and the signer's key."""
        return resource_json(service.checkpoint())

    @server.resource("opdbus://topology", mime_type="application/json")
    async def topology() -> str:
        """Bridges -> ports -> containers (as show_topology)."""
        return resource_json(await service.topology())

    return server
