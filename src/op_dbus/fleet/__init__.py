"""Fleet mode: many hosts converge from desired state kept in etcd v3 (docs/fleet.md).

`keys` is the key layout, `store` the etcd connection, `desired` what one host should be,
`agent` the front end `op-dbus run --fleet` runs beside the daemon, `probe` its check after
a try, and `admin`, `rollout`, `audit` what `op-dbus fleet` does.
"""
