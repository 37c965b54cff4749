"""`op-dbus run`: the daemon that keeps the host converged, answers on D-Bus and caches state.

service.py runs it; reconcile.py decides what to do about drift; the plugins' watchers turn
backend events into "look at plugin X again" and watchers/ supervises them; dbus_api.py is
org.opdbus, callers.py its gate and parsing.py where callers' documents are parsed; notify.py
and lock.py talk to systemd and keep one daemon per data dir.
"""
