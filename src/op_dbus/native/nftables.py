"""nftables over its own JSON interface: `nft -j` with a JSON document on stdin, no shell.

libnftables' Python binding is a system package bound to the system python, which op-dbus's
venv is not; `nft -j -f -` is the same library behind a stable argv. One run of `nft -f` is
one netlink batch: the kernel applies all of it or none of it. IP forwarding is a sysctl file
of the calling process's network namespace, like every rule here.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from op_dbus.native.tool import ToolError, find_tool, run_tool

NFT = "nft"
TIMEOUT = 30.0
OUTPUT_MAX = 64 * 1024 * 1024
"""The most of `nft -j list ruleset` read: a host's whole rule set, bounded before parsing."""
IP_FORWARD = Path("/proc/sys/net/ipv4/ip_forward")


class NftError(Exception):
    """nft could not be run, or refused the document; the message is nft's own."""


def nft_path() -> str | None:
    """Where `nft` is on PATH, or None."""
    return shutil.which(NFT)


async def _nft(args: list[str], document: bytes | None = None) -> bytes:
    try:
        return await run_tool(
            [find_tool(NFT, "nftables"), *args],
            document,
            what=f"nft {' '.join(args)}",
            timeout=TIMEOUT,
            output_max=OUTPUT_MAX,
        )
    except ToolError as exc:
        raise NftError(str(exc)) from None


async def list_ruleset() -> list[dict[str, Any]]:
    """Every object of the rule set (`nft -j list ruleset`), metainfo left out."""
    reply = json.loads(await _nft(["-j", "list", "ruleset"]))
    return [obj for obj in reply.get("nftables", []) if "metainfo" not in obj]


def tables_of(
    ruleset: Iterable[dict[str, Any]], tables: set[tuple[str, str]]
) -> list[dict[str, Any]]:
    """The objects (tables, chains, rules, ...) that belong to `tables` ((family, name) pairs)."""
    found = []
    for obj in ruleset:
        ((kind, body),) = obj.items()
        name = body.get("name") if kind == "table" else body.get("table")
        if (body.get("family"), name) in tables:
            found.append(obj)
    return found


async def transact(commands: list[dict[str, Any]]) -> None:
    """Run `commands` (nft JSON commands: add, delete, flush...) as one transaction."""
    await _nft(["-j", "-f", "-"], json.dumps({"nftables": commands}).encode())


def ip_forward() -> bool:
    return IP_FORWARD.read_text().strip() == "1"


def set_ip_forward(on: bool) -> None:
    """Raises OSError when the sysctl cannot be written."""
    with IP_FORWARD.open("w") as sysctl:
        sysctl.write("1\n" if on else "0\n")
