"""The connection to etcd: endpoints, TLS and auth as the user gave them, errors as ours.

`aetcd` dials one `host:port` without TLS; `EtcdClient` dials the user's endpoints as one
gRPC target (a member that fails is skipped by the channel's round-robin) with TLS and auth
when asked. Several endpoints must be IP addresses (gRPC's static `ipv4:`/`ipv6:` targets);
one endpoint may be a host name.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aetcd
import aetcd.exceptions
import grpc
from aetcd import rpc, watcher

from op_dbus.errors import ComponentMissing, InvalidInput, OpError

ENV_ENDPOINTS = "OPDBUS_ETCD"
DEFAULT_ENDPOINTS = "http://127.0.0.1:2379"
CALL_TIMEOUT = 5
"""Seconds one unary call may take (a watch stream has no deadline)."""
MAX_VALUE_BYTES = 1 << 20
"""The largest value op-dbus reads from etcd (its state documents are bounded alike)."""

RETRY_CONFIG = json.dumps(
    {
        "methodConfig": [
            {
                "name": [{"service": f"etcdserverpb.{s}"} for s in ("KV", "Lease", "Maintenance")],
                "retryPolicy": {
                    "maxAttempts": 5,
                    "initialBackoff": "0.2s",
                    "maxBackoff": "2s",
                    "backoffMultiplier": 2,
                    "retryableStatusCodes": ["UNAVAILABLE"],
                },
            }
        ]
    }
)
"""A call that meets a member going away or a leader election is tried again (up to 5
times): a put is the same put again, and a compare-and-swap that did land the first time
fails its comparison the second time, so nothing is ever written twice."""

Unavailable = (
    aetcd.exceptions.ConnectionFailedError,
    aetcd.exceptions.ConnectionTimeoutError,
    aetcd.exceptions.InternalError,
)
"""What a lost or unreachable cluster raises."""


@dataclass(frozen=True)
class EtcdOptions:
    endpoints: tuple[str, ...]
    """URLs, `http://ADDR:PORT` or `https://ADDR:PORT`."""
    cacert: Path | None = None
    cert: Path | None = None
    key: Path | None = None
    user: str | None = None
    password_file: Path | None = None

    @classmethod
    def parse(cls, text: str | None = None, **tls: Any) -> EtcdOptions:
        """`--etcd URL[,URL...]`, else OPDBUS_ETCD, else the local default; InvalidInput
        names a malformed one."""
        raw = text or os.environ.get(ENV_ENDPOINTS) or DEFAULT_ENDPOINTS
        urls = tuple(u.strip() for u in raw.split(",") if u.strip())
        if not urls or len(urls) > 16:
            raise InvalidInput(f"--etcd: give 1 to 16 endpoint URLs, got {raw!r}")
        schemes = set()
        for url in urls:
            schemes.add(_check_url(url))
        if len(schemes) > 1:
            raise InvalidInput("--etcd: endpoints mix http and https")
        options = cls(urls, **tls)
        if "https" in schemes and options.cacert is None:
            raise InvalidInput("--etcd: https endpoints need --etcd-cacert")
        if (options.cert is None) != (options.key is None):
            raise InvalidInput("--etcd-cert and --etcd-key go together")
        if (options.user is None) != (options.password_file is None):
            raise InvalidInput("--etcd-user and --etcd-password-file go together")
        return options

    @property
    def tls(self) -> bool:
        return self.endpoints[0].startswith("https:")

    def target(self) -> str:
        """The gRPC target for every endpoint."""
        hosts = [urlsplit(u) for u in self.endpoints]
        if len(hosts) == 1 and not _is_ip(hosts[0].hostname or ""):
            return f"dns:///{hosts[0].hostname}:{hosts[0].port or 2379}"
        if all(":" not in (h.hostname or "") for h in hosts):
            return "ipv4:" + ",".join(f"{h.hostname}:{h.port or 2379}" for h in hosts)
        return "ipv6:" + ",".join(f"[{h.hostname}]:{h.port or 2379}" for h in hosts)

    def describe(self) -> str:
        return ",".join(self.endpoints)


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _check_url(url: str) -> str:
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        port = -1
    host = parts.hostname or ""
    if (
        parts.scheme not in ("http", "https")
        or not host
        or port == -1
        or parts.path not in ("", "/")
        or parts.query
        or parts.username
        or not all(c.isascii() and (c.isalnum() or c in ".-:") for c in host)
    ):
        raise InvalidInput(f"--etcd: {url!r} is not an endpoint URL (http[s]://ADDR:PORT)")
    return parts.scheme


class EtcdClient(aetcd.Client):
    """aetcd's client over our own channel (several endpoints, TLS, auth)."""

    def __init__(self, options: EtcdOptions) -> None:
        password = None
        if options.password_file is not None:
            password = _read_secret(options.password_file)
        super().__init__(
            username=options.user,
            password=password,
            timeout=CALL_TIMEOUT,
            options={
                "grpc.lb_policy_name": "round_robin",
                "grpc.keepalive_time_ms": 5000,
                "grpc.keepalive_timeout_ms": 3000,
                "grpc.keepalive_permit_without_calls": 1,
                "grpc.max_receive_message_length": 8 * MAX_VALUE_BYTES,
                "grpc.initial_reconnect_backoff_ms": 200,
                "grpc.max_reconnect_backoff_ms": 2000,
                "grpc.enable_retries": 1,
                "grpc.service_config": RETRY_CONFIG,
            },
        )
        self.fleet_options = options

    async def connect(self) -> None:
        if self._connected.is_set():
            return
        target = self.fleet_options.target()
        options = list(self._options.items())
        if self.fleet_options.tls:
            self.channel = rpc.secure_channel(target, _credentials(self.fleet_options), options)
        else:
            self.channel = rpc.insecure_channel(target, options=options)
        if self._username is not None:
            self.auth_stub = rpc.AuthStub(self.channel)
            request = rpc.AuthenticateRequest(name=self._username, password=self._password)
            try:
                reply = await self.auth_stub.Authenticate(request, timeout=self._timeout)
            except rpc.AioRpcError as err:
                await self.channel.close()
                aetcd.exceptions._handle_exception(err)
            self.metadata = (("token", reply.token),)
        self.kvstub = rpc.KVStub(self.channel)
        self.clusterstub = rpc.ClusterStub(self.channel)
        self.leasestub = rpc.LeaseStub(self.channel)
        self.maintenancestub = rpc.MaintenanceStub(self.channel)
        self._watcher = watcher.Watcher(
            rpc.WatchStub(self.channel), timeout=self._timeout, metadata=self.metadata
        )
        self._connected.set()

    async def range_at(
        self, prefix: str, revision: int = 0, *, last: bool = False
    ) -> rpc.RangeResponse:
        """Every key under `prefix` as of `revision` (0: now), in key order, one consistent
        read (aetcd's own get_prefix cannot ask for a revision); `last`: only the last key."""
        await self.connect()
        key = prefix.encode()
        request = rpc.RangeRequest(
            key=key, range_end=aetcd.utils.prefix_range_end(key), revision=revision
        )
        if last:
            request.limit = 1
            request.sort_order = rpc.RangeRequest.DESCEND
            request.sort_target = rpc.RangeRequest.KEY
        return await self._call(self.kvstub.Range, request)

    async def get_at(self, key: str, revision: int = 0) -> rpc.RangeResponse:
        await self.connect()
        return await self._call(
            self.kvstub.Range, rpc.RangeRequest(key=key.encode(), revision=revision)
        )

    async def txn(self, compare: list[Any], success: list[Any]) -> tuple[bool, int]:
        """One transaction: did its comparisons hold, and the revision after it."""
        await self.connect()
        request = rpc.TxnRequest(
            compare=[c.build_message() for c in compare],
            success=self._ops_to_requests(success),
            failure=[],
        )
        reply = await self._call(self.kvstub.Txn, request)
        return reply.succeeded, reply.header.revision

    async def _call(self, method: Any, request: Any) -> Any:
        try:
            return await method(request, timeout=self._timeout, metadata=self.metadata)
        except rpc.AioRpcError as err:
            if err.code() == grpc.StatusCode.OUT_OF_RANGE:  # a compacted revision
                raise aetcd.exceptions.RevisionCompactedError(0) from None
            aetcd.exceptions._handle_exception(err)
            raise


