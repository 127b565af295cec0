"""The names of the attributes and spans Blaze's traces carry.

The GenAI ones follow the OpenTelemetry GenAI semantic conventions
(https://opentelemetry.io/docs/specs/semconv/gen-ai/gen-ai-spans/); they are spelled here
because the installed ``opentelemetry-semantic-conventions`` marks its ``gen_ai`` module as
moved to the GenAI conventions' own repository. The ``blaze.*`` ones are Blaze's own.
"""

from __future__ import annotations

GEN_AI_OPERATION_NAME = "gen_ai.operation.name"
GEN_AI_PROVIDER_NAME = "gen_ai.provider.name"
GEN_AI_REQUEST_MODEL = "gen_ai.request.model"
GEN_AI_RESPONSE_MODEL = "gen_ai.response.model"
GEN_AI_REQUEST_MAX_TOKENS = "gen_ai.request.max_tokens"
GEN_AI_REQUEST_TEMPERATURE = "gen_ai.request.temperature"
GEN_AI_REQUEST_TOP_P = "gen_ai.request.top_p"
GEN_AI_REQUEST_SEED = "gen_ai.request.seed"
GEN_AI_REQUEST_CHOICE_COUNT = "gen_ai.request.choice.count"
GEN_AI_USAGE_INPUT_TOKENS = "gen_ai.usage.input_tokens"
GEN_AI_USAGE_OUTPUT_TOKENS = "gen_ai.usage.output_tokens"
GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS = "gen_ai.usage.cache_read.input_tokens"
GEN_AI_RESPONSE_FINISH_REASONS = "gen_ai.response.finish_reasons"

PROVIDER = "blaze"
"""``gen_ai.provider.name`` of every server span."""
OPERATIONS = {
    "/v1/chat/completions": "chat",
    "/v1/completions": "text_completion",
    "/v1/embeddings": "embeddings",
    "/v1/images/generations": "generate_content",
}
"""``gen_ai.operation.name`` per model endpoint (the GenAI conventions' well-known values)."""

REQUEST_ID = "blaze.request.id"
"""The request's ``X-Request-ID`` (also on its access-log line)."""
CACHE_HIT = "blaze.cache.hit"
"""Set (true) on the server span of a request answered from the response cache."""
ATTEMPT = "attempt"
ENGINE = "engine"
DEPLOYMENT_NAME = "blaze.deployment.name"
ATTEMPT_NUMBER = "blaze.attempt.number"
"""1 for the first try on a model, 2 for its first retry... (a fallback model starts at 1)."""
ENGINE_KIND = "blaze.engine.kind"
ATTEMPT_OUTCOME = "blaze.attempt.outcome"
"""``success``, ``error``, ``cancelled`` (the client went away) or ``ignored`` (ended without
a verdict: a stream closed early)."""
