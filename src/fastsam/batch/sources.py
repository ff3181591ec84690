"""Which images a batch run reads: local files, folders and globs, or the same on a remote filesystem.

Each image is named by its *key*: an absolute local path, or the URI as written (``s3://bucket/dir/a.jpg``). Keys
identify images in the output (column ``path``), so a run can skip what an earlier run already wrote.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from ..io import IMAGE_EXTENSIONS, list_images
from .filesystems import local_path, remote_filesystem, scheme_of
from .storage import is_storage_error, unreachable


def list_sources(inputs: Sequence[str]) -> tuple[list[str], list[str]]:
    """Expand inputs into image keys, in order, without duplicates.

    Local inputs follow :func:`fastsam.io.list_images`: a file is taken whatever its extension, a folder gives its
    image files (non-recursive), a glob its matching image files (``**`` recurses). Remote URIs
    (``s3://bucket/prefix``) work the same way: an object is taken as is, a "folder" (prefix) gives the image
    objects directly under it, a glob (``s3://bucket/**/*.jpg``) is matched against every object under its
    fixed prefix (``*`` and ``?`` stay within one path component, ``**`` crosses them).

    Returns:
        ``(keys, problems)``: absolute local paths or URIs, and one message per input that matched nothing.

    Raises:
        StorageError: a remote store cannot be listed (unreachable endpoint, credentials, permissions).
    """
    keys: list[str] = []
    problems: list[str] = []
    seen: set[str] = set()
    for raw in inputs:
        if scheme_of(raw) is None:
            found, issues = list_images([raw])
            listed = [local_path(str(p)) for p in found]
        else:
            try:
                listed, issues = _list_remote(raw)
            except Exception as err:
                if is_storage_error(err):
                    raise unreachable(raw, err) from None
                raise
        problems.extend(issues)
        for key in listed:
            if key not in seen:
                seen.add(key)
                keys.append(key)
    return keys, problems


def _list_remote(uri: str) -> tuple[list[str], list[str]]:
    """Keys for one remote input (object, prefix or glob)."""
    from pyarrow import fs as pafs

    scheme = scheme_of(uri)
    prefix = f"{scheme}://"
    body = uri[len(prefix) :]
    magic = re.search(r"[*?\[]", body)
    if magic is None:
        fs, path = remote_filesystem(uri)
        info = fs.get_file_info(path)
        if info.type == pafs.FileType.File:
            return [uri], []
        if info.type != pafs.FileType.Directory:
            return [], [f"{uri}: no such object or prefix"]
        entries = fs.get_file_info(pafs.FileSelector(path, recursive=False))
        names = sorted(e.base_name for e in entries if e.type == pafs.FileType.File and _is_image(e.base_name))
        keys = [f"{uri.rstrip('/')}/{name}" for name in names]
        return keys, [] if keys else [f"{uri}: prefix contains no image files"]
    base = body[: magic.start()].rsplit("/", 1)[0]  # the fixed folder part before the first wildcard
    fs, path = remote_filesystem(prefix + base)
    pattern = _glob_regex(body[len(base) + 1 :])
    entries = fs.get_file_info(pafs.FileSelector(path, recursive=True, allow_not_found=True))
    keys = []
    for entry in entries:
        relative = entry.path[len(path.rstrip("/")) + 1 :]
        if entry.type == pafs.FileType.File and _is_image(entry.base_name) and pattern.fullmatch(relative):
            keys.append(f"{prefix}{base}/{relative}")
    keys.sort()
    return keys, [] if keys else [f"{uri}: pattern matched no image files"]


def _is_image(name: str) -> bool:
    return "." in name and "." + name.rsplit(".", 1)[-1].lower() in IMAGE_EXTENSIONS


def _glob_regex(pattern: str) -> re.Pattern[str]:
    """A regex for a glob over ``/``-separated paths: ``*`` ``?`` within a component, ``**`` across them."""
    out, i = [], 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif pattern[i] == "*":
            out.append("[^/]*")
            i += 1
        elif pattern[i] == "?":
            out.append("[^/]")
            i += 1
        elif pattern[i] == "[" and "]" in pattern[i + 1 :]:
            end = pattern.index("]", i + 1)
            body = pattern[i + 1 : end]
            out.append("[" + ("^" + body[1:] if body.startswith("!") else body) + "]")
            i = end + 1
        else:
            out.append(re.escape(pattern[i]))
            i += 1
    return re.compile("".join(out))
