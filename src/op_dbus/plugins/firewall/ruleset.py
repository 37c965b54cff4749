"""The firewall section as nftables JSON, and back: pure logic, no nft here.

op-dbus owns two tables, `inet op-dbus` (the input filter) and `ip op-dbus-nat` (port
forwards and masquerade), and nothing else. `render` replaces both whole in one transaction
(`add` + `delete` makes each exist before it goes, then the new contents), so foreign tables
and rules are never part of a change. Each rule carries the field it comes from as its comment;
`parse` reads the entries back from the rules' expressions, then renders them again: whatever
in our tables differs from that rendering (a rule edited or added by hand) is listed as
`unrecognised`, which the diff treats as drift.
"""

from __future__ import annotations

from typing import Any

FILTER = ("inet", "op-dbus")
NAT = ("ip", "op-dbus-nat")
TABLES = {FILTER, NAT}
RULESET_FIELDS = (
    "enable",
    "masquerade",
    "allow_tcp",
    "allow_udp",
    "trusted_interfaces",
    "forward_ports",
)
"""The fields the nftables transaction carries (`forward` is the ip_forward sysctl)."""
LIST_FIELDS = RULESET_FIELDS[1:]
BASE = "base"
"""Comment of the input filter's fixed rules: replies, loopback, ICMP (as NixOS allows ping)."""
CHAINS: dict[tuple[str, str], dict[str, Any]] = {
    (FILTER[1], "input"): {"type": "filter", "hook": "input", "prio": 0, "policy": "drop"},
    (NAT[1], "prerouting"): {"type": "nat", "hook": "prerouting", "prio": -100, "policy": "accept"},
    (NAT[1], "postrouting"): {
        "type": "nat",
        "hook": "postrouting",
        "prio": 100,
        "policy": "accept",
    },
}
ACCEPT = {"accept": None}


def empty_section() -> dict[str, Any]:
    """What the host has with neither of our tables: nothing filtered, nothing translated."""
    return {"enable": False, **{field: [] for field in LIST_FIELDS}}


def _table(family_name: tuple[str, str]) -> dict[str, Any]:
    return {"table": {"family": family_name[0], "name": family_name[1]}}


def _match(left: dict[str, Any], right: Any, op: str = "==") -> dict[str, Any]:
    return {"match": {"op": op, "left": left, "right": right}}


def _meta(key: str) -> dict[str, Any]:
    return {"meta": {"key": key}}


def _port(proto: str, port: int) -> dict[str, Any]:
    return _match({"payload": {"protocol": proto, "field": "dport"}}, port)


def _source(cidr: str) -> dict[str, Any]:
    address, length = cidr.split("/")
    right: Any = address if length == "32" else {"prefix": {"addr": address, "len": int(length)}}
    return _match({"payload": {"protocol": "ip", "field": "saddr"}}, right)


def _dnat(target: str) -> dict[str, Any]:
    address, _, port = target.partition(":")
    return {"dnat": {"addr": address, **({"port": int(port)} if port else {})}}


def _base_rules() -> list[list[dict[str, Any]]]:
    return [
        [_match({"ct": {"key": "state"}}, ["established", "related"], "in"), ACCEPT],
        [_match(_meta("iifname"), "lo"), ACCEPT],
        [_match(_meta("l4proto"), "icmp"), ACCEPT],
        [_match(_meta("l4proto"), "ipv6-icmp"), ACCEPT],
    ]


def rules_of(section: dict[str, Any]) -> list[tuple[str, str, str, list[dict[str, Any]]]]:
    """(table, chain, comment, expressions) of every rule `section` stands for, in order."""
    rules: list[tuple[str, str, str, list[dict[str, Any]]]] = []
    if section.get("enable"):
        rules += [(FILTER[1], "input", BASE, expr) for expr in _base_rules()]
        for name in section.get("trusted_interfaces") or []:
            rules.append(
                (FILTER[1], "input", "trusted_interfaces", [_match(_meta("iifname"), name), ACCEPT])
            )
        for proto in ("tcp", "udp"):
            for port in section.get(f"allow_{proto}") or []:
                rules.append((FILTER[1], "input", f"allow_{proto}", [_port(proto, port), ACCEPT]))
    for entry in section.get("forward_ports") or []:
        expr = (
            [_match(_meta("iifname"), entry["in_interface"])] if entry.get("in_interface") else []
        )
        expr += [_port(entry["proto"], entry["port"]), _dnat(entry["to"])]
        rules.append((NAT[1], "prerouting", "forward_ports", expr))
    for entry in section.get("masquerade") or []:
        expr = [_source(entry["source"])]
        if entry.get("out_interface"):
            expr.append(_match(_meta("oifname"), entry["out_interface"]))
        rules.append((NAT[1], "postrouting", "masquerade", [*expr, {"masquerade": None}]))
    return rules


def chains_of(section: dict[str, Any]) -> list[tuple[str, str]]:
    """(table, chain) of the chains `section` needs: the filter's when enabled, NAT's when used."""
    chains = [(FILTER[1], "input")] if section.get("enable") else []
    if section.get("forward_ports") or section.get("masquerade"):
        chains += [(NAT[1], "prerouting"), (NAT[1], "postrouting")]
    return chains


