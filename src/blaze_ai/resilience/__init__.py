"""Time, deadlines, breakers and retries: the building blocks of the gateway's resilience."""
