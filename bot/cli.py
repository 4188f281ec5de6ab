"""``python -m bot``: the command line. Each capability registers its subcommands in ``COMMANDS``."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import logging
import sys
from collections.abc import Callable
from pathlib import Path

from aiohttp import web

from bot import worker
from bot.config import Settings, SettingsError
from bot.embedded import EmbeddedDatabaseError, EmbeddedMongo
from bot.logs import configure_logging
from bot.wechat import cli as wechat_cli

log = logging.getLogger("bot")

EXIT_CONFIG = 2
EXIT_DATABASE = 3
STARTABLE = ("serve", "worker")  # commands that serve or run jobs: refused in an unsafe configuration


def _serve(args: argparse.Namespace, settings: Settings) -> int:
    # The embedded database starts first, so its process starts while this one imports the app.
    embedded = EmbeddedMongo(settings.data_dir / "mongo") if settings.embedded_database else None
    if embedded is not None:
        embedded.start()  # on the main thread, see EmbeddedMongo.start
    try:
        from bot.app import create_app

        app = create_app(settings, scheduler=not args.no_scheduler, seed_demo=args.seed_demo, embedded=embedded)
    except BaseException:
        if embedded is not None:
            embedded.stop()
        raise
    log.info("starting", extra={"host": settings.host, "port": settings.port,
                                "embedded_database": settings.embedded_database})
    web.run_app(app, host=settings.host, port=settings.port, print=None, access_log=None,
                shutdown_timeout=10)
    return 0


def _seed_demo(args: argparse.Namespace, settings: Settings) -> int:
    from bot.db import standalone_database
    from bot.demo import seed_demo

    async def run() -> list[str]:
        async with standalone_database(settings) as (client, db):
            return await seed_demo(client, db, settings)

    for line in asyncio.run(run()):
        print(line)
    return 0


def _register_core(sub: argparse._SubParsersAction) -> None:
    serve = sub.add_parser("serve", help="运行 Web 服务（未设置 MONGODB_URI 时同时启动嵌入式数据库）")
    serve.add_argument("--no-scheduler", action="store_true", help="不在本进程运行定时任务")
    serve.add_argument("--seed-demo", action="store_true", help="数据库中没有演示数据时，启动时写入一次（make serve）")
    serve.set_defaults(func=_serve)
    seed = sub.add_parser("seed-demo", help="写入演示数据（可重复执行）")
    seed.set_defaults(func=_seed_demo)


def _calendar_import(args: argparse.Namespace, settings: Settings) -> int:
    from bot.db import standalone_database
    from bot.web import dumps
    from scheduling import holidays, slot_jobs

    try:
        calendar = holidays.load_file(Path(args.file))
    except holidays.CalendarError as exc:
        print(f"{args.file}：{exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"无法读取文件 {args.file}：{exc.strerror or exc}", file=sys.stderr)
        return 1
    if args.dry_run:
        label = holidays.SOURCE_LABELS[calendar.source]
        print(f"{args.file}：检查通过，{calendar.year} 年（{label}）共 {len(calendar.holidays)} 个节日、"
              f"{len(calendar.makeup_workdays)} 个调休上班日；未导入（去掉 --dry-run 即导入）")
        return 0
    by = args.by or f"cli:{getpass.getuser()}"

    async def run() -> slot_jobs.ImportReport:
        async with standalone_database(settings) as (_client, db):
            return await slot_jobs.import_year(db, calendar, by, horizon_days=settings.booking_horizon_days)

    report = asyncio.run(run())
    if args.json:
        print(json.dumps(json.loads(dumps(report.summary())), ensure_ascii=False, indent=2))
    else:
        for line in report.lines():
            print(line)
    return 0


def _register_calendar(sub: argparse._SubParsersAction) -> None:
    calendar = sub.add_parser("calendar", help="节假日安排（国务院办公厅通知）")
    commands = calendar.add_subparsers(dest="calendar_command", required=True, metavar="COMMAND")
    imported = commands.add_parser(
        "import", help="从 YAML/JSON 文件导入（替换）一年的节假日安排，重新生成时段并列出受影响的预约",
        description="文件格式见 scheduling/data/holidays-2027.example.yaml。导入后立即重新生成所有机构的时段"
                    "（已预约人数不变），并列出落在现已不开放日期的预约（不会取消，请联系群众）。")
    imported.add_argument("file", help="YAML 或 JSON 文件")
    imported.add_argument("--by", default=None, help="记录的导入人（默认 cli:当前系统用户）")
    imported.add_argument("--dry-run", action="store_true", help="只检查文件，不导入")
    imported.add_argument("--json", action="store_true", help="以 JSON 输出导入报告")
    imported.set_defaults(func=_calendar_import)


def _register_faq(sub: argparse._SubParsersAction) -> None:
    from knowledge.cli import register

    register(sub)


# Functions that add subcommands; each sets ``func(args, settings) -> exit status``.
COMMANDS: list[Callable[[argparse._SubParsersAction], None]] = [
    _register_core, _register_faq, wechat_cli.register, worker.register, _register_calendar,
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bot", description="医保小助手 后端服务")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for register in COMMANDS:
        register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = Settings.from_env()
        if args.command in STARTABLE:
            settings.check_startable()
    except SettingsError as exc:
        print(exc, file=sys.stderr)
        return EXIT_CONFIG
    configure_logging(settings.log_level)
    try:
        return args.func(args, settings)
    except EmbeddedDatabaseError as exc:
        print(exc, file=sys.stderr)
        return EXIT_DATABASE
    except KeyboardInterrupt:
        return 130
