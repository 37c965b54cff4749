"""The firewall section: nftables tables of its own and IP forwarding."""
