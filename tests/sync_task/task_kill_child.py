"""Child process for the kill test: starts an update of one series, stops at a chosen
point, says "ready" on stdout and blocks until the parent SIGKILLs it."""

from __future__ import annotations

import os
import sys
from contextlib import contextmanager

from task_zips import FakeArchive, build_zip, record_for, series_files

from mirror.storage.local import LocalStore
from mirror.sync.task import FetchSettings, SeriesTask, sync_series


def _park() -> None:
    print("ready", flush=True)
    sys.stdin.read()  # the parent kills us while we wait here


class HangingArchive(FakeArchive):
    @contextmanager
    def stream_series(self, series_uid):
        with super().stream_series(series_uid) as chunks:
            def gen():
                for n, chunk in enumerate(chunks):
                    if n == 3:
                        _park()
                    yield chunk
            yield gen()


def main(dest: str, scratch: str, mode: str, uid: str, path: str) -> None:
    files = series_files(uid, count=8, size=700)
    archive = HangingArchive(chunk=100) if mode == "download" else FakeArchive()
    archive.queue(uid, build_zip(files))
    if mode == "publish":
        real_rename = os.rename

        def rename(src, dst):
            if ".staging" in str(src):
                _park()
            real_rename(src, dst)

        os.rename = rename
    task = SeriesTask(record_for(uid, files), path, 2, "run2")
    sync_series(task, archive, LocalStore(dest), FetchSettings(scratch_dir=scratch))


if __name__ == "__main__":
    main(*sys.argv[1:6])
