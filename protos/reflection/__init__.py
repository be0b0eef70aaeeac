"""gRPC server reflection, v1 and v1alpha, for scoregate's grpc.aio servers."""
