"""Ray, imported on first use: the install hint when it is missing, and connecting to a cluster with a one-line
error (not Ray's minute of retries) when the address does not answer."""
from __future__ import annotations

import logging
import os
import socket
from typing import Optional

logger = logging.getLogger(__name__)

INSTALL_HINT = 'pip install "pyserini-hypencoder[ray]"'
CONNECT_TIMEOUT_S = 5.0
LOCAL = "local"


def import_ray():
    try:
        import ray
    except ImportError:
        raise ValueError(f"--ray needs Ray, which is not installed; install the extra: {INSTALL_HINT}") from None
    return ray


def _host_port(address: str):
    text = address[len("ray://"):] if address.startswith("ray://") else address
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"--ray address {address!r} is not HOST:PORT, ray://HOST:PORT, auto or local")
    return host.strip("[]") or "127.0.0.1", int(port)


def connect(address: Optional[str] = None):
    """``ray`` connected to ``address`` (what ``ray.init(address=...)`` takes; None or ``local``: a new local
    instance on this machine's cores).  A HOST:PORT that does not accept a TCP connection within 5 s, or a cluster
    Ray cannot join, is a one-line ValueError; nothing has been started or written then."""
    ray = import_ray()
    if ray.is_initialized():
        return ray
    address = None if address in (None, "", LOCAL) else str(address)
    if address not in (None, "auto"):
        host, port = _host_port(address)
        try:
            socket.create_connection((host, port), timeout=CONNECT_TIMEOUT_S).close()
        except OSError as exc:
            raise ValueError(f"cannot reach a Ray cluster at {address}: {exc.strerror or exc}") from None
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    kwargs = dict(log_to_driver=False, logging_level=logging.WARNING)
    if address is None:
        kwargs.update(include_dashboard=False, num_cpus=os.cpu_count())
    try:
        ray.init(address=address, **kwargs)
    except (ConnectionError, RuntimeError, TimeoutError) as exc:
        raise ValueError(f"cannot join a Ray cluster at {address}: {str(exc).splitlines()[0]}") from None
    logger.info("Ray: %s, %s CPUs, %s GPUs", address or "a local instance", ray.cluster_resources().get("CPU", 0),
                ray.cluster_resources().get("GPU", 0))
    return ray


def shutdown() -> None:
    import ray
    if ray.is_initialized():
        ray.shutdown()
