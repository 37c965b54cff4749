"""org.opdbus on the system bus: `/org/opdbus/state`, interface `org.opdbus.StateManager`.

Method calls are answered by `_on_message`, a bus-level handler that sees the whole message:
dbus-fast's method dispatch hides the sender, and the daemon's gate (callers.py) needs it:
root-only methods check the caller's uid (`GetConnectionUnixUser`), costly ones take a slot.
The `ServiceInterface` below still declares every method, so introspection (`busctl
introspect`) describes them; it also serves the properties and emits the signals. The bus
policy (data/dbus/org.opdbus.conf) is the first gate, the daemon's own the second.
"""

# No `from __future__ import annotations`: dbus-fast reads the D-Bus signatures ("s", "b")
# from the annotations at class creation.

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from contextlib import ExitStack
from dataclasses import replace
from typing import Any, Protocol

from dbus_fast import Message, MessageType, NameFlag, RequestNameReply
from dbus_fast.aio import MessageBus
from dbus_fast.errors import DBusError
from dbus_fast.service import PropertyAccess, ServiceInterface, dbus_property, method, signal

from op_dbus.api.daemon import INTERFACE, NAME, PATH
from op_dbus.daemon.callers import COSTLY, ROOT_ONLY, CallerSlots
from op_dbus.engine.options import ApplyOptions, claimed_actor, prune_option
from op_dbus.errors import AccessDenied, InvalidInput, NothingPending, OpError
from op_dbus.model.load import MAX_DOCUMENT_BYTES, size_problem
from op_dbus.native.dbus import BUS_NAME, BUS_PATH, call, connect_system_bus

log = logging.getLogger("op_dbus.daemon")

ERR_FAILED = OpError.dbus_name
TAKES_DOCUMENT = frozenset({"ApplyState", "Apply", "TryState", "Diff", "Plan", "VerifyState"})
"""Refused at the door when longer than the limit (in characters, so surely in bytes)."""
ACTOR = "op-dbus-daemon"
MAX_OPTIONS = 256 << 10
"""An options argument's bound (256 acknowledged entries of 256 characters fit)."""


class Backend(Protocol):
    """What the daemon offers over D-Bus (service.Daemon implements it)."""

    mode: str
    policy: str

    def last_apply_json(self) -> str: ...
    def drift_events(self) -> int: ...
    async def apply_state(self, text: str, options: ApplyOptions) -> dict[str, Any]: ...
    async def query_state(self) -> dict[str, Any]: ...
    async def diff(self, text: str, *, prune: bool = False) -> dict[str, Any]: ...
    async def verify(self, text: str | None = None) -> dict[str, Any]: ...
    async def confirm(self, actor: str) -> dict[str, Any]: ...
    async def rollback(self, actor: str) -> dict[str, Any]: ...
    async def reload(self) -> dict[str, Any]: ...
    def status(self) -> dict[str, Any]: ...


def _unreachable() -> Any:
    raise DBusError(ERR_FAILED, "dispatched by the access-checking handler")


class StateManager(ServiceInterface):
    """Introspection, properties and signals of org.opdbus.StateManager."""

    def __init__(self, backend: Backend) -> None:
        super().__init__(INTERFACE)
        self.backend = backend

    @method()
    def ApplyState(self, state: "s") -> "s":  # noqa: F821
        return _unreachable()

    @method()
    def TryState(self, state: "s", seconds: "u") -> "s":  # noqa: F821
        return _unreachable()

    @method()
    def QueryState(self) -> "s":  # noqa: F821
        return _unreachable()

    @method()
    def Diff(self, state: "s") -> "s":  # noqa: F821
        return _unreachable()

    @method()
    def Plan(self, state: "s", options: "s") -> "s":  # noqa: F821
        return _unreachable()

    @method()
    def Verify(self) -> "s":  # noqa: F821
        return _unreachable()

    @method()
    def Confirm(self) -> "b":  # noqa: F821
        return _unreachable()

    @method()
    def Apply(self, state: "s", options: "s") -> "s":  # noqa: F821
        return _unreachable()

    @method()
    def VerifyState(self, state: "s") -> "s":  # noqa: F821
        return _unreachable()

    @method()
    def ConfirmTry(self) -> "s":  # noqa: F821
        return _unreachable()

    @method()
    def ConfirmTryWith(self, options: "s") -> "s":  # noqa: F821
        return _unreachable()

    @method()
    def Rollback(self) -> "s":  # noqa: F821
        return _unreachable()

    @method()
    def RollbackWith(self, options: "s") -> "s":  # noqa: F821
        return _unreachable()

    @method()
    def Reload(self) -> "s":  # noqa: F821
        return _unreachable()

    @method()
    def Status(self) -> "s":  # noqa: F821
        return _unreachable()

    @dbus_property(access=PropertyAccess.READ)
    def Mode(self) -> "s":  # noqa: F821
        return self.backend.mode

    @dbus_property(access=PropertyAccess.READ)
    def Policy(self) -> "s":  # noqa: F821
        return self.backend.policy

    @dbus_property(access=PropertyAccess.READ)
    def LastApply(self) -> "s":  # noqa: F821
        return self.backend.last_apply_json()

    @dbus_property(access=PropertyAccess.READ)
    def DriftEvents(self) -> "u":  # noqa: F821
        return self.backend.drift_events()

    @signal()
    def DriftDetected(self, report: str) -> "s":  # noqa: F821
        return report

    @signal()
    def StateApplied(self, report: str) -> "s":  # noqa: F821
        return report


