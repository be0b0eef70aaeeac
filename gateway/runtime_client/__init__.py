"""Model runtimes as the core sees them.

The client protocol, its OIP v2 gRPC implementation, and micro-batching.
"""
