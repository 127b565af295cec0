"""The gateway: admission, model resolution and deployment choice, between the API and engines."""

from blaze_ai.gateway.deployment import Deployment
from blaze_ai.gateway.gateway import Gateway
from blaze_ai.gateway.model_group import ModelGroup, RoutingContext

__all__ = ["Deployment", "Gateway", "ModelGroup", "RoutingContext"]
