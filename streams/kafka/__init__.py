"""Kafka plumbing: clients, topics, the outbox, dead letters, the registry topic, brokers."""
