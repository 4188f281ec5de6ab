"""``python -m bot faq ask|eval|lint|tune``: the FAQ from the command line (no database needed)."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from bot.config import Settings


def _print(obj: Any) -> None:
    line = json.dumps(obj, ensure_ascii=False) + "\n"
    sys.stdout.buffer.write(line.encode("utf-8", "replace"))
    sys.stdout.buffer.flush()


def _ask(args: argparse.Namespace, settings: Settings) -> int:
    import knowledge

    engine = knowledge.current_engine()
    if args.question:
        _print(engine.answer(" ".join(args.question)).to_dict())
        return 0
    for raw in sys.stdin.buffer:
        _print(engine.answer(raw.decode("utf-8", "replace").rstrip("\r\n")).to_dict())
    return 0


def _explain(args: argparse.Namespace, settings: Settings) -> int:
    import knowledge

    _print(knowledge.current_engine().explain(" ".join(args.question)))
    return 0


def _eval(args: argparse.Namespace, settings: Settings) -> int:
    from knowledge.corpus import EVAL_HALVES, EVAL_SETS, load_eval
    from knowledge.engine import Engine
    from knowledge.evaluate import evaluate, format_report

    engine = Engine.build()
    halves = EVAL_HALVES if args.half == "all" else (args.half,)
    sets = EVAL_SETS if args.set == "all" else (args.set,)
    reports = []
    for half in halves:
        for name in sets:
            reports.append(evaluate(engine, load_eval(half, eval_set=name), f"{half}/{name}"))
        if len(sets) > 1:
            reports.append(evaluate(engine, load_eval(half, eval_set="all"), f"{half}/both"))
    if args.json:
        _print({report.name: report.metrics() for report in reports})
    else:
        print(f"FAQ evaluation: {len(engine.corpus.entries)} entries, {engine.index.n_docs} indexed questions")
        for report in reports:
            print(format_report(report))
            if args.failures:
                for failure in report.failures:
                    print("    ✗", json.dumps(failure, ensure_ascii=False))
    return 0


def _lint(args: argparse.Namespace, settings: Settings) -> int:
    from knowledge.lint import lint

    problems = lint()
    for problem in problems:
        print(problem)
    print(f"FAQ lint: {len(problems)} problem(s)" if problems else "FAQ lint: ok")
    return 1 if problems else 0


def _tune(args: argparse.Namespace, settings: Settings) -> int:
    if args.grid:
        from knowledge.tuning import tune

        lines = tune()
    else:
        from knowledge.train import train

        lines = train(write=not args.dry_run)
    for line in lines:
        print(line, flush=True)
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    faq = sub.add_parser("faq", help="政策问答：提问、评测、语料检查")
    commands = faq.add_subparsers(dest="faq_command", required=True, metavar="SUBCOMMAND")
    ask = commands.add_parser("ask", help="回答一个问题（不带参数时从标准输入逐行读取，每行输出一个 JSON）")
    ask.add_argument("question", nargs="*", help="问题")
    ask.set_defaults(func=_ask)
    explain = commands.add_parser("explain", help="显示一个问题的分词、改写、得分与拒答依据（调试语料用）")
    explain.add_argument("question", nargs="+", help="问题")
    explain.set_defaults(func=_explain)
    evaluation = commands.add_parser("eval", help="在评测集（dev 与 test）上计算准确率等指标")
    evaluation.add_argument("--half", choices=["all", "dev", "test"], default="all")
    evaluation.add_argument("--set", choices=["all", "old", "fresh"], default="all",
                            help="评测集：old（与语料同时编写）、fresh（第二轮新写）或两者")
    evaluation.add_argument("--failures", action="store_true", help="列出答错或未拒答的问题")
    evaluation.add_argument("--json", action="store_true", help="以 JSON 输出指标")
    evaluation.set_defaults(func=_eval)
    check = commands.add_parser("lint", help="检查语料与评测集，有问题时以非零状态退出")
    check.set_defaults(func=_lint)
    tune = commands.add_parser("tune", help="只在 dev 集上训练置信度模型与阈值，写入 knowledge/data/calibration.json")
    tune.add_argument("--dry-run", action="store_true", help="只输出结果，不写文件")
    tune.add_argument("--grid", action="store_true", help="改为搜索检索参数（第一轮的网格搜索，约 3 分钟，不写文件）")
    tune.set_defaults(func=_tune)
