"""End to end: the embedded digits model through the real server and the official openai client.

An SVM trained on scikit-learn's digits (the model's own training data) labels the generated
images; the images are 8x8 digits enlarged 8 times with nearest-neighbour sampling, so
averaging each 8x8 block gives the model's own pixels back.
"""

from __future__ import annotations

import base64
import io
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import openai
import pytest
from PIL import Image
from sklearn.datasets import load_digits
from sklearn.svm import SVC

from blaze_ai.devtools.server import BlazeServer

PER_DIGIT = 4


@pytest.fixture(scope="module")
def client(embedded_server: BlazeServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{embedded_server.base_url}/v1", api_key="unused", max_retries=0)


@pytest.fixture(scope="module")
def classifier() -> SVC:
    digits = load_digits()
    return SVC(gamma=0.001).fit(digits.data, digits.target)


def generate(client: openai.OpenAI, prompt: str, **extra: object) -> list[bytes]:
    response = client.images.generate(
        model="digits",
        prompt=prompt,
        n=PER_DIGIT,
        response_format="b64_json",
        size="64x64",  # type: ignore[arg-type]
        extra_body=extra or None,
    )
    assert response.data is not None
    return [base64.b64decode(item.b64_json or "") for item in response.data]


def features(png: bytes) -> np.ndarray:
    """A 64x64 PNG -> the 64 pixel values of the 8x8 digit, 0-16 like load_digits."""
    image = Image.open(io.BytesIO(png))
    assert image.format == "PNG" and image.size == (64, 64)
    gray = np.asarray(image.convert("L"), dtype=np.float64)
    return (gray.reshape(8, 8, 8, 8).mean(axis=(1, 3)) / 255.0 * 16.0).reshape(64)


def test_a_handwritten_digit_3_gives_four_64x64_pngs(
    client: openai.OpenAI, classifier: SVC
) -> None:
    pngs = generate(client, "a handwritten digit 3")
    assert len(pngs) == 4
    labels = classifier.predict(np.stack([features(png) for png in pngs]))
    assert (labels == 3).sum() >= 3, labels


def test_classifier_recognises_the_requested_digit(client: openai.OpenAI, classifier: SVC) -> None:
    prompts = [f"a handwritten digit {d}" for d in range(10)]
    with ThreadPoolExecutor(max_workers=10) as pool:  # concurrent: micro-batched together
        results = list(pool.map(lambda p: generate(client, p), prompts))
    wanted = np.repeat(np.arange(10), PER_DIGIT)
    found = classifier.predict(np.stack([features(png) for pngs in results for png in pngs]))
    accuracy = float((found == wanted).mean())
    assert accuracy >= 0.8, (accuracy, found.reshape(10, PER_DIGIT))


def test_the_same_seed_gives_byte_identical_images(client: openai.OpenAI) -> None:
    first = generate(client, "seven", seed=1234)
    again = generate(client, "seven", seed=1234)
    other = generate(client, "seven", seed=4321)
    assert first == again
    assert first != other
    assert len(set(first)) == PER_DIGIT  # image i uses seed + i