def _read_secret(path: Path) -> str:
    try:
        return path.read_text().strip()
    except OSError as err:
        raise InvalidInput(f"--etcd-password-file {path}: {err.strerror}") from None


def _credentials(options: EtcdOptions) -> grpc.ChannelCredentials:
    def read(path: Path | None) -> bytes | None:
        if path is None:
            return None
        try:
            return path.read_bytes()
        except OSError as err:
            raise InvalidInput(f"{path}: {err.strerror}") from None

    return grpc.ssl_channel_credentials(
        root_certificates=read(options.cacert),
        private_key=read(options.key),
        certificate_chain=read(options.cert),
    )


@contextlib.asynccontextmanager
async def connected(options: EtcdOptions) -> AsyncIterator[EtcdClient]:
    """A client whose first call succeeded; etcd's errors, then and later, become ours:
    no member answering is ComponentMissing, a refused login or permission InvalidInput."""
    client = EtcdClient(options)
    try:
        try:
            await client.status()
            yield client
        except Unavailable as err:
            raise ComponentMissing(
                f"etcd at {options.describe()} does not answer ({_reason(err)})"
            ) from None
        except aetcd.exceptions.ClientError as err:
            if _refused(err):
                raise InvalidInput(
                    f"etcd at {options.describe()} refused the login or the request: "
                    f"{_reason(err)} (see --etcd-user, --etcd-password-file)"
                ) from None
            raise OpError(f"etcd at {options.describe()}: {_reason(err)}") from None
    finally:
        with contextlib.suppress(Exception):
            await client.close()


def _refused(err: Exception) -> bool:
    text = str(err).lower()
    return isinstance(err, aetcd.exceptions.UnauthenticatedError) or any(
        word in text for word in ("authentication", "user name is empty", "permission denied")
    )


def _reason(err: Exception) -> str:
    text = str(err).strip().splitlines()
    return text[0][:200] if text else "no reply"


def decode(value: bytes, what: str) -> Any:
    """A JSON value read from etcd, bounded; InvalidInput names the key when it is not."""
    if len(value) > MAX_VALUE_BYTES:
        raise InvalidInput(f"{what}: larger than {MAX_VALUE_BYTES} bytes")
    try:
        return json.loads(value)
    except (ValueError, UnicodeDecodeError) as err:
        raise InvalidInput(f"{what}: not JSON ({err})") from None


def encode(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()