class DbusApi:
    """The service on one bus connection; `serve()` keeps it up across bus restarts."""

    def __init__(self, address: str, backend: Backend) -> None:
        self.address = address
        self.backend = backend
        self.interface = StateManager(backend)
        self._bus: MessageBus | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.slots = CallerSlots()
        self.online = asyncio.Event()
        """Set while the name is ours (READY=1 waits for it, briefly)."""

    def publish(self, kind: str, report: dict[str, Any]) -> None:
        """A reconciler listener: signals and PropertiesChanged (no-op while disconnected)."""
        if self._bus is None or not self._bus.connected:
            return
        text = json.dumps(report, sort_keys=True, default=str)
        if kind == "drift":
            self.interface.DriftDetected(text)
            self.interface.emit_properties_changed({"DriftEvents": self.backend.drift_events()})
        elif kind == "applied":
            self.interface.StateApplied(text)
            self.interface.emit_properties_changed({"LastApply": self.backend.last_apply_json()})

    async def session(self, connected: Callable[[], None]) -> None:
        """One connection: export, own the name, answer until the bus goes away."""
        bus = await connect_system_bus(self.address, auth_timeout=5.0)
        try:
            bus.export(PATH, self.interface)
            bus.add_message_handler(self._on_message)
            reply = await bus.request_name(NAME, NameFlag.DO_NOT_QUEUE)
            if reply not in (RequestNameReply.PRIMARY_OWNER, RequestNameReply.ALREADY_OWNER):
                raise RuntimeError(f"{NAME} is owned by another process on {self.address}")
            self._bus = bus
            self.online.set()
            connected()
            await bus.wait_for_disconnect()
        finally:
            self.online.clear()
            self._bus = None
            bus.disconnect()

    def _on_message(self, message: Message) -> bool:
        if (
            message.message_type != MessageType.METHOD_CALL
            or message.path != PATH
            or message.interface not in (INTERFACE, None)
            or message.member not in _HANDLERS
        ):
            return False
        task = asyncio.get_running_loop().create_task(self._answer(message))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return True

    async def _answer(self, message: Message) -> None:
        bus = self._bus
        if bus is None:
            return
        handler, signature = _HANDLERS[message.member or ""]
        try:
            if message.signature != signature:
                raise DBusError(
                    "org.freedesktop.DBus.Error.InvalidArgs",
                    f"{message.member} takes ({signature}), got ({message.signature})",
                )
            with ExitStack() as slots:
                out_signature, body = await self._dispatch(bus, message, handler, slots)
            reply = Message.new_method_return(message, out_signature, body)
        except DBusError as exc:
            reply = Message.new_error(message, exc.type, exc.text)
        except OpError as exc:
            reply = Message.new_error(message, exc.dbus_name, exc.message)
        except Exception as exc:
            if not bus.connected:  # the bus went away mid-call: nobody to answer
                return
            log.exception("D-Bus %s failed", message.member)
            reply = Message.new_error(message, ERR_FAILED, f"{message.member} failed: {exc}")
        if bus.connected:
            bus.send(reply)

    async def _dispatch(
        self, bus: MessageBus, message: Message, handler: "Handler", slots: ExitStack
    ) -> tuple[str, list[Any]]:
        """The caller's gate, then the handler; `slots` holds what the call occupies."""
        member = message.member
        if member in TAKES_DOCUMENT and len(message.body[0]) > MAX_DOCUMENT_BYTES:
            raise InvalidInput(size_problem(f"the {member} document", MAX_DOCUMENT_BYTES))
        if member in COSTLY:  # before any await: a second call of this connection is refused
            slots.enter_context(self.slots.connection(message.sender, member))
        uid = -1  # only asked for where it matters: one round trip less for QueryState
        if member in COSTLY or member in ROOT_ONLY:
            uid = await self._caller_uid(bus, message.sender)
        if member in ROOT_ONLY and uid != 0:
            raise AccessDenied(f"{member} needs root (caller uid {uid})")
        if member in COSTLY and uid != 0:
            slots.enter_context(self.slots.unprivileged(member))
        return await handler(self.backend, uid, list(message.body))

    @staticmethod
    async def _caller_uid(bus: MessageBus, sender: str) -> int:
        (uid,) = await call(
            bus, BUS_NAME, BUS_PATH, BUS_NAME, "GetConnectionUnixUser", "s", [sender]
        )
        return int(uid)


