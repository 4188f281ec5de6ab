"""Issue 18, finding 10: the embedded database's files are readable by their owner only."""

from __future__ import annotations

import stat

from pymongo import MongoClient

from bot.embedded import EmbeddedMongo


def test_database_files_are_owner_only(tmp_path):
    legacy = tmp_path / "mongo"
    legacy.mkdir(mode=0o755)
    (legacy / "old-file").write_text("x")
    (legacy / "old-file").chmod(0o644)
    server = EmbeddedMongo(legacy)
    server.start()
    try:
        server.wait_ready_sync()
        client = MongoClient(server.uri)
        client["perm"]["things"].insert_one({"name": "张三"})
        client.close()
    finally:
        server.stop()
    paths = [legacy, *legacy.rglob("*"), tmp_path / "secantusd.log", tmp_path / "mongo.lock"]
    loose = {str(p): oct(stat.S_IMODE(p.stat().st_mode)) for p in paths if p.stat().st_mode & 0o077}
    assert not loose
    assert len(paths) > 4  # the server did write its files
