"""The gateway: admission, model resolution and deployment choice, between the API and engines."""

from blaze_ai.gateway.gateway import Gateway
from blaze_ai.gateway.models import Deployment, ModelGroup

__all__ = ["Deployment", "Gateway", "ModelGroup"]
