"""The lineage store: decision records received over OTLP, kept, and answered to risk teams."""
