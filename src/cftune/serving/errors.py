"""The one error a request can get: OpenAI's shape, ``{"error": {"message", "type", "param", "code"}}``."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class ApiError(Exception):
    """Raised wherever a request is found wanting; the app's one handler answers it (``response``)."""

    status: int
    message: str
    param: str | None = None
    kind: str = "invalid_request_error"  # OpenAI's "type"
    code: str | None = None

    def response(self):
        from fastapi.responses import JSONResponse

        return JSONResponse(status_code=self.status, content={"error": {
            "message": self.message, "type": self.kind, "param": self.param, "code": self.code}})
