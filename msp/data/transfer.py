"""One file from a URL or a Google Drive id, with connect/read timeouts, an overall deadline
and an atomic rename (docs/datasets.md, 'Sources'). `msp.data.sources` decides which files
to fetch and where; this module only moves one file's bytes and says clearly why it failed.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from msp.data.readers import DataError

CONNECT_TIMEOUT = 30.0  # seconds to open a connection
READ_TIMEOUT = 120.0  # seconds the server may stay silent, mid-header or mid-body
DEADLINE = 6 * 3600.0  # seconds for one file, whatever the server does (3dshapes: 5.9 GB)


class DownloadTimeout(DataError):
    """The server did not answer, stalled, or the file took longer than the deadline."""


def fetch(url: str | None, dest: Path, file_id: str | None = None, quiet: bool = True, *,
          timeout: tuple[float, float] = (CONNECT_TIMEOUT, READ_TIMEOUT),
          deadline: float = DEADLINE) -> None:
    """Download url (or a Google Drive file id) with gdown to dest atomically.

    A server that accepts and never answers, or stalls mid-body, fails after the read
    timeout; a slow trickle fails at the deadline (seconds for the whole file); both
    raise DownloadTimeout and leave nothing behind, so rerunning restarts cleanly.
    """
    import threading

    import gdown

    # gdown keeps partial files next to its output (to resume); a private folder in the
    # destination's folder collects them, and goes away whatever happens.
    scratch = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent))
    tmp = scratch / dest.name
    where = url or f"Google Drive id {file_id}"
    cancel = threading.Event()  # set at the deadline: interrupts gdown's reads
    timer = threading.Timer(deadline, cancel.set)
    timer.daemon = True
    timer.start()
    try:
        gdown.download(url=url, id=file_id, output=str(tmp), quiet=quiet,
                       use_cookies=file_id is not None, timeout=timeout, retries=2,
                       cancel=cancel)
        if not tmp.is_file():
            raise DataError(f"{where}: nothing was downloaded")
        os.replace(tmp, dest)
    except DataError:
        raise
    except Exception as error:  # gdown / requests errors: name the file and the way out
        if cancel.is_set():
            why = (f"not complete after the deadline of {deadline:g} s (a slow or stuck "
                   "server); raise it with --deadline")
        elif _is_timeout(error):
            why = (f"the server did not answer for {timeout[1]:g} s (connect limit "
                   f"{timeout[0]:g} s); it is down or stalled. Raise the limit with --timeout")
        else:
            why = f"{type(error).__name__}: {error}"
        kind = DownloadTimeout if cancel.is_set() or _is_timeout(error) else DataError
        raise kind(f"downloading {dest.name} from {where} failed: {why}. Rerun the same "
                   f"command to restart the download; without network, place {dest.name} "
                   f"by hand in {dest.parent}/ and run it again") from None
    finally:
        timer.cancel()
        shutil.rmtree(scratch, ignore_errors=True)


def _is_timeout(error: BaseException) -> bool:
    """A connect/read timeout, however deep gdown or requests wrapped it."""
    import socket

    import requests

    while error is not None:
        if isinstance(error, (requests.exceptions.Timeout, socket.timeout, TimeoutError)):
            return True
        if "timed out" in str(error).lower():
            return True
        error = error.__cause__ or error.__context__
    return False

