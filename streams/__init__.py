"""Stream processing of riverops: settings, topics, the embedded broker, processors, the CLI."""
