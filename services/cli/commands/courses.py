"""`vocreg courses ...`: online course review (vocreg.courses.v1.CourseReviewService): the
listed courses, one course in full, the ranking."""
from __future__ import annotations

from services.cli import output
from services.cli.commands import add_limit, add_output, bi, command, enum_choices, group
from services.cli.exits import Exit

SERVICE = "courses"


def register(subparsers) -> None:
    sub = group(subparsers, "courses", "线上课程: 列表、详情、排名",
                "online courses: list, show, ranking")
    p = command(sub, "list", "课程列表 (公众只看到已上架的)",
                "courses (the public sees the listed ones)", run_list)
    p.add_argument("--state", choices=sorted(enum_choices(SERVICE, "CourseState")),
                   help=bi("课程状态 (监管部门和专家)", "state (regulator and experts)"))
    p.add_argument("--provider", metavar="ID",
                   help=bi("课程提供方 (监管部门和专家)", "provider (regulator and experts)"))
    add_limit(p)
    add_output(p)
    p = command(sub, "show", "查看一门课程及其检查结果和评审",
                "one course with its findings and reviews", run_show)
    p.add_argument("course_id", metavar="COURSE_ID", help=bi("课程编号", "the course's id"))
    add_output(p)
    p = command(sub, "top", "评分最高的课程 (公开)", "the best rated courses (public)", run_top)
    add_limit(p, default=20)
    add_output(p)


LIST_COLUMNS = [("course_id", "course 课程"), ("title", "title 名称"),
                ("provider_id", "provider 提供方"), ("state", "state 状态"),
                ("class_hours", "hours 课时"), ("question_count", "questions 题目"),
                ("submitted_on", "submitted 提交")]


def run_list(ctx, args) -> Exit:
    request = {"provider_id": args.provider}
    if args.state:
        request["state"] = enum_choices(SERVICE, "CourseState")[args.state]
    request = {k: v for k, v in request.items() if v}
    records = list(ctx.api.pages(SERVICE, "ListCourses", request, "courses", args.limit))
    output.emit_list(records, LIST_COLUMNS, args.output, title="课程 courses", stream=ctx.stdout)
    return Exit.OK


def run_show(ctx, args) -> Exit:
    answer = ctx.api.call(SERVICE, "GetCourse", {"course_id": args.course_id.strip()})
    output.emit_one(answer.get("course", {}), args.output, title=args.course_id,
                    stream=ctx.stdout)
    return Exit.OK


TOP_COLUMNS = [("rank", "rank 名次"), ("title", "title 名称"), ("provider_id", "provider 提供方"),
               ("score", "score 得分"), ("mean", "mean 平均"), ("ratings", "ratings 评分数"),
               ("interval_low", "90% low"), ("interval_high", "90% high")]


def run_top(ctx, args) -> Exit:
    records = list(ctx.api.pages(SERVICE, "ListTopCourses", {}, "courses", args.limit))
    output.emit_list(records, TOP_COLUMNS, args.output, title="课程排名 top courses",
                     stream=ctx.stdout)
    return Exit.OK
