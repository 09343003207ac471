"""The network as a run sees it: reachable or not (decided once per process), and which names
are Hugging Face hub ids rather than local paths.

An offline node must not spend ~20 s per hub look-up on retries (transformers and huggingface_hub
back off and retry) before a local fallback is used, nor start a dataset download. Offline
means HF_HUB_OFFLINE or TRANSFORMERS_OFFLINE is set, or no TCP connection to the hub's host (to
the https proxy when one is set) opens within PROBE_TIMEOUT_S. Offline, huggingface_hub's own
offline mode is switched on for the process: transformers then reads only its cache.
"""

from __future__ import annotations

import functools
import os
import socket
import threading
import urllib.parse
import urllib.request

# The one probe of a process waits at most this long: a reachable host answers in well under a
# second; an unreachable one (no route, a DNS that never answers) costs this much, once.
PROBE_TIMEOUT_S = 3.0
OFFLINE_VARIABLES = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")


def offline() -> str:
    """Why the network cannot be reached ('' when it can). When it cannot, huggingface_hub's
    offline mode is on from here on, so no library of the process calls the hub."""
    why = (
        next((f"{v} is set" for v in OFFLINE_VARIABLES if _true(os.environ.get(v, ""))), "")
        or _probe()
    )
    if why:
        from huggingface_hub import constants

        constants.HF_HUB_OFFLINE = True  # what huggingface_hub.is_offline_mode() reads
    return why


def _true(value: str) -> bool:
    return value.strip().upper() in ("1", "ON", "YES", "TRUE")  # as huggingface_hub reads them


@functools.cache
def _probe() -> str:
    """'' when a TCP connection to the hub opens within PROBE_TIMEOUT_S, else why not. It runs in
    a thread, so a DNS look-up that hangs (which the socket timeout does not bound) costs no
    more."""
    host, port = _probe_target()
    answer: list[str] = []

    def connect() -> None:
        try:
            socket.create_connection((host, port), timeout=PROBE_TIMEOUT_S).close()
            answer.append("")
        except OSError as e:
            answer.append(f"{host}:{port} unreachable: {e.strerror or e}")

    thread = threading.Thread(target=connect, daemon=True)
    thread.start()
    thread.join(PROBE_TIMEOUT_S)
    return answer[0] if answer else f"no answer from {host}:{port} in {PROBE_TIMEOUT_S:g} s"


def _probe_target() -> tuple[str, int]:
    """(host, port) of the hub (HF_ENDPOINT respected), or of the proxy that reaches it."""
    from huggingface_hub import constants

    url = urllib.parse.urlsplit(constants.ENDPOINT)
    proxy = urllib.request.getproxies().get(url.scheme)
    if proxy and not urllib.request.proxy_bypass(url.hostname or ""):
        p = urllib.parse.urlsplit(proxy if "://" in proxy else f"http://{proxy}")
        return p.hostname or "", p.port or (443 if p.scheme == "https" else 80)
    return url.hostname or "", url.port or (443 if url.scheme == "https" else 80)


def is_hub_name(name: str) -> bool:
    """Whether `name` can be a hub repo id ('gpt2', 'org/model'): a name that cannot
    ('runs/pretrain/export', './x', '/abs', '~/x') is a local path, never asked of the hub."""
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(str(name))
    except HFValidationError:
        return False
    return True
