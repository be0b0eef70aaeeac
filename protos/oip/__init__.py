"""The Open Inference Protocol, as scoregate's runtimes serve it and its gateway calls it."""
