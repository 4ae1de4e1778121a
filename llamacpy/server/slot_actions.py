"""POST /slots/{id_slot}?action=save|restore|erase, as llama-server (`--slot-save-path DIR`): a slot's cached
prompt (its tokens and their K/V) written to DIR/filename, read back into any slot (restoring then reusing the
prefix, even after a restart), or dropped. File names are checked as llama.cpp's fs_validate_filename does:
no path separators, no '..', no control or reserved characters."""

from __future__ import annotations

import asyncio
import os
import time

from starlette.requests import Request

from ..engine.slot_file import SlotFileError
from .errors import ApiError, bad_request
from .jsonio import JsonResponse
from .params import parse_json, read_body

FORBIDDEN = set(':*?"<>|/\\') | {"\uff0e", "\u2215", "\u2216", "\ufffd", "\ufeff"}


def valid_filename(name: str) -> bool:
    if not name or len(name.encode("utf-8", "surrogatepass")) > 255:
        return False
    for c in name:
        o = ord(c)
        if o <= 0x1F or o == 0x7F or 0x80 <= o <= 0x9F or 0xD800 <= o <= 0xDFFF or c in FORBIDDEN:
            return False
    return not (name[0] == " " or name[-1] in " .") and ".." not in name and name != "."


async def _filename(request: Request) -> str:
    body = parse_json(await read_body(request, 1 << 20))
    name = body.get("filename")
    if not isinstance(name, str):
        raise bad_request("'filename' is required")
    if not valid_filename(name):
        raise bad_request("Invalid filename")
    return name


async def slot_action(request: Request):
    ctx = request.app.state.ctx
    folder = ctx.settings.slot_save_path
    if not folder:
        raise ApiError(501, "This server does not support slots action. Start it with `--slot-save-path`")
    try:
        id_slot = int(request.path_params["id_slot"])
    except ValueError:
        raise bad_request("Invalid slot ID") from None
    action = request.query_params.get("action", "")
    if action not in ("save", "restore", "erase"):
        raise bad_request("Invalid action")
    name = await _filename(request) if action != "erase" else ""
    t0 = time.perf_counter()
    try:
        result = await asyncio.wrap_future(ctx.engine.slot_action(action, id_slot, os.path.join(folder, name)))
    except SlotFileError as e:
        raise bad_request(f"Unable to restore slot: {e}") from None
    except ValueError as e:  # a slot that does not exist
        raise bad_request(str(e)) from None
    except OSError as e:
        raise ApiError(500, f"Unable to save slot: {e.strerror}") from None
    ms = (time.perf_counter() - t0) * 1e3
    if action == "save":
        return JsonResponse({"id_slot": id_slot, "filename": name, "n_saved": result[0], "n_written": result[1],
                             "timings": {"save_ms": ms}})
    if action == "restore":
        return JsonResponse({"id_slot": id_slot, "filename": name, "n_restored": result[0], "n_read": result[1],
                             "timings": {"restore_ms": ms}})
    return JsonResponse({"id_slot": id_slot, "n_erased": result})
