"""Transport security and access control shared by scoregate's servers (gateway, lineage store).

Plain classes, no server code: ``tls`` (server credentials re-read on rotation, channel
credentials), ``principal`` (who a client certificate names), ``jwks`` and ``tokens`` (bearer
JWTs), ``authenticator`` (a call's principal from either), ``policy`` and ``policy_schema`` (the
access policy file, deny by default), ``policy_reload`` (its hot reload) and ``errors`` (each
carrying the gRPC status a caller receives). docs/security.md is the operator's reference.
"""
