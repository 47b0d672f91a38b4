"""The error tree: each HTTP answer maps to the class that says whether to retry."""

from __future__ import annotations

import json

import pytest

from kswarm.errors import KswarmError
from kswarm.llm import errors


def vllm_error(message: str, status: int) -> str:
    return json.dumps({"error": {"message": message, "type": "X", "param": None, "code": status}})


@pytest.mark.parametrize(
    ("status", "body", "cls", "retryable"),
    [
        pytest.param(429, vllm_error("slow down", 429), errors.RateLimited, True, id="429"),
        pytest.param(503, vllm_error("overloaded", 503), errors.Overloaded, True, id="503"),
        pytest.param(500, vllm_error("boom", 500), errors.ServerError, True, id="500"),
        pytest.param(502, "<html>bad gateway</html>", errors.ServerError, True, id="502-html"),
        pytest.param(504, "", errors.LLMTimeout, True, id="504"),
        pytest.param(400, vllm_error("bad field", 400), errors.BadRequest, False, id="400"),
        pytest.param(422, vllm_error("bad type", 422), errors.BadRequest, False, id="422"),
        pytest.param(401, vllm_error("no key", 401), errors.BadRequest, False, id="401"),
        pytest.param(
            404,
            vllm_error("The model `x` does not exist.", 404),
            errors.ModelNotServed,
            False,
            id="404",
        ),
        pytest.param(
            400,
            vllm_error("The model `x` does not exist.", 400),
            errors.ModelNotServed,
            False,
            id="400-model-missing",
        ),
    ],
)
def test_maps_each_status_to_the_class_that_says_what_to_do(
    status: int, body: str, cls: type[errors.LLMError], retryable: bool
) -> None:
    error = errors.error_for_status(status, body, pool="p", replica="http://r")
    assert type(error) is cls
    assert error.retryable is retryable
    assert (error.pool, error.replica, error.status) == ("p", "http://r", status)


def test_every_model_error_is_a_kswarm_error() -> None:
    assert issubclass(errors.LLMError, KswarmError)
    assert issubclass(errors.ModelNotServed, errors.BadRequest)


def test_carries_retry_after_on_429_and_503() -> None:
    assert errors.error_for_status(429, "", retry_after=2.0).retry_after == 2.0  # type: ignore[attr-defined]
    assert errors.error_for_status(503, "", retry_after=1.5).retry_after == 1.5  # type: ignore[attr-defined]


def test_reads_the_message_out_of_an_openai_error_body() -> None:
    error = errors.error_for_status(400, vllm_error("messages: must be a list", 400))
    assert "messages: must be a list" in str(error)
    assert "status=400" in str(error)


def test_pool_not_found_names_the_known_pools() -> None:
    error = errors.PoolNotFound("gpu", ["default", "big"])
    assert "'gpu'" in str(error) and "big, default" in str(error)
    assert not error.retryable


def test_malformed_response_keeps_the_raw_text() -> None:
    error = errors.MalformedResponse("bad", raw='{"a": ')
    assert error.raw == '{"a": ' and error.retryable
