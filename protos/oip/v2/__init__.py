"""OIP v2 over gRPC: the generated messages and the names scoregate adds to the protocol."""
