"""The daemon's life: boot-time apply, then watch, reconcile, answer on D-Bus until SIGTERM.

One worker handles everything that comes in from the watchers: triggers pile up in a set of
section names while it is busy, so a burst of events that comes during a check is one check
after it (a drift is repaired at once, not after a fixed wait; a changed state file waits a
short debounce, for an editor's writes to end), and the reconciler's lock makes an
intentional change (SIGHUP, D-Bus ApplyState) and a repair take turns. SIGTERM waits for
the lock, so an apply in flight finishes before the exit.

Nothing a caller sends is parsed on the event loop: D-Bus documents are parsed in a child
process (parsing.py), the state file in a worker thread, both bounded before parsing
(model/load.py), so the loop keeps answering, repairing and feeding the watchdog meanwhile.
"""

from __future__ import annotations

import asyncio
import json
import logging
import signal
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from op_dbus.daemon.backoff import DriftBackoff
from op_dbus.daemon.dbus_api import DbusApi
from op_dbus.daemon.notify import Notifier
from op_dbus.daemon.parsing import DocumentParser, InvalidDocument
from op_dbus.daemon.reconcile import ACTOR, Policy, Reconciler, own_state
from op_dbus.daemon.runtime import RuntimeChanges
from op_dbus.daemon.watchers import supervise
from op_dbus.daemon.watchers.statefile import statefile_session
from op_dbus.endpoints import Endpoints
from op_dbus.engine.host import Change, Host, PendingTry, check_try_seconds
from op_dbus.engine.lock import read_holder
from op_dbus.engine.options import ApplyOptions
from op_dbus.engine.overlay import overlay
from op_dbus.engine.probe import Target
from op_dbus.errors import InvalidInput
from op_dbus.exitcodes import ExitCode
from op_dbus.ledger.entries import now_text
from op_dbus.model import LoadedState, Mode, StateInputError, load_state
from op_dbus.model.modes import SECTIONS_BY_MODE
from op_dbus.plugins import watcher_factory
from op_dbus.plugins.base import Section, Watch, WatchContext

if TYPE_CHECKING:
    from op_dbus.fleet.agent import AgentOptions
    from op_dbus.mcp.http import HttpOptions

log = logging.getLogger("op_dbus.daemon")

READY_WAIT = 5.0
"""How long READY=1 waits for the D-Bus name before it is sent anyway."""
RETRY_DELAY = 2.0
"""After a check failed unexpectedly: its sections are looked at again this much later."""


@dataclass(frozen=True)
class DaemonOptions:
    endpoints: Endpoints
    state_file: Path | None = None
    mode: Mode | None = None
    """The mode the user fixed; None: from the state file, and the cache covers every section."""
    policy: Policy = Policy.ENFORCE
    oneshot: bool = False
    use_ledger: bool = True
    use_cache: bool = True
    """False: QueryState reads the host every time instead of answering from memory."""
    debounce: float = 0.01
    """How long a reload waits for more writes to the state file (an editor's burst)."""
    poll_interval: float = 300.0
    """Safety net: every section is re-read this often even without events (LXC has none)."""
    fight_threshold: int = 3
    """Repairs of one resource within a minute after which it is held back (backoff)."""
    mcp_http: HttpOptions | None = None
    """Serve MCP over HTTP too, on this daemon's Host and cache (`--mcp-http`)."""
    mcp_allow_write: bool = False
    reload_on_change: bool = True
    """Watch the state file and reload when it changes (`--reload-on-change=no`: only on
    SIGHUP or `op-dbus reload`)."""
    probes: tuple[Target, ...] = ()
    """Targets every probed change must still reach, besides the gateway (`--probe`)."""
    fleet: AgentOptions | None = None
    """Take desired state from etcd too (`--fleet`), through this daemon's Host."""


