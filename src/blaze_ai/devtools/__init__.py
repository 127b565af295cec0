"""Developer tools: a scriptable fake upstream for tests, benchmarks and failover demos."""
