"""scoregate's real processes on loopback.

The process launcher, the local routes, and `scoregate up` and `scoregate demo` built on them.
"""
