"""Snapshots of the main screen at 80×24 and 160×48, on frozen data (pytest-textual-snapshot).

After a deliberate change of the screen, review and accept the new pictures with
``.venv/bin/pytest tests/test_app_snapshots.py --snapshot-update``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from core.rules import load_engine
from core.store import open_store
from tests.apptools import FROZEN_NOW, frozen_store, until
from tui.app import VpcwatchApp


@pytest.fixture(scope="module")
def frozen_state(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return frozen_store(tmp_path_factory.mktemp("snapshots"))


@pytest.mark.parametrize("size", [(80, 24), (160, 48)], ids=["80x24", "160x48"])
def test_main_screen(size: tuple[int, int], frozen_state: Path, tmp_path: Path,
                     snap_compare: Callable[..., bool]) -> None:
    with open_store(frozen_state, engine=load_engine([])) as store:
        app = VpcwatchApp(store, None, collect=False, now=lambda: FROZEN_NOW,
                          export_dir=tmp_path)

        async def settled(pilot: Any) -> None:
            await until(lambda: app.explorer is not None)
            await app.wait_settled()

        try:
            assert snap_compare(app, terminal_size=size, run_before=settled)
        finally:
            app.close_background()
