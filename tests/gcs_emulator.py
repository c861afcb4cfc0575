"""An in-memory Google Cloud Storage emulator for offline tests (tests/test_bucket.py).

gcp-storage-emulator serves the JSON API that gcsfs and TensorStore's GCS driver speak, but it
ignores the generation preconditions and does not send the `x-goog-generation` header with
downloads. TensorStore needs both: Orbax's OCDBT checkpoints update their manifest by
compare-and-swap on the object generation. `start()` wraps the emulator's handlers to add them,
as GCS documents them: a download returns its generation in `x-goog-generation`, and
`ifGenerationMatch` (0 = must not exist) / `ifGenerationNotMatch` answer 412 / 304.
`writes` records the name and size of every object written (how much a run uploads).
"""

from __future__ import annotations

import json
import logging
import socket
import urllib.parse
import urllib.request
from http import HTTPStatus

from gcp_storage_emulator import server as emulator_server
from gcp_storage_emulator import storage as emulator_storage
from gcp_storage_emulator.exceptions import NotFound
from gcp_storage_emulator.handlers import objects


def _generation(storage, bucket: str, name: str) -> str:
  try:
    return str(storage.get_file_obj(bucket, name)["generation"])
  except NotFound:
    return "0"


def _conditional(request, response, storage, bucket: str, name: str) -> bool:
  """Applies the generation preconditions; False when they answered the request."""
  current = _generation(storage, bucket, name)
  match = request.query.get("ifGenerationMatch", [None])[0]
  not_match = request.query.get("ifGenerationNotMatch", [None])[0]
  if match is not None and match != current:
    response.status = HTTPStatus.PRECONDITION_FAILED
    return False
  if not_match is not None and not_match == current:
    response.status = HTTPStatus.NOT_MODIFIED if current != "0" else HTTPStatus.NOT_FOUND
    if current != "0":
      response["x-goog-generation"] = current
    return False
  return True


def _download(handler):
  def wrapped(request, response, storage, *args, **kwargs):
    bucket, name = request.params["bucket_name"], request.params["object_id"]
    if _conditional(request, response, storage, bucket, name):
      handler(request, response, storage, *args, **kwargs)
      generation = _generation(storage, bucket, name)
      if generation != "0":
        response["x-goog-generation"] = generation

  return wrapped


def _upload(handler):
  def wrapped(request, response, storage, *args, **kwargs):
    name = request.query.get("name", [None])[0]
    if name is None or _conditional(request, response, storage, request.params["bucket_name"], name):
      handler(request, response, storage, *args, **kwargs)

  return wrapped


_WRAPPERS = {objects.get: _download, objects.download: _download, objects.insert: _upload}
_patched = False
writes: list[tuple[str, int]] = []  # (object name, bytes) of every object written, in order


def _recorded(create_file):
  def wrapped(self, bucket_name, file_name, content, *args, **kwargs):
    writes.append((file_name, len(content)))
    return create_file(self, bucket_name, file_name, content, *args, **kwargs)

  return wrapped


def _patch_handlers() -> None:
  global _patched
  if _patched:
    return
  for _, handlers in emulator_server.HANDLERS:
    for method, handler in list(handlers.items()):
      if handler in _WRAPPERS:
        handlers[method] = _WRAPPERS[handler](handler)
  emulator_storage.Storage.create_file = _recorded(emulator_storage.Storage.create_file)
  _patched = True


def start(bucket: str):
  """Starts an emulator holding the empty `bucket` on a free localhost port; returns (server, url)."""
  _patch_handlers()
  logging.getLogger("gcp_storage_emulator").setLevel(logging.CRITICAL)  # it logs every 404 as an error
  with socket.socket() as s:
    s.bind(("localhost", 0))
    port = s.getsockname()[1]
  server = emulator_server.create_server("localhost", port, in_memory=True, default_bucket=bucket)
  server.start()
  server._api._httpd.handle_error = lambda request, address: None  # clients that hang up early are fine
  return server, f"http://localhost:{port}"


def list_objects(url: str, bucket: str, prefix: str) -> list[str]:
  """The names of the objects under `prefix`, through the JSON API (no client library)."""
  names, token = [], None
  while True:
    query = {"prefix": prefix, **({"pageToken": token} if token else {})}
    with urllib.request.urlopen(f"{url}/storage/v1/b/{bucket}/o?{urllib.parse.urlencode(query)}") as response:
      page = json.loads(response.read())
    names += [item["name"] for item in page.get("items", [])]
    token = page.get("nextPageToken")
    if not token:
      return names


def read_object(url: str, bucket: str, name: str) -> bytes:
  quoted = urllib.parse.quote(name, safe="")
  with urllib.request.urlopen(f"{url}/storage/v1/b/{bucket}/o/{quoted}?alt=media") as response:
    return response.read()
