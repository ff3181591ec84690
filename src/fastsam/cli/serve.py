"""``fastsam serve``: the web page and HTTP API."""

from __future__ import annotations

import argparse

from .common import add_debug_option, add_precision_option


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "serve",
        help="run the web page and HTTP API",
        description="Serve the FastSAM web page at / and the HTTP API at /api/v1 (OpenAPI schema at /openapi.json, "
        "docs at /docs). One model is shared by all requests; images are segmented in micro-batches and kept "
        "in memory so that prompts answer without running the network again. Needs the 'app' extra.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default: %(default)s)")
    parser.add_argument("--port", type=int, default=8000, help="port (default: %(default)s)")
    parser.add_argument("--model", default="FastSAM-x", help="model name, weights path, .onnx file or OpenVINO "
                        "folder (default: %(default)s)")  # fmt: skip
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, mps (default: %(default)s)")
    add_precision_option(parser)
    parser.add_argument("--max-upload-mb", type=float, default=25.0, help="largest upload (default: %(default)s)")
    parser.add_argument("--max-pixels", type=int, default=40_000_000, help="largest image, width x height (default: %(default)s)")
    parser.add_argument("--max-queue", type=int, default=16, help="images waiting at most before 503 (default: %(default)s)")
    parser.add_argument("--max-batch", type=int, default=4, help="images per forward pass at most (default: %(default)s)")
    parser.add_argument("--cache-mb", type=float, default=2048.0, help="memory for segmented images (default: %(default)s)")
    add_debug_option(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    try:
        import uvicorn
    except ImportError:
        raise ImportError("fastsam serve needs the 'app' extra: pip install 'fastsam[app]'") from None
    from ..server import ServerConfig, create_app

    config = ServerConfig(
        model=args.model,
        device=args.device,
        precision=args.precision,
        max_upload_bytes=int(args.max_upload_mb * 1024 * 1024),
        max_pixels=args.max_pixels,
        max_queue=args.max_queue,
        max_batch=args.max_batch,
        cache_bytes=int(args.cache_mb * 1024 * 1024),
    )
    uvicorn.run(create_app(config), host=args.host, port=args.port, log_level="debug" if args.debug else "info",
                timeout_graceful_shutdown=30)  # fmt: skip
    return 0
