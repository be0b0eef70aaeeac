"""``make bench``: scoregate's paths beside their floors and anchors, measured in one run.

Rows: onnxruntime in process (one row; a batch of 1,000), a bare ``grpc.aio`` echo, the runtime
called directly over OIP v2, a naive ``grpc.aio`` pass-through proxy in front of it, the gateway
with lineage off and on, and ScoreBatch with lineage on. Each network row is driven by a separate
load-generator process (``loadgen``) sending pre-encoded requests with an async client, one at a
time and then many in flight, while the servers' CPU time is read before and after.
"""
