"""The ledger: an append-only, RFC 9162 Merkle-tree log of every change, with signed checkpoints.

`merkle` is the pure math and the auditors' verifiers; `store` the SQLite log; `checkpoint`
the signed notes; `export` the offline audit file.
"""
