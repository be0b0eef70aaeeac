"""The scoring gateway: the gRPC front door that core banking systems call."""
