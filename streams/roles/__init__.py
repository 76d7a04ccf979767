"""The stream processors of riverops: one module per role, its pure core and its spec."""
