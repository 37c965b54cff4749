"""The firewall section's drift events: nftables' own change notifications, no polling.

A raw NETLINK_NETFILTER socket joined to the NFNLGRP_NFTABLES group hears every committed
change to any table of this netns (what `nft monitor` listens to). Messages are not parsed:
any of them may concern our tables, and the reconciler re-reads them anyway. The ip_forward
sysctl sends no event; the daemon's safety poll covers it.
"""

from __future__ import annotations

import socket
from collections.abc import Callable

from op_dbus.native.nlevents import listen
from op_dbus.plugins.base import Changed, Session, Watch, WatchContext

NETLINK_NETFILTER = 12
NFNLGRP_NFTABLES = 7
SOL_NETLINK = 270
NETLINK_ADD_MEMBERSHIP = 1


def nftables_session(changed: Changed) -> Session:
    async def session(connected: Callable[[], None]) -> None:
        sock = socket.socket(
            socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_NONBLOCK, NETLINK_NETFILTER
        )
        try:
            sock.bind((0, 0))
            sock.setsockopt(SOL_NETLINK, NETLINK_ADD_MEMBERSHIP, NFNLGRP_NFTABLES)
        except OSError:
            sock.close()
            raise
        await listen(sock, lambda _: changed("nftables ruleset"), connected)

    return session


def watches(ctx: WatchContext) -> list[Watch]:
    return [Watch("nftables", nftables_session, True)]
