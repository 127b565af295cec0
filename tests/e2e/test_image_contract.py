"""Contract tests of /v1/images/generations and /v1/files/images over real HTTP (the tiny
server also serves the embedded ``digits`` model)."""

from __future__ import annotations

import base64
import io
from typing import Any

import httpx
import openai
import pytest
from PIL import Image

OK = {"model": "digits", "prompt": "a handwritten digit 4", "size": "16x16", "steps": 5}


def png_size(data: bytes) -> tuple[int, int]:
    image = Image.open(io.BytesIO(data))
    assert image.format == "PNG"
    return image.size


def test_b64_json_with_openai_client(client: openai.OpenAI) -> None:
    response = client.images.generate(
        model="digits",
        prompt="a handwritten digit 4",
        n=2,
        size="32x32",  # type: ignore[arg-type]
        response_format="b64_json",
        extra_body={"steps": 5, "seed": 3},
    )
    assert response.created > 0 and response.data is not None and len(response.data) == 2
    assert [png_size(base64.b64decode(d.b64_json or "")) for d in response.data] == [(32, 32)] * 2


def test_url_is_the_default_and_serves_the_png(http: httpx.Client) -> None:
    response = http.post("/v1/images/generations", json={**OK, "n": 2, "quality": "hd"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["size"] == "16x16"
    urls = [item["url"] for item in body["data"]]
    base = str(http.base_url).rstrip("/")
    assert all(url.startswith(f"{base}/v1/files/images/") for url in urls), urls
    for url in urls:
        image = httpx.get(url, timeout=10)
        assert image.status_code == 200 and image.headers["content-type"] == "image/png"
        assert png_size(image.content) == (16, 16)


def test_unknown_image_is_a_404_in_openai_shape(http: httpx.Client) -> None:
    response = http.get("/v1/files/images/does-not-exist")
    assert response.status_code == 404
    assert set(response.json()["error"]) == {"message", "type", "param", "code"}


def test_seed_gives_byte_identical_images(http: httpx.Client) -> None:
    body = {**OK, "seed": 42, "response_format": "b64_json"}
    first = http.post("/v1/images/generations", json=body).json()["data"]
    again = http.post("/v1/images/generations", json=body).json()["data"]
    assert first[0]["b64_json"] == again[0]["b64_json"]


# (case id, body, expected param or None)
BAD: list[tuple[str, dict[str, Any], str | None]] = [
    ("n=0", {**OK, "n": 0}, "n"),
    ("n=11", {**OK, "n": 11}, "n"),
    ("seed + n - 1 past 64 bits", {**OK, "seed": 2**63 - 1, "n": 3}, "seed"),
    ("n not a number", {**OK, "n": "2"}, "n"),
    ("size 13x7", {**OK, "size": "13x7"}, "size"),
    ("size 0x0", {**OK, "size": "0x0"}, "size"),
    ("size words", {**OK, "size": "big"}, "size"),
    ("size too large", {**OK, "size": "4096x4096"}, "size"),
    ("empty prompt", {**OK, "prompt": ""}, "prompt"),
    ("blank prompt", {**OK, "prompt": "   "}, "prompt"),
    ("missing prompt", {"model": "digits"}, "prompt"),
    ("a digit model asked for a cat", {**OK, "prompt": "a cat"}, "prompt"),
    ("two digits", {**OK, "prompt": "a 3 next to a 5"}, "prompt"),
    ("missing model", {"prompt": "3"}, "model"),
    ("response_format gif", {**OK, "response_format": "gif"}, "response_format"),
    ("steps 0", {**OK, "steps": 0}, "steps"),
    ("steps over the deployment's max", {**OK, "steps": 999}, "steps"),
    ("negative seed", {**OK, "seed": -1}, "seed"),
    ("unknown scheduler", {**OK, "scheduler": "turbo"}, "scheduler"),
    ("guidance_scale 100", {**OK, "guidance_scale": 100}, "guidance_scale"),
    ("images from a text model", {**OK, "model": "tiny"}, "model"),
]


@pytest.mark.parametrize(("case", "body", "param"), BAD, ids=[c[0] for c in BAD])
def test_bad_image_requests_are_400s(
    http: httpx.Client, case: str, body: dict[str, Any], param: str | None
) -> None:
    response = http.post("/v1/images/generations", json=body)
    assert response.status_code == 400, (case, response.text)
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == "invalid_request_error"
    assert error["param"] == param, (case, error)


def test_unknown_image_model_is_404(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as info:
        client.images.generate(model="dall-e-9", prompt="3")
    assert info.value.code == "model_not_found"


def test_chat_with_an_image_model_is_a_400(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(
            model="digits", messages=[{"role": "user", "content": "draw a 3"}]
        )
    assert info.value.body["param"] == "model"  # type: ignore[index]
    assert "/v1/images/generations" in info.value.message
    with pytest.raises(openai.BadRequestError):
        client.completions.create(model="digits", prompt="3", stream=True)
