"""The ScoringService edge: protobuf to the core's types and back, and errors to gRPC status."""
