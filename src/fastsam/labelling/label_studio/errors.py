"""The one error type of the Label Studio backend: a message for the person labelling, and an HTTP status."""

from __future__ import annotations

from ...errors import FastSAMError


class LabelStudioError(FastSAMError):
    """A request the backend cannot answer, said in Label Studio's terms (task, tag, label, image URL).

    Attributes:
        status: the HTTP status the backend answers with: 400 a request or labelling config it cannot use,
            422 an image it cannot read, 502 Label Studio or the image host unreachable or refusing.
    """

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status
