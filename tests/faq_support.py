"""A small FAQ corpus for the FAQ tests, written to a temporary directory (independent of the real data)."""

from __future__ import annotations

from pathlib import Path

import yaml

ENTRIES = [
    {"id": "t-remote-filing", "category": "结算", "question": "异地就医备案怎么办理？",
     "paraphrases": ["去外地看病要先备案吗", "异地就医备案在哪里办", "我要去外地住院，医保需要先办什么手续"],
     "answer": "可以通过国家医保服务平台APP或参保地医保经办机构办理异地就医备案。",
     "keywords": ["异地就医", "备案", "办理渠道"]},
    {"id": "t-remote-effective", "category": "结算", "question": "异地就医备案多久生效？",
     "paraphrases": ["备案以后什么时候能用", "异地备案办好了多长时间生效", "今天备案明天住院能直接结算吗"],
     "answer": "一般备案后即时生效，以参保地规定为准。", "keywords": ["异地就医", "备案", "生效时间"]},
    {"id": "t-maternity-allowance", "category": "生育", "question": "生育津贴怎么申领？",
     "paraphrases": ["生孩子的津贴怎么领", "产假工资找谁要", "生育津贴去哪里申请"],
     "answer": "生育津贴一般由用人单位向参保地医保经办机构申领。", "keywords": ["生育津贴", "申领"]},
    {"id": "t-family-pool", "category": "结算", "question": "家庭共济怎么开通？",
     "paraphrases": ["个人账户可以给家人用吗", "医保账户共济怎么弄", "爸妈能用我的医保个人账户余额吗"],
     "answer": "在医保APP的家庭共济功能中绑定近亲属即可。", "keywords": ["家庭共济", "个人账户"]},
    {"id": "t-card-lost", "category": "结算", "question": "医保卡丢了怎么挂失？",
     "paraphrases": ["医保卡掉了怎么办", "医保卡找不到了", "卡丢了怎么挂失补办"],
     "answer": "拨打12333或到社保卡服务网点挂失。", "keywords": ["医保卡", "挂失", "补办"]},
    {"id": "t-hotline", "category": "服务渠道", "question": "医保服务热线是多少？",
     "paraphrases": ["12393是什么电话", "医保客服电话多少", "打电话咨询医保打哪个号码"],
     "answer": "全国医保服务热线是12393。", "keywords": ["12393", "热线", "电话"]},
]
COMMON = {"source": "general policy", "updated": "2026-01-01"}
USERDICT = "异地就医备案 50 n\n生育津贴\n家庭共济\n医保卡\n"
SYNONYMS = [["医保卡", "社保卡"], ["异地", "外地"], ["生育", "生孩子", "生娃"]]
OUT_OF_SCOPE = [{"topic": "银行卡", "examples": ["银行卡丢了怎么挂失", "信用卡怎么申请"]},
                {"topic": "天气", "examples": ["明天会下雨吗"]}]


def write_corpus(root: Path, entries: list[dict] | None = None) -> Path:
    """Write the corpus under ``root`` (``faq/*.yaml``, user dict, synonyms); returns ``root``."""
    (root / "faq").mkdir(parents=True, exist_ok=True)
    items = [{**entry, **COMMON} for entry in (ENTRIES if entries is None else entries)]
    (root / "faq" / "entries.yaml").write_text(yaml.safe_dump(items, allow_unicode=True), encoding="utf-8")
    (root / "userdict.txt").write_text(USERDICT, encoding="utf-8")
    (root / "synonyms.yaml").write_text(yaml.safe_dump(SYNONYMS, allow_unicode=True), encoding="utf-8")
    (root / "out_of_scope.yaml").write_text(yaml.safe_dump(OUT_OF_SCOPE, allow_unicode=True), encoding="utf-8")
    return root
