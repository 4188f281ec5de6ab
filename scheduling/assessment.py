"""The first assessment (首诊评估) a family fills in when requesting a home nursing visit.

Pure validation: the answers are normalised and every problem is reported at once, in Chinese,
keyed by field, so the mini-program can mark the fields.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bot.errors import ApiError


@dataclass(frozen=True)
class Question:
    field: str
    label: str
    kind: str  # choice | text | bool
    required: bool = True
    choices: tuple[str, ...] = ()
    max_length: int = 200


QUESTIONS: tuple[Question, ...] = (
    Question("consciousness", "意识状态", "choice", choices=("清醒", "嗜睡", "意识模糊", "昏迷")),
    Question("mobility", "活动能力", "choice", choices=("自理", "部分依赖", "完全卧床")),
    Question("allergies", "过敏史（无则填“无”）", "text"),
    Question("current_conditions", "目前病情与主要诊断", "text", max_length=500),
    Question("done_before", "以前是否做过该项目", "bool"),
    Question("medications", "正在使用的药物", "text", required=False),
    Question("notes", "其他需要护士了解的情况", "text", required=False, max_length=500),
)


def validate(answers: Any) -> dict[str, Any]:
    """The normalised answers, or a 400 ``invalid_assessment`` listing every problem."""
    if not isinstance(answers, dict):
        raise ApiError(400, "invalid_assessment", "请填写首诊评估")
    problems: dict[str, str] = {}
    clean: dict[str, Any] = {}
    for q in QUESTIONS:
        value = answers.get(q.field)
        if isinstance(value, str):
            value = value.strip()
        if value is None or value == "":
            if q.required:
                problems[q.field] = f"请填写「{q.label}」"
            continue
        if q.kind == "choice":
            if value not in q.choices:
                problems[q.field] = f"「{q.label}」应为：{'、'.join(q.choices)}"
                continue
        elif q.kind == "bool":
            if not isinstance(value, bool):
                problems[q.field] = f"「{q.label}」应为是或否"
                continue
        elif not isinstance(value, str):
            problems[q.field] = f"「{q.label}」应为文字"
            continue
        elif len(value) > q.max_length:
            problems[q.field] = f"「{q.label}」不能超过 {q.max_length} 个字"
            continue
        clean[q.field] = value
    if problems:
        raise ApiError(400, "invalid_assessment", "首诊评估填写不完整：" + "；".join(problems.values()),
                       fields=problems)
    return clean


def openapi_schema() -> dict[str, Any]:
    properties: dict[str, Any] = {}
    for q in QUESTIONS:
        if q.kind == "choice":
            properties[q.field] = {"type": "string", "enum": list(q.choices), "description": q.label}
        elif q.kind == "bool":
            properties[q.field] = {"type": "boolean", "description": q.label}
        else:
            properties[q.field] = {"type": "string", "maxLength": q.max_length, "description": q.label}
    return {"type": "object", "description": "首诊评估", "properties": properties,
            "required": [q.field for q in QUESTIONS if q.required]}
