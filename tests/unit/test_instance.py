"""Generated instance secrets survive several processes starting at once."""

from __future__ import annotations

import multiprocessing
import os

from app import instance


def _read(directory: str, queue) -> None:  # runs in a child process
    os.environ["CW_INSTANCE_DIR"] = directory
    queue.put(instance.persistent_secret("kek"))


def test_concurrent_first_starts_agree_on_one_secret(tmp_path):
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    processes = [context.Process(target=_read, args=(str(tmp_path), queue)) for _ in range(8)]
    for p in processes:
        p.start()
    for p in processes:
        p.join(10)
    values = {queue.get(timeout=5) for _ in processes}
    queue.close()
    queue.join_thread()
    assert len(values) == 1 and (tmp_path / "kek").read_text() == values.pop()
    assert oct((tmp_path / "kek").stat().st_mode & 0o777) == "0o600"
    assert [p.exitcode for p in processes] == [0] * 8
    assert sorted(os.listdir(tmp_path)) == ["kek"]  # no temporary files left behind
