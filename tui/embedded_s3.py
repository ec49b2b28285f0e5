"""An S3 emulator (moto's server mode) on 127.0.0.1, for the demo, the tests and the benchmark.

It speaks the real S3 HTTP protocol, so vpcwatch reaches it through the same aiobotocore
path as AWS, only with ``endpoint_url`` set. Any credentials are accepted.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

EMULATOR_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


@dataclass
class EmbeddedS3:
    url: str
    _server: object

    def stop(self) -> None:
        self._server.stop()  # type: ignore[attr-defined]


def use_emulator_credentials() -> None:
    """Point the AWS credential chain of this process at the emulator's dummy credentials."""
    for name, value in EMULATOR_CREDENTIALS.items():
        os.environ.setdefault(name, value)


def start_s3(port: int = 0) -> EmbeddedS3:
    """Start the emulator in a thread of this process on ``port`` (0: any free port)."""
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # it logs every request otherwise
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    host, bound = server.get_host_and_port()
    return EmbeddedS3(f"http://{host}:{bound}", server)
