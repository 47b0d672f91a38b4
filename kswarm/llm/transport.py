"""An httpx transport over aiohttp's connection pool, so one client can keep 1,000 calls in flight.

The model client is an ``httpx.AsyncClient`` (one per process, its API everywhere), but httpx's
own pool (httpcore 1.0) re-scans every connection for every queued request on every state
change: the cost is quadratic in the requests in flight. Measured here, 500 concurrent requests
to a trivial loopback server took 6 to 19 s through httpcore against 0.25 to 0.5 s through
aiohttp, and cold connections hit the 5 s connect timeout (the known issue is encode/httpx#3215,
still open). A swarm keeps hundreds of model calls in flight, so the default client sends its
bytes through this transport: httpx builds the request, applies timeouts and reads the response;
aiohttp's ``TCPConnector`` holds the keep-alive connections.

Errors are translated into httpx's own exceptions (``ConnectError``, ``ConnectTimeout``,
``ReadTimeout``, ``ReadError``, ``RemoteProtocolError``), so callers see httpx behaviour only.

A non-streamed chat call, the hot path of a swarm, skips httpx altogether
(:meth:`AiohttpTransport.post`): building an ``httpx.Request``, wrapping the answer in an
``httpx.Response`` and decoding it cost as much CPU as aiohttp's own work (a third of a model
call in the worker's profile). Same connections, same timeouts, the same httpx exceptions.
"""

from __future__ import annotations

import codecs
import zlib
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass

import aiohttp
import httpx

__all__ = ["AiohttpTransport", "RawResponse"]


@dataclass(frozen=True, slots=True)
class RawResponse:
    """A whole answer read by :meth:`AiohttpTransport.post`."""

    status: int
    headers: Mapping[str, str]
    """Case-insensitive, as aiohttp gives them."""
    body: bytes
    charset: str | None = None

    @property
    def text(self) -> str:
        """The body as text, decoded as httpx does (the charset named, else UTF-8)."""
        if not self.body:
            return ""
        encoding = self.charset or "utf-8"
        try:
            codecs.lookup(encoding)
        except LookupError:
            encoding = "utf-8"
        return self.body.decode(encoding, errors="replace")


def _decoded(body: bytes, content_encoding: str | None) -> bytes:
    """``body`` without the ``Content-Encoding`` a server applied although none was asked for."""
    coding = (content_encoding or "identity").strip().lower()
    if coding in ("identity", ""):
        return body
    if coding in ("gzip", "x-gzip"):
        return zlib.decompress(body, zlib.MAX_WBITS | 16)
    if coding == "deflate":
        try:
            return zlib.decompress(body)
        except zlib.error:
            return zlib.decompress(body, -zlib.MAX_WBITS)
    raise ValueError(f"unsupported Content-Encoding {coding!r}")


def _translate(error: BaseException, request: httpx.Request) -> httpx.TransportError:
    """The httpx exception that means what ``error`` means."""
    text = str(error) or type(error).__name__
    if isinstance(error, aiohttp.ConnectionTimeoutError):
        return httpx.ConnectTimeout(text, request=request)
    if isinstance(error, aiohttp.ServerTimeoutError | TimeoutError):
        return httpx.ReadTimeout(text, request=request)
    if isinstance(error, aiohttp.ClientConnectorError):
        return httpx.ConnectError(text, request=request)
    if isinstance(error, aiohttp.ServerDisconnectedError | aiohttp.ClientPayloadError):
        return httpx.RemoteProtocolError(text, request=request)
    return httpx.ReadError(text, request=request)


class _ResponseStream(httpx.AsyncByteStream):
    def __init__(self, response: aiohttp.ClientResponse, request: httpx.Request) -> None:
        self._response = response
        self._request = request

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._response.content.iter_any():
                yield chunk
        except (TimeoutError, aiohttp.ClientError) as e:
            raise _translate(e, self._request) from e

    async def aclose(self) -> None:
        self._response.release()


class AiohttpTransport(httpx.AsyncBaseTransport):
    """Sends httpx requests through one ``aiohttp.ClientSession`` (created on first use)."""

    def __init__(
        self,
        *,
        max_connections: int = 1024,
        keepalive_expiry: float = 30.0,
        trust_env: bool = False,
    ) -> None:
        self._max_connections = max_connections
        self._keepalive_expiry = keepalive_expiry
        self._trust_env = trust_env
        self._session: aiohttp.ClientSession | None = None

    def _open(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(
                limit=self._max_connections,
                limit_per_host=0,
                keepalive_timeout=self._keepalive_expiry,
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                trust_env=self._trust_env,
                auto_decompress=False,  # httpx decodes Content-Encoding itself
                skip_auto_headers=("User-Agent", "Accept-Encoding", "Content-Type"),
            )
        return self._session

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        timeout = request.extensions.get("timeout", {})
        body = await request.aread()
        try:
            response = await self._open().request(
                request.method,
                str(request.url),
                headers=request.headers.multi_items(),
                data=body or None,
                allow_redirects=False,
                timeout=aiohttp.ClientTimeout(
                    connect=timeout.get("pool"),
                    sock_connect=timeout.get("connect"),
                    sock_read=timeout.get("read"),
                ),
            )
        except (TimeoutError, aiohttp.ClientError) as e:
            raise _translate(e, request) from e
        return httpx.Response(
            status_code=response.status,
            headers=[(k.decode("latin-1"), v.decode("latin-1")) for k, v in response.raw_headers],
            stream=_ResponseStream(response, request),
            extensions={
                "http_version": b"HTTP/1.1",
                "reason_phrase": (response.reason or "").encode(),
            },
            request=request,
        )

    async def post(
        self, url: str, *, content: bytes, headers: dict[str, str], timeouts: httpx.Timeout
    ) -> RawResponse:
        """POST ``content`` to ``url`` and read the whole answer, without httpx's request and
        response objects; errors are the httpx exceptions :meth:`handle_async_request` raises
        (a body that cannot be decoded is an ``httpx.DecodingError``)."""
        try:
            response = await self._open().request(
                "POST",
                url,
                headers=headers,
                data=content,
                allow_redirects=False,
                timeout=aiohttp.ClientTimeout(
                    connect=timeouts.pool, sock_connect=timeouts.connect, sock_read=timeouts.read
                ),
            )
            try:
                body = await response.read()
            finally:
                response.release()
        except (TimeoutError, aiohttp.ClientError) as e:
            raise _translate(e, httpx.Request("POST", url)) from e
        try:
            body = _decoded(body, response.headers.get("Content-Encoding"))
        except (ValueError, zlib.error) as e:
            raise httpx.DecodingError(str(e), request=httpx.Request("POST", url)) from e
        return RawResponse(response.status, response.headers, body, response.charset)

    async def aclose(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            await session.close()
