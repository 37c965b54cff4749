"""Plan, order, apply with checkpoint/rollback, verify: the engine wires the plugins together.

The engine never creates or closes plugins; whoever passes them in owns them.
"""
