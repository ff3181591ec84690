"""A Label Studio ML backend: interactive clicks and boxes, and pre-annotations, answered with FastSAM brush masks.

``fastsam label-studio --model ... --port 9090`` serves it (extra ``labelstudio``); add its URL under the project's
Settings > Model. :class:`FastSAMBackend` holds the logic, :func:`create_app` the HTTP side.
"""

from .backend import BackendSettings, FastSAMBackend
from .config import LabelConfig, parse_label_config
from .errors import LabelStudioError
from .images import ImageFetcher, LabelStudioAccess

__all__ = [
    "BackendSettings",
    "FastSAMBackend",
    "ImageFetcher",
    "LabelConfig",
    "LabelStudioAccess",
    "LabelStudioError",
    "create_app",
    "parse_label_config",
]


def create_app(backend: FastSAMBackend):  # -> fastapi.FastAPI (FastAPI imported only when an app is made)
    """See :func:`fastsam.labelling.label_studio.app.create_app`."""
    from .app import create_app as _create_app

    return _create_app(backend)
