"""The OpenAI-compatible image routes: generation, and the files behind ``url`` responses."""

from __future__ import annotations

import base64
import time
from typing import Any

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel

from blaze_ai.api.disconnect import cancel_on_disconnect
from blaze_ai.api.openapi import JsonSchemaMode, error_responses
from blaze_ai.api.schemas.images import ImageGenerationRequest
from blaze_ai.api.schemas.responses import ImagesResponse
from blaze_ai.api.state import gateway_of, image_store_of, routing_of, with_cancellation
from blaze_ai.types import ImageResult

router = APIRouter()

FILES_PATH = "/v1/files/images"

DOCUMENTED_SCHEMAS: tuple[tuple[type[BaseModel], JsonSchemaMode], ...] = (
    (ImageGenerationRequest, "validation"),
)
"""The body, documented as pydantic writes it (see :class:`~blaze_ai.api.openapi.DocumentedApp`)."""


@router.post(
    "/v1/images/generations",
    response_model=ImagesResponse,
    responses=error_responses(400, 401, 403, 404, 413, 429, 500, 503, 504),
)
@with_cancellation
async def create_image(body: ImageGenerationRequest, request: Request) -> Response:
    """OpenAI image generation: ``{"created", "data": [{"url"} | {"b64_json"}], ...}``."""
    req = body.to_internal(request.state.request_id)
    request.state.log.update(model=body.model, images=body.n)
    result = await cancel_on_disconnect(
        request, gateway_of(request).generate_images(req, routing_of(request))
    )
    if body.response_format == "b64_json":
        data = [{"b64_json": base64.b64encode(png).decode("ascii")} for png in result.images]
    else:
        data = _urls(request, result)
    return JSONResponse(
        {
            "created": int(time.time()),
            "data": [{**item, "revised_prompt": None} for item in data],
            "output_format": "png",
            "size": f"{result.width}x{result.height}",
        }
    )


def _urls(request: Request, result: ImageResult) -> list[dict[str, Any]]:
    store = image_store_of(request)
    base = str(request.base_url).rstrip("/")
    return [{"url": f"{base}{FILES_PATH}/{store.put(png)}"} for png in result.images]


PNG_FILE = {
    "description": "The PNG file.",
    "content": {"image/png": {"schema": {"type": "string", "format": "binary"}}},
    "headers": {"Cache-Control": {"schema": {"type": "string"}}},
}


@router.get(
    FILES_PATH + "/{image_id}",
    response_class=Response,
    responses={
        200: PNG_FILE,
        **error_responses(described={404: "The image expired or was pushed out of the store."}),
    },
)
async def get_image(image_id: str, request: Request) -> Response:
    """A generated image returned as a ``url``; 404 once it expired or was pushed out."""
    image = image_store_of(request).get(image_id)
    if image is None:
        raise HTTPException(404, f"image {image_id[:64]!r} does not exist or has expired")
    return Response(
        image.data, media_type=image.media_type, headers={"Cache-Control": "private, max-age=60"}
    )