def render(section: dict[str, Any]) -> list[dict[str, Any]]:
    """One transaction's commands: both our tables dropped, then what `section` needs."""
    commands: list[dict[str, Any]] = []
    for pair in (FILTER, NAT):
        commands += [{"add": _table(pair)}, {"delete": _table(pair)}]
    chains = chains_of(section)
    families = {FILTER[1]: FILTER[0], NAT[1]: NAT[0]}
    for table in dict.fromkeys(t for t, _ in chains):
        commands.append({"add": _table((families[table], table))})
        for chain_table, chain in chains:
            if chain_table == table:
                body = {"family": families[table], "table": table, "name": chain}
                commands.append({"add": {"chain": body | CHAINS[table, chain]}})
    for table, chain, comment, expr in rules_of(section):
        body = {"family": families[table], "table": table, "chain": chain}
        commands.append({"add": {"rule": body | {"comment": comment, "expr": expr}}})
    return commands


def _value(expr: list[dict[str, Any]], left: dict[str, Any]) -> Any:
    """The right side of the `==` match on `left` in a rule's expressions, or None."""
    for item in expr:
        match = item.get("match")
        if isinstance(match, dict) and match.get("op") == "==" and match.get("left") == left:
            return match.get("right")
    return None


def _dport(expr: list[dict[str, Any]], proto: str) -> Any:
    return _value(expr, {"payload": {"protocol": proto, "field": "dport"}})


def _entry(comment: str, expr: list[dict[str, Any]]) -> tuple[str, Any] | None:
    """(field, entry) a rule of ours stands for, or None when its comment names no field."""
    if comment == "trusted_interfaces":
        return comment, _value(expr, _meta("iifname"))
    if comment in ("allow_tcp", "allow_udp"):
        return comment, _dport(expr, comment.removeprefix("allow_"))
    if comment == "masquerade":
        source = _value(expr, {"payload": {"protocol": "ip", "field": "saddr"}})
        if isinstance(source, dict):
            prefix = source.get("prefix") or {}
            source = f"{prefix.get('addr')}/{prefix.get('len')}"
        elif isinstance(source, str):
            source = f"{source}/32"
        out = _value(expr, _meta("oifname"))
        return comment, {"source": source} | ({"out_interface": out} if out else {})
    if comment == "forward_ports":
        proto = next((p for p in ("tcp", "udp") if _dport(expr, p) is not None), None)
        dnat: dict[str, Any] = next(
            (i["dnat"] for i in expr if isinstance(i.get("dnat"), dict)), {}
        )
        target = str(dnat.get("addr")) + (f":{dnat['port']}" if "port" in dnat else "")
        entry = {"proto": proto, "port": _dport(expr, proto or ""), "to": target}
        iif = _value(expr, _meta("iifname"))
        return comment, entry | ({"in_interface": iif} if iif else {})
    return None


def _describe(kind: str, body: dict[str, Any]) -> str:
    where = f"{body.get('family')} {body.get('table')}"
    if kind == "chain":
        return f"chain {where} {body.get('name')}"
    comment = body.get("comment") or "no comment"
    return f"rule {where} {body.get('chain')} handle {body.get('handle')} ({comment})"


def _rule_for(field: str, entry: Any) -> tuple[str, str, str, list[dict[str, Any]]]:
    """The one rule `entry` of `field` renders to."""
    return rules_of({"enable": True, field: [entry]})[-1]


def parse(objects: list[dict[str, Any]]) -> dict[str, Any]:
    """The section our tables' objects (nft -j list output) stand for, plus `unrecognised`:
    each chain or rule that the section would not render (empty when all are ours). A rule
    counts as an entry only when that entry renders back to exactly this rule."""
    section = empty_section()
    unrecognised: list[str] = []
    chains: dict[tuple[str, str], dict[str, Any]] = {}
    kept: list[tuple[str, str, str, list[dict[str, Any]]]] = []
    for obj in objects:
        ((kind, body),) = obj.items()
        if kind == "chain":
            chains[body["table"], body["name"]] = body
        if kind != "rule":
            continue
        rule = (body["table"], body["chain"], str(body.get("comment")), body.get("expr") or [])
        found = _entry(rule[2], rule[3])
        if rule[2] == BASE:
            kept.append(rule)
        elif found is not None and _rule_for(*found) == rule:
            section[found[0]].append(found[1])
            kept.append(rule)
        else:
            unrecognised.append(_describe("rule", body))
    section["enable"] = chains.get((FILTER[1], "input"), {}).get("policy") == "drop"
    expected_chains = chains_of(section)
    unrecognised += [
        _describe("chain", body)
        for key, body in chains.items()
        if key not in expected_chains or {k: body.get(k) for k in CHAINS[key]} != CHAINS[key]
    ]
    if kept != rules_of(section):
        unrecognised.append("rules other than or in another order than the section's")
    return section | {"unrecognised": unrecognised}
