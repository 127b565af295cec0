"""NaN and Infinity (JSON extensions Python's parser accepts) are refused as such, naming the field
(issue 11: ``temperature: NaN`` was refused with "less than or equal to 2")."""

from __future__ import annotations

import httpx
import pytest

MESSAGES = '[{"role": "user", "content": "hi"}]'


@pytest.mark.parametrize("value", ["NaN", "Infinity", "-Infinity"])
@pytest.mark.parametrize("field", ["temperature", "top_p", "presence_penalty", "frequency_penalty"])
async def test_non_finite_sampling_values_are_a_400_naming_the_field(
    http: httpx.AsyncClient, field: str, value: str
) -> None:
    body = f'{{"model": "tiny", "messages": {MESSAGES}, "max_tokens": 2, "{field}": {value}}}'
    response = await http.post(
        "/v1/chat/completions", content=body, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["param"] == field
    assert "finite" in error["message"]