Handler = Callable[[Backend, int, list[Any]], Awaitable[tuple[str, list[Any]]]]


def _text(data: dict[str, Any]) -> tuple[str, list[Any]]:
    return "s", [json.dumps(data, sort_keys=True, default=str)]


async def _text_off_loop(data: dict[str, Any]) -> tuple[str, list[Any]]:
    """For replies as large as the caller's document (a plan): encoded in a worker thread."""
    return await asyncio.to_thread(_text, data)


def _actor(uid: int, claimed: str = "") -> str:
    """Who asked: the uid the bus vouches for, and what the caller says it ran."""
    return f"{ACTOR}:dbus uid={uid}" + (f" {claimed}" if claimed else "")


def _options_object(text: str) -> dict[str, Any]:
    """A method's options argument: a JSON object (its fields are checked by their reader)."""
    if len(text) > MAX_OPTIONS:
        raise InvalidInput(size_problem("options", MAX_OPTIONS))
    try:
        options = json.loads(text) if text else {}
    except ValueError:
        raise InvalidInput("options must be a JSON object") from None
    if not isinstance(options, dict):
        raise InvalidInput("options must be a JSON object")
    return options


def _apply_options(backend: Backend, uid: int, text: str) -> ApplyOptions:
    """`Apply`'s options, recorded as the uid the bus vouches for and the claimed actor."""
    options = ApplyOptions.from_json(_options_object(text), mode=backend.mode)
    return replace(options, actor=_actor(uid, options.actor))


async def _apply_state(backend: Backend, uid: int, body: list[Any]) -> tuple[str, list[Any]]:
    return _text(await backend.apply_state(body[0], ApplyOptions(_actor(uid), backend.mode)))


async def _apply(backend: Backend, uid: int, body: list[Any]) -> tuple[str, list[Any]]:
    return _text(await backend.apply_state(body[0], _apply_options(backend, uid, body[1])))


async def _try(backend: Backend, uid: int, body: list[Any]) -> tuple[str, list[Any]]:
    options = ApplyOptions(_actor(uid), backend.mode, confirm_within=int(body[1]))
    return _text(await backend.apply_state(body[0], options))


async def _query(backend: Backend, uid: int, body: list[Any]) -> tuple[str, list[Any]]:
    return _text(await backend.query_state())


async def _diff(backend: Backend, uid: int, body: list[Any]) -> tuple[str, list[Any]]:
    return await _text_off_loop(await backend.diff(body[0]))


async def _plan(backend: Backend, uid: int, body: list[Any]) -> tuple[str, list[Any]]:
    prune = prune_option(_options_object(body[1]))
    return await _text_off_loop(await backend.diff(body[0], prune=prune))


async def _verify(backend: Backend, uid: int, body: list[Any]) -> tuple[str, list[Any]]:
    return _text(await backend.verify())


async def _verify_state(backend: Backend, uid: int, body: list[Any]) -> tuple[str, list[Any]]:
    return _text(await backend.verify(body[0]))


async def _confirm(backend: Backend, uid: int, body: list[Any]) -> tuple[str, list[Any]]:
    try:
        await backend.confirm(_actor(uid))
    except NothingPending:
        return "b", [False]
    return "b", [True]


async def _confirm_try(backend: Backend, uid: int, body: list[Any]) -> tuple[str, list[Any]]:
    return _text(await backend.confirm(_actor(uid)))


async def _confirm_try_with(backend: Backend, uid: int, body: list[Any]) -> tuple[str, list[Any]]:
    return _text(await backend.confirm(_actor(uid, claimed_actor(_options_object(body[0])))))


async def _rollback(backend: Backend, uid: int, body: list[Any]) -> tuple[str, list[Any]]:
    return _text(await backend.rollback(_actor(uid)))


async def _rollback_with(backend: Backend, uid: int, body: list[Any]) -> tuple[str, list[Any]]:
    return _text(await backend.rollback(_actor(uid, claimed_actor(_options_object(body[0])))))


async def _reload(backend: Backend, uid: int, body: list[Any]) -> tuple[str, list[Any]]:
    return _text(await backend.reload())


async def _status(backend: Backend, uid: int, body: list[Any]) -> tuple[str, list[Any]]:
    return _text(backend.status())


_HANDLERS: dict[str, tuple[Handler, str]] = {
    "ApplyState": (_apply_state, "s"),
    "Apply": (_apply, "ss"),
    "TryState": (_try, "su"),
    "QueryState": (_query, ""),
    "Diff": (_diff, "s"),
    "Plan": (_plan, "ss"),
    "Verify": (_verify, ""),
    "VerifyState": (_verify_state, "s"),
    "Confirm": (_confirm, ""),
    "ConfirmTry": (_confirm_try, ""),
    "ConfirmTryWith": (_confirm_try_with, "s"),
    "Rollback": (_rollback, ""),
    "RollbackWith": (_rollback_with, "s"),
    "Reload": (_reload, ""),
    "Status": (_status, ""),
}