class Daemon:
    """`await Daemon(options).run()` -> exit code. Implements dbus_api.Backend."""

    def __init__(self, options: DaemonOptions, notifier: Notifier | None = None) -> None:
        self.options = options
        self.notifier = notifier or Notifier()
        mode = options.mode or Mode.FULL
        self.host = Host(
            options.endpoints,
            SECTIONS_BY_MODE[mode],
            use_ledger=options.use_ledger,
            probes=options.probes,
        )
        self.host.try_listeners.append(self._try_over)
        self.reconciler = Reconciler(
            self.host,
            options.policy,
            use_cache=options.use_cache,
            backoff=DriftBackoff(threshold=options.fight_threshold),
        )
        self.mode = str(mode)
        self.policy = str(options.policy)
        self.loaded: LoadedState | None = None
        self.parser = DocumentParser()
        self._runtime: RuntimeChanges | None = None
        self._tried: tuple[dict[str, Section], Callable[[], None], Callable[[], None]] | None
        self._tried = None
        """While a try pends: what was enforced before it, what keeps it, what undoes it."""
        self.fleet_sections: dict[str, Section] = {}
        """The fleet agent's desired state (`--fleet`): laid over the state file, under
        the runtime changes; each fleet revision replaces the one before."""
        self._dirty: set[str] = set()
        self._wake = asyncio.Event()
        self._stop = asyncio.Event()
        self._reload = False
        self._stamp: tuple[int, int, int] | None = None

    # -- life ------------------------------------------------------------------------------
    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, self._stop.set)
        loop.add_signal_handler(signal.SIGINT, self._stop.set)
        loop.add_signal_handler(signal.SIGHUP, self._request_reload)
        try:
            code = await self._boot()
            if self.options.oneshot or self._stop.is_set():
                return code
            await self._serve()
            return int(ExitCode.OK)
        finally:
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                loop.remove_signal_handler(sig)
            self.parser.close()
            await self.reconciler.close()

    async def load(self) -> LoadedState | None:
        """The state file, validated in a worker thread (StateInputError when it is not valid;
        a FIFO or an oversized file is refused by the reader without blocking)."""
        path = self.options.state_file
        if path is None:
            return None
        self._stamp = _stamp(path)
        return await asyncio.to_thread(load_state, path, mode=self.options.mode)

    async def _boot(self) -> int:
        """The boot-time apply (on Proxmox the OVS database is wiped at every boot).

        Nothing is read for the cache here: every section starts stale, read when asked for."""
        try:
            self.loaded = await self.load()
        except StateInputError as err:  # checked by `op-dbus run` already; changed since
            log.error("%s is not valid: %s", self.options.state_file, _errors(err))
            return int(ExitCode.INVALID_INPUT)
        self._runtime = RuntimeChanges.load(self.options.endpoints.data_dir, self._file_sections())
        if self.loaded is None:
            self.notifier.status("no state file: reading the host only")
            return int(ExitCode.OK)
        self.notifier.status(f"applying {self.options.state_file}")
        change = await self.reconciler.apply_desired(
            self.runtime.desired(self.loaded.state.sections()),
            own_state(f"{ACTOR}:boot", str(self.loaded.mode)),
        )
        return int(change.result.exit_code)

    async def _serve(self) -> None:
        r, opts = self.reconciler, self.options
        api = DbusApi(opts.endpoints.system_bus, self)
        r.listeners.append(api.publish)
        r.listeners.append(self._on_report)

        jobs = [
            supervise(f"D-Bus service {api.address}", api.session, lambda: None),
            self._worker(),
            self._poll(),
            self._watchdog(),
            *self._watches(),
        ]
        if opts.mcp_http is not None:
            jobs.append(self._serve_mcp(opts.mcp_http))
        if opts.fleet is not None:
            jobs.append(self._serve_fleet(opts.fleet))
        if opts.state_file is not None and opts.reload_on_change:
            session = statefile_session(opts.state_file.absolute(), self._file_changed)
            what = f"state file {opts.state_file}"
            jobs.append(supervise(what, session, self._file_changed_unseen))
        tasks = [asyncio.create_task(job) for job in jobs]
        try:  # ready once callers can reach us; a bus that is not there does not hold us up
            async with asyncio.timeout(READY_WAIT):
                await api.online.wait()
        except TimeoutError:
            log.warning("not on the bus %s yet; ready without it", api.address)
        self.notifier.ready(self._status())
        log.info("running (policy %s, mode %s)", self.policy, self.mode)
        await self._stop.wait()
        self.notifier.stopping("stopping: finishing the work in flight")
        async with self.host.busy:  # an apply in flight finishes first
            for task in tasks:
                task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        log.info("stopped")

    async def _serve_mcp(self, http: HttpOptions) -> None:
        """The MCP server as one more front end of this daemon: its cache, its Host."""
        from op_dbus.daemon.inproc_api import InProcessApi
        from op_dbus.mcp.http import serve_http
        from op_dbus.mcp.service import McpOptions, McpService
        from op_dbus.mcp.tools import build_server

        options = McpOptions(allow_write=self.options.mcp_allow_write, mode=self.options.mode)
        service = McpService(InProcessApi(self), self.options.endpoints, options)
        try:
            await serve_http(build_server(service), service, http, embedded=True)
        except SystemExit:  # uvicorn's way of saying it cannot listen; it logged why
            log.error("MCP: cannot serve on %s; the daemon runs on without it", http.url)

    def _watches(self) -> list[Coroutine]:
        """The plugins' event sources for the sections this daemon manages, each supervised;
        a source two sections watch (OVSDB for net and lxc) is one session for both."""
        everything = frozenset(self.reconciler.names)
        watches: dict[str, Watch] = {}
        watchers: dict[str, set[str]] = {}
        for name in self.reconciler.names:
            context = WatchContext(self.options.endpoints, partial(self._enforced_section, name))
            for watch in watcher_factory(name)(context):
                watches.setdefault(watch.source, watch)
                watchers.setdefault(watch.source, set()).add(name)
        jobs = []
        for source, watch in watches.items():
            sections = frozenset(watchers[source])
            session = watch.session(partial(self.trigger, sections))
            on_connect = everything if watch.recheck_all else sections
            connected = partial(self.trigger, on_connect, f"{source} connected")
            jobs.append(supervise(source, session, connected))
        return jobs

    def _enforced_section(self, name: str) -> Section:
        return self.reconciler.desired.get(name, {})

    async def _serve_fleet(self, options: AgentOptions) -> None:
        """The fleet agent as one more front end of this daemon: what it applies becomes a
        runtime change, enforced like one made over D-Bus."""
        from op_dbus.daemon.inproc_api import FleetApi
        from op_dbus.fleet.agent import Agent

        agent = Agent(FleetApi(self), options)
        self.reconciler.listeners.append(agent.changed)
        await agent.run()

    def trigger(self, sections: frozenset[str], why: str) -> None:
        """Called by the watchers: these sections may have changed."""
        wanted = sections & set(self.reconciler.names)
        if wanted:
            log.debug("event: %s", why)
            self._dirty |= wanted
            self._wake.set()

    def _request_reload(self) -> None:
        self._reload = True
        self._wake.set()

    def _file_changed(self) -> None:
        log.info("%s changed: reloading", self.options.state_file)
        self._request_reload()

    def _file_changed_unseen(self) -> None:
        """The watch is (re)established: a change while nobody watched is a change too."""
        if self._stamp is not None and _stamp(self.options.state_file) != self._stamp:
            self._file_changed()

    async def _worker(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self._wake.wait()
            # events already queued with this one join it; later ones pile up for the next
            await asyncio.sleep(self.options.debounce if self._reload else 0)
            self._wake.clear()
            names, self._dirty = self._dirty, set()
            try:
                if self._reload:
                    self._reload = False
                    await self._reload_file()
                if names:
                    await self.reconciler.check(names, mode=self._ledger_mode())
            except Exception:  # a bug or a backend surprise must not end reconciling
                log.exception("reconciling failed; trying again in %g s", RETRY_DELAY)
                loop.call_later(RETRY_DELAY, self.trigger, frozenset(names), "retry")
            if (delay := self.reconciler.retry_after) is not None:
                self.reconciler.retry_after = None
                held = frozenset(self.reconciler.desired)
                loop.call_later(delay, self.trigger, held, "backoff over")
            self.notifier.status(self._status())

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(self.options.poll_interval)
            self.trigger(frozenset(self.reconciler.names), "safety poll")

    async def _watchdog(self) -> None:
        interval = self.notifier.watchdog_interval
        if interval is None:
            return
        while True:
            self.notifier.watchdog()
            await asyncio.sleep(interval)

    async def _reload_file(self) -> None:
        """SIGHUP, `op-dbus reload` or a changed state file: drop the runtime changes, then
        re-read and apply the state file; an invalid one is refused, the old state kept."""
        if self.options.state_file is None:
            self._drop_runtime()
            self._dirty |= set(self.reconciler.names)
            return
        self.notifier.reloading(f"reloading {self.options.state_file}")
        try:
            loaded = await self.load()
        except StateInputError as err:
            log.error(
                "reload refused, %s is not valid (the previous state stays enforced): %s",
                self.options.state_file,
                _errors(err),
            )
            self.notifier.ready(f"reload refused: {self.options.state_file} is not valid")
            return
        assert loaded is not None
        self.loaded = loaded
        self._drop_runtime()
        await self.reconciler.apply_desired(
            self._base(), own_state(f"{ACTOR}:reload", str(loaded.mode))
        )
        self.notifier.ready(self._status())

    @property
    def runtime(self) -> RuntimeChanges:
        """Changes made through the daemon on top of its state file (read at boot)."""
        assert self._runtime is not None, "read at boot, before anything is served"
        return self._runtime

    def _drop_runtime(self) -> None:
        if dropped := self.runtime.drop(self._file_sections()):
            log.info("reload: %d runtime change(s) dropped", dropped)

    def _ledger_mode(self) -> str:
        return str(self.loaded.mode) if self.loaded is not None else self.mode

    def _status(self) -> str:
        r = self.reconciler
        last = r.last_apply.get("message", "no apply yet")
        return f"{self.policy}; {r.drift_events} drift event(s); last apply: {last}"

    def _on_report(self, kind: str, report: dict[str, Any]) -> None:
        if kind == "drift" and report.get("held"):
            self.notifier.status(f"BACKOFF: {', '.join(sorted(report['held']))} keep drifting")

    # -- dbus_api.Backend ------------------------------------------------------------------
    def last_apply_json(self) -> str:
        return json.dumps(self.reconciler.last_apply, sort_keys=True)

    def drift_events(self) -> int:
        return self.reconciler.drift_events

    async def _parse(self, text: str) -> dict[str, Section]:
        """A caller's document, bounded and validated in a child process: its sections."""
        try:
            return (await self.parser.parse(text, self.options.mode)).sections
        except InvalidDocument as err:
            raise InvalidInput(str(err)) from None

    def _file_sections(self) -> dict[str, Section]:
        return self.loaded.state.sections() if self.loaded is not None else {}

    def _base(self) -> dict[str, Section]:
        """What runtime changes are laid over: the state file, then the fleet's state."""
        return overlay(self._file_sections(), self.fleet_sections)

    async def apply_state(self, text: str, options: ApplyOptions) -> dict[str, Any]:
        """A change through the daemon, in the daemon's mode: applied now and, if it took
        effect, kept as a runtime change on top of the state file (for a try: once
        confirmed). A caller's document is partial unless it asks for `prune`, and its
        dangerous actions need its `acknowledge`: the daemon cannot ask."""
        if options.confirm_within is not None:
            check_try_seconds(options.confirm_within)  # before parsing: a refusal costs nothing
        sections = await self._parse(text)
        before = dict(self.reconciler.desired)
        desired = self.runtime.desired(self._base())
        options = replace(options, mode=self.mode, repair=False)
        change = await self.reconciler.apply_desired(
            overlay(desired, sections, replace=options.prune), options, apply=sections
        )
        actor, prune = options.actor, options.prune
        code = change.result.exit_code
        if code in (ExitCode.OK, ExitCode.UNEXPECTED) and change.plan.pending:
            if options.confirm_within is None or self.host.pending is None:
                self.runtime.add(sections, actor=actor, time=now_text(), prune=prune)
            else:
                keep = lambda: self.runtime.add(  # noqa: E731
                    sections, actor=actor, time=now_text(), prune=prune
                )
                self._tried = (before, keep, lambda: None)
        return change.to_json() | {"try": self._try_json()}

    async def apply_fleet(
        self, sections: dict[str, Section], actor: str, confirm_within: float | None
    ) -> dict[str, Any]:
        """The fleet agent's change: its new desired state replaces its previous one, and
        everything enforced is applied (so what the fleet dropped goes). Refused, failed or
        rolled back: the previous fleet state is enforced again."""
        previous, before = self.fleet_sections, dict(self.reconciler.desired)
        self.fleet_sections = dict(sections)
        try:
            change = await self.reconciler.apply_desired(
                self.runtime.desired(self._base()),
                own_state(actor, self.mode, confirm_within=confirm_within),
            )
        except BaseException:
            self.fleet_sections = previous
            raise
        if change.result.exit_code not in (ExitCode.OK, ExitCode.UNEXPECTED):
            self.fleet_sections = previous
        elif confirm_within is not None and self.host.pending is not None:

            def undo() -> None:
                self.fleet_sections = previous

            self._tried = (before, lambda: None, undo)
        return change.to_json() | {"try": self._try_json()}

    def _try_over(self, how: str, pending: PendingTry, change: Change | None) -> None:
        """The Host ended the try: keep its change, or enforce what came before it again."""
        tried, self._tried = self._tried, None
        if tried is None:
            return
        before, keep, undo = tried
        if how == "confirmed":
            keep()
        else:
            undo()
            if change is not None:
                self.reconciler.restored(change, before, actor=f"{ACTOR}:try-rollback")

    def _try_json(self) -> dict[str, Any] | None:
        return self.host.pending.to_json() if self.host.pending is not None else None

    async def query_state(self) -> dict[str, Any]:
        return await self.reconciler.cached_state()

    async def diff(self, text: str, *, prune: bool = False) -> dict[str, Any]:
        plan = await self.reconciler.diff(await self._parse(text), prune=prune)
        return await asyncio.to_thread(plan.to_json)

    async def verify(self, text: str | None = None) -> dict[str, Any]:
        desired = None if text is None else await self._parse(text)
        return await self.reconciler.verify(desired)

    async def confirm(self, actor: str) -> dict[str, Any]:
        return {"confirmed": self.host.confirm(actor=actor).to_json()}

    async def rollback(self, actor: str) -> dict[str, Any]:
        return (await self.host.rollback(actor=actor, why="rolled back on request")).to_json()

    async def reload(self) -> dict[str, Any]:
        dropped = len(self.runtime.changes)
        self._request_reload()
        return {"reloading": str(self.options.state_file), "runtime_changes_dropped": dropped}

    def status(self) -> dict[str, Any]:
        import os

        r = self.reconciler
        return {
            "daemon": {
                "pid": os.getpid(),
                "mode": self.mode,
                "policy": self.policy,
                "state_file": str(self.options.state_file) if self.options.state_file else None,
            },
            "runtime_changes": self.runtime.summary(),
            "try": self._try_json(),
            "last_apply": r.last_apply or None,
            "drift": {"events": r.drift_events, "repairs": r.repairs},
            "lock_holder": read_holder(self.options.endpoints.data_dir),
        }


def _errors(err: StateInputError) -> str:
    return "; ".join(str(e) for e in err.errors)


def _stamp(path: Path | None) -> tuple[int, int, int] | None:
    """What tells one version of a file from the next: inode, size, mtime."""
    try:
        st = path.stat() if path is not None else None
    except OSError:
        return None
    return None if st is None else (st.st_ino, st.st_size, st.st_mtime_ns)
