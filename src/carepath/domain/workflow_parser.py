"""Parse a `workflow:` document into a `Workflow`, collecting every problem."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import time, timedelta
from urllib.parse import urlsplit

from carepath.domain.conditions import (
    EVENT_TYPE_CHARS,
    AllOf,
    Condition,
    ConditionRules,
    FieldTest,
    Op,
    Scope,
    parse_condition,
)
from carepath.domain.durations import DurationError, parse_duration
from carepath.domain.fields import (
    READ_ONLY_FIELDS,
    ContactSchema,
    FieldClass,
    FieldSpec,
    coerce_value,
    parse_datetime,
)
from carepath.domain.problems import Path, Problems
from carepath.domain.workflow import (
    BranchCase,
    BranchStep,
    DateTrigger,
    EmailStep,
    EndStatus,
    EnrollStep,
    EventMatch,
    EventTrigger,
    ExitStep,
    GotoStep,
    ListStep,
    ManualTrigger,
    Purpose,
    Reentry,
    ReentryMode,
    ScheduleTrigger,
    SplitPath,
    SplitStep,
    Step,
    TaskStep,
    Trigger,
    UpdateStep,
    WaitForStep,
    WaitStep,
    WebhookStep,
    Workflow,
)

ACTION_KEYS = (
    "email", "update", "list", "wait", "wait_for", "branch",
    "split", "task", "webhook", "enroll", "goto", "exit",
)  # fmt: skip
LATER_ACTIONS = ("sms",)
_WORKFLOW_KEYS = {
    "workflow", "title", "description", "purpose", "trigger", "reentry",
    "goal", "exit_when", "start", "steps", "no_repeat",
}  # fmt: skip
_ALLOWED_STEP_KEYS: dict[str, set[str]] = {
    "email": {"next"},
    "update": {"next"},
    "list": {"next"},
    "wait": {"next"},
    "wait_for": {"next", "on_timeout"},
    "branch": {"otherwise"},
    "split": set(),
    "task": {"next"},
    "webhook": {"next"},
    "enroll": {"next"},
    "goto": set(),
    "exit": set(),
}


class _Ctx:
    """Parsing context: problem sink and the condition rules for this workflow."""

    def __init__(self, schema: ContactSchema, problems: Problems) -> None:
        self.problems = problems
        self.rules = ConditionRules(schema)
        self.schema = schema

    def condition(self, raw: object, path: Path) -> Condition | None:
        return parse_condition(raw, path, self.rules, self.problems)

    def duration(self, raw: object, path: Path, *, negative: bool = False) -> timedelta | None:
        """A duration; unless it may be negative (an offset), it must be longer than zero."""
        try:
            value = parse_duration(raw, allow_negative=negative)
        except DurationError as exc:
            self.problems.add(path, str(exc))
            return None
        if not negative and not value:
            self.problems.add(path, f"{raw!r} must be longer than zero")
            return None
        return value

    def name(self, raw: object, path: Path, what: str) -> str | None:
        if not isinstance(raw, str) or not raw.strip():
            self.problems.add(path, f"must name a {what}")
            return None
        return raw


@dataclass(frozen=True)
class WorkflowDraft:
    """What parsed of a workflow: enough to run graph checks even when some steps failed."""

    workflow: Workflow
    broken_steps: frozenset[str]
    complete: bool


SEGMENT_ENTERED = "segment.entered"


def parse_workflow(
    raw: Mapping[str, object], schema: ContactSchema, problems: Problems
) -> Workflow | None:
    """The workflow, or None when any problem was found."""
    draft = parse_workflow_draft(raw, schema, problems)
    return draft.workflow if draft is not None and draft.complete else None


def parse_workflow_draft(
    raw: Mapping[str, object], schema: ContactSchema, problems: Problems
) -> WorkflowDraft | None:
    ctx = _Ctx(schema, problems)
    before = len(problems)
    for key in sorted(set(raw) - _WORKFLOW_KEYS, key=str):
        problems.add(
            (str(key),),
            f"unknown workflow key (expected one of {', '.join(sorted(_WORKFLOW_KEYS))})",
        )
    name = ctx.name(raw.get("workflow"), ("workflow",), "workflow")
    purpose = _parse_purpose(raw.get("purpose", "operations"), ctx)
    trigger = _parse_trigger(raw.get("trigger"), ctx)
    reentry = _parse_reentry(raw.get("reentry", "never"), ctx)
    goal = _parse_event_match(raw.get("goal"), ("goal",), ctx)
    exit_when = _parse_event_match(raw.get("exit_when"), ("exit_when",), ctx)
    steps = _parse_steps(raw.get("steps"), ctx)
    no_repeat = ctx.duration(raw["no_repeat"], ("no_repeat",)) if "no_repeat" in raw else None
    # Names as written, so that a step which failed to parse is not also "unknown".
    raw_steps = raw.get("steps")
    written = [str(k) for k in raw_steps] if isinstance(raw_steps, Mapping) else []
    start = raw.get("start", written[0] if written else None)
    if not isinstance(start, str):
        problems.add(("start",), "must name the first step")
    elif written and start not in written:
        problems.add(("start",), f"unknown step {start!r}")
    title = raw.get("title") or name
    if name is None or not isinstance(start, str) or start not in written:
        return None
    workflow = Workflow(
        name=name,
        title=str(title),
        purpose=purpose or Purpose.OPERATIONS,
        trigger=trigger or ManualTrigger(),
        reentry=reentry or Reentry(ReentryMode.NEVER),
        goal=goal,
        exit_when=exit_when,
        start=start,
        steps=steps,
        no_repeat=no_repeat,
    )
    broken = frozenset(written) - set(steps)
    return WorkflowDraft(workflow, broken, complete=len(problems) == before)


def _parse_purpose(raw: object, ctx: _Ctx) -> Purpose | None:
    try:
        return Purpose(str(raw))
    except ValueError:
        ctx.problems.add(("purpose",), f"purpose must be one of {', '.join(Purpose)}")
        return None


def check_event_type(raw: object, path: Path, ctx: _Ctx) -> str | None:
    if not isinstance(raw, str) or not raw or not set(raw) <= EVENT_TYPE_CHARS:
        ctx.problems.add(path, "an event type is lower-case text such as form.submitted")
        return None
    return raw


def _parse_trigger(raw: object, ctx: _Ctx) -> Trigger | None:
    path: Path = ("trigger",)
    if raw in ("manual", {"manual": True}):
        return ManualTrigger()
    if not isinstance(raw, Mapping):
        ctx.problems.add(path, "trigger is `manual` or a mapping with event (and optional when)")
        return None
    kinds = [k for k in ("event", "manual", "segment", "date", "schedule") if k in raw]
    if len(kinds) != 1:
        ctx.problems.add(path, "a trigger has exactly one of: event, segment, manual")
        return None
    if kinds[0] == "date":
        return _date_trigger(raw, ctx)
    if kinds[0] == "schedule":
        return _schedule_trigger(raw, ctx)
    if kinds[0] not in ("event", "segment"):
        ctx.problems.add(
            (*path, kinds[0]), f"{kinds[0]} triggers are not supported in this version"
        )
        return None
    for key in sorted(set(raw) - {kinds[0], "when"}, key=str):
        ctx.problems.add((*path, str(key)), f"unknown trigger key (expected {kinds[0]}, when)")
    when = ctx.condition(raw["when"], (*path, "when")) if "when" in raw else None
    if "when" in raw and when is None:
        return None
    if kinds[0] == "segment":
        return _segment_trigger(raw["segment"], when, ctx)
    event = check_event_type(raw["event"], (*path, "event"), ctx)
    return EventTrigger(event, when) if event else None


_DATE_TRIGGER_KEYS = {"date", "offset", "at", "every", "when"}


def _date_trigger(raw: Mapping[str, object], ctx: _Ctx) -> DateTrigger | None:
    """{date: contact.FIELD, offset: -7d, at: "09:00", every: year, when: CONDITION}."""
    path: Path = ("trigger",)
    for key in sorted(set(raw) - _DATE_TRIGGER_KEYS, key=str):
        expected = ", ".join(sorted(_DATE_TRIGGER_KEYS))
        ctx.problems.add((*path, str(key)), f"unknown trigger key (expected {expected})")
    field = raw["date"]
    name = field.removeprefix("contact.") if isinstance(field, str) else None
    spec = ctx.schema.get(name) if name and field != name else None
    if spec is None or spec.type not in ("date", "datetime") or name == "age":
        ctx.problems.add((*path, "date"), "date names a date field of the contact: contact.NAME")
        return None
    if spec.klass is FieldClass.IDENTIFIER:  # dates are found by range in SQL
        ctx.problems.add((*path, "date"), f"{name} is an identifier, sealed: no date trigger")
        return None
    offset = ctx.duration(raw.get("offset", "0s"), (*path, "offset"), negative=True)
    at = _time_of_day(raw.get("at"), (*path, "at"), ctx)
    every = raw.get("every")
    if every not in (None, "year"):
        ctx.problems.add((*path, "every"), "every takes year (an anniversary every year)")
        return None
    when = None
    if "when" in raw:
        rules = ConditionRules(ctx.schema, scopes=frozenset({Scope.CONTACT}), history=True)
        when = parse_condition(raw["when"], (*path, "when"), rules, ctx.problems)
        if when is None:
            return None
    if offset is None or at is False:
        return None
    assert not isinstance(at, bool)
    assert name is not None
    return DateTrigger(name, offset, at, every == "year", when)


def _schedule_trigger(raw: Mapping[str, object], ctx: _Ctx) -> ScheduleTrigger | None:
    """{schedule: MOMENT | {starting: MOMENT, every: DURATION}, audience: CONDITION}."""
    path: Path = ("trigger",)
    for key in sorted(set(raw) - {"schedule", "audience"}, key=str):
        ctx.problems.add((*path, str(key)), "unknown trigger key (expected schedule, audience)")
    schedule = raw["schedule"]
    every = None
    if isinstance(schedule, Mapping):
        for key in sorted(set(schedule) - {"starting", "every"}, key=str):
            ctx.problems.add(
                (*path, "schedule", str(key)), "unknown key (expected starting, every)"
            )
        if "every" in schedule:
            every = ctx.duration(schedule["every"], (*path, "schedule", "every"))
            if every is None:
                return None
        schedule = schedule.get("starting")
    try:
        starting = parse_datetime(schedule)
    except ValueError:
        ctx.problems.add(
            (*path, "schedule"), "schedule is a moment (ISO 8601) or {starting: MOMENT, every: 7d}"
        )
        return None
    if "audience" not in raw:
        ctx.problems.add(path, "a schedule trigger names its audience: a condition on contact.*")
        return None
    rules = ConditionRules(ctx.schema, scopes=frozenset({Scope.CONTACT}), history=True)
    audience = parse_condition(raw["audience"], (*path, "audience"), rules, ctx.problems)
    return ScheduleTrigger(starting, every, audience) if audience else None


def _segment_trigger(name: object, when: Condition | None, ctx: _Ctx) -> EventTrigger | None:
    """Enrolled on joining a segment: its `segment.entered` events, narrowed to that segment."""
    if not isinstance(name, str) or not name:
        ctx.problems.add(("trigger", "segment"), "must name a segment")
        return None
    entered = FieldTest(Scope.EVENT, ("data", "segment"), Op.EQ, name)
    return EventTrigger(SEGMENT_ENTERED, AllOf((entered, when)) if when else entered, name)


def _parse_reentry(raw: object, ctx: _Ctx) -> Reentry | None:
    if raw in ("never", "always"):
        return Reentry(ReentryMode(str(raw)))
    if isinstance(raw, Mapping) and set(raw) == {"after"}:
        after = ctx.duration(raw["after"], ("reentry", "after"))
        return Reentry(ReentryMode.AFTER, after) if after else None
    ctx.problems.add(("reentry",), "reentry is never, always or {after: DURATION}")
    return None


def _parse_event_match(raw: object, path: Path, ctx: _Ctx) -> EventMatch | None:
    if raw is None:
        return None
    if not isinstance(raw, Mapping) or not ({"event", "when"} & set(raw)):
        ctx.problems.add(path, "must be {event: TYPE} with an optional when, or {when: CONDITION}")
        return None
    for key in sorted(set(raw) - {"event", "when"}, key=str):
        ctx.problems.add((*path, str(key)), "unknown key (expected event, when)")
    when = ctx.condition(raw["when"], (*path, "when")) if "when" in raw else None
    if "event" not in raw:
        return EventMatch(None, when) if when else None
    event = check_event_type(raw["event"], (*path, "event"), ctx)
    return EventMatch(event, when) if event else None


def _parse_steps(raw: object, ctx: _Ctx) -> dict[str, Step]:
    if not isinstance(raw, Mapping) or not raw:
        ctx.problems.add(("steps",), "steps must be a non-empty mapping of step name to step")
        return {}
    steps: dict[str, Step] = {}
    for name, body in raw.items():
        path: Path = ("steps", str(name))
        if not isinstance(body, Mapping):
            ctx.problems.add(path, "a step is a mapping with one action key")
            continue
        step = _parse_step(body, path, ctx)
        if step is not None:
            steps[str(name)] = step
    return steps


def _parse_step(body: Mapping[str, object], path: Path, ctx: _Ctx) -> Step | None:
    later = [k for k in LATER_ACTIONS if k in body]
    if later:
        ctx.problems.add((*path, later[0]), f"{later[0]} steps are not supported in this version")
        return None
    actions = [k for k in ACTION_KEYS if k in body]
    if len(actions) != 1:
        found = f" (found {', '.join(actions)})" if actions else ""
        ctx.problems.add(
            path, f"a step has exactly one action key: {', '.join(ACTION_KEYS)}{found}"
        )
        return None
    action = actions[0]
    extra = set(body) - {action} - _ALLOWED_STEP_KEYS[action]
    for key in sorted(extra, key=str):
        ctx.problems.add((*path, str(key)), f"unknown key for a {action} step")
    nxt = body.get("next")
    if nxt is not None and not isinstance(nxt, str):
        ctx.problems.add((*path, "next"), "next must name a step")
        return None
    value = body[action]
    apath: Path = (*path, action)
    return _STEP_PARSERS[action](value, body, apath, ctx)


def _email(value: object, body: Mapping[str, object], path: Path, ctx: _Ctx) -> Step | None:
    template = ctx.name(value, path, "template")
    return EmailStep(template, _next(body)) if template else None


def _next(body: Mapping[str, object]) -> str | None:
    nxt = body.get("next")
    return nxt if isinstance(nxt, str) else None


def _str_list(raw: object, path: Path, ctx: _Ctx) -> tuple[str, ...]:
    if raw is None:
        return ()
    items = [raw] if isinstance(raw, str) else raw
    if not isinstance(items, list) or not all(isinstance(i, str) and i for i in items):
        ctx.problems.add(path, "must be a name or a list of names")
        return ()
    return tuple(items)


def _update(value: object, body: Mapping[str, object], path: Path, ctx: _Ctx) -> Step | None:
    if not isinstance(value, Mapping) or not value:
        ctx.problems.add(path, "update takes set, unset, add_tags and/or remove_tags")
        return None
    for key in sorted(set(value) - {"set", "unset", "add_tags", "remove_tags"}, key=str):
        ctx.problems.add(
            (*path, str(key)), "unknown key (expected set, unset, add_tags, remove_tags)"
        )
    values = value.get("set") or {}
    if not isinstance(values, Mapping):
        ctx.problems.add((*path, "set"), "set takes a mapping of field to value")
        values = {}
    unset = _str_list(value.get("unset"), (*path, "unset"), ctx)
    for field in unset:
        _check_writable(field, (*path, "unset", field), ctx)
    typed = {
        str(field): _writable_value(str(field), raw, (*path, "set", str(field)), ctx)
        for field, raw in values.items()
    }
    return UpdateStep(
        set=typed,
        unset=unset,
        add_tags=_str_list(value.get("add_tags"), (*path, "add_tags"), ctx),
        remove_tags=_str_list(value.get("remove_tags"), (*path, "remove_tags"), ctx),
        next=_next(body),
    )


def _check_writable(field: str, path: Path, ctx: _Ctx) -> FieldSpec | None:
    name = field.removeprefix("contact.")
    spec = ctx.schema.get(name)
    if spec is None:
        ctx.problems.add(path, f"unknown contact field {name!r}")
    elif name in READ_ONLY_FIELDS:
        ctx.problems.add(path, f"{name!r} cannot be set by a workflow")
        return None
    elif spec.klass is FieldClass.IDENTIFIER:
        # Identifiers name the person and are sealed: they come from the person or the
        # record system (API, imports, forms), never from a journey's constant.
        ctx.problems.add(path, f"{name!r} is an identifier: workflows do not change it")
        return None
    return spec


def _writable_value(field: str, raw: object, path: Path, ctx: _Ctx) -> object:
    """The value typed as the field declares (a date field gets a date, not text)."""
    spec = _check_writable(field, path, ctx)
    if spec is None:
        return raw
    try:
        return coerce_value(spec, raw)
    except ValueError as exc:
        ctx.problems.add(path, f"value does not fit field type: {exc}")
        return raw


def _list(value: object, body: Mapping[str, object], path: Path, ctx: _Ctx) -> Step | None:
    if not isinstance(value, Mapping) or not (set(value) & {"add", "remove"}):
        ctx.problems.add(path, "list takes add and/or remove with list names")
        return None
    for key in sorted(set(value) - {"add", "remove"}, key=str):
        ctx.problems.add((*path, str(key)), "unknown key (expected add, remove)")
    return ListStep(
        add=_str_list(value.get("add"), (*path, "add"), ctx),
        remove=_str_list(value.get("remove"), (*path, "remove"), ctx),
        next=_next(body),
    )


def _wait(value: object, body: Mapping[str, object], path: Path, ctx: _Ctx) -> Step | None:
    if isinstance(value, str):
        duration = ctx.duration(value, path)
        return WaitStep(duration, None, timedelta(0), None, _next(body)) if duration else None
    if not isinstance(value, Mapping):
        ctx.problems.add(path, "wait takes a duration (3d) or {until, offset, at}")
        return None
    for key in sorted(set(value) - {"duration", "until", "offset", "at"}, key=str):
        ctx.problems.add((*path, str(key)), "unknown key (expected duration, until, offset, at)")
    if ("duration" in value) == ("until" in value):
        ctx.problems.add(path, "wait takes either duration or until")
        return None
    if "duration" in value:
        for key in sorted(set(value) & {"offset", "at"}):
            ctx.problems.add((*path, key), f"{key} goes with until, not with duration")
        duration = ctx.duration(value["duration"], (*path, "duration"))
        return WaitStep(duration, None, timedelta(0), None, _next(body)) if duration else None
    until = _date_reference(value["until"], (*path, "until"), ctx)
    offset = ctx.duration(value.get("offset", "0s"), (*path, "offset"), negative=True)
    at = _time_of_day(value.get("at"), (*path, "at"), ctx)
    if until is None or offset is None or at is False:
        return None
    assert not isinstance(at, bool)
    return WaitStep(None, until, offset, at, _next(body))


def _date_reference(raw: object, path: Path, ctx: _Ctx) -> str | None:
    """`until` names a date: contact.FIELD, event.data.NAME or trigger.data.NAME."""
    probe = Problems()
    parse_condition({"field": raw, "exists": True}, path, ctx.rules, probe)
    if probe:
        for problem in probe.items:
            ctx.problems.add(path, problem.message)
        return None
    assert isinstance(raw, str)
    if raw.startswith(f"{Scope.CONTACT}."):
        spec = ctx.schema.get(raw.split(".", 1)[1])
        if spec is None or spec.type not in ("date", "datetime"):
            ctx.problems.add(path, f"{raw} is not a date field")
            return None
    elif raw.split(".")[1] == "type":
        ctx.problems.add(path, f"{raw} is not a date")
        return None
    return raw


def _time_of_day(raw: object, path: Path, ctx: _Ctx) -> time | bool | None:
    if raw is None:
        return None
    try:
        if not isinstance(raw, str):
            raise ValueError
        parsed = time.fromisoformat(raw)
    except ValueError:
        ctx.problems.add(path, 'at takes a local time of day such as "09:00"')
        return False
    if parsed.tzinfo is not None:
        ctx.problems.add(path, "at is the contact's local time: leave out the UTC offset")
        return False
    return parsed


def _wait_for(value: object, body: Mapping[str, object], path: Path, ctx: _Ctx) -> Step | None:
    if not isinstance(value, Mapping) or "event" not in value or "within" not in value:
        ctx.problems.add(path, "wait_for takes {event: TYPE, within: DURATION}")
        return None
    for key in sorted(set(value) - {"event", "within", "where"}, key=str):
        ctx.problems.add((*path, str(key)), "unknown key (expected event, within, where)")
    event = check_event_type(value["event"], (*path, "event"), ctx)
    within = ctx.duration(value["within"], (*path, "within"))
    where = ctx.condition(value["where"], (*path, "where")) if "where" in value else None
    timeout = body.get("on_timeout")
    if timeout is not None and not isinstance(timeout, str):
        ctx.problems.add((*path[:-1], "on_timeout"), "on_timeout must name a step")
        return None
    if event is None or within is None or ("where" in value and where is None):
        return None
    return WaitForStep(event, within, where, _next(body), timeout)


def _branch(value: object, body: Mapping[str, object], path: Path, ctx: _Ctx) -> Step | None:
    if not isinstance(value, list) or not value:
        ctx.problems.add(path, "branch takes a list of {when, goto} cases")
        return None
    cases: list[BranchCase] = []
    for i, case in enumerate(value):
        cpath: Path = (*path, i)
        if not isinstance(case, Mapping) or set(case) != {"when", "goto"}:
            ctx.problems.add(cpath, "each case is {when: CONDITION, goto: STEP}")
            continue
        when = ctx.condition(case["when"], (*cpath, "when"))
        goto = ctx.name(case["goto"], (*cpath, "goto"), "step")
        if when and goto:
            cases.append(BranchCase(when, goto))
    otherwise = body.get("otherwise")
    if otherwise is not None and not isinstance(otherwise, str):
        ctx.problems.add((*path[:-1], "otherwise"), "otherwise must name a step")
        return None
    return BranchStep(tuple(cases), otherwise) if len(cases) == len(value) else None


def _split(value: object, body: Mapping[str, object], path: Path, ctx: _Ctx) -> Step | None:
    if not isinstance(value, list) or len(value) < 2:
        ctx.problems.add(path, "split takes a list of at least two {weight, goto} paths")
        return None
    paths: list[SplitPath] = []
    for i, item in enumerate(value):
        ipath: Path = (*path, i)
        if not isinstance(item, Mapping) or set(item) - {"weight", "goto", "name"}:
            ctx.problems.add(ipath, "each path is {weight: NUMBER, goto: STEP}")
            continue
        weight = item.get("weight")
        goto = ctx.name(item.get("goto"), (*ipath, "goto"), "step")
        if not isinstance(weight, int) or isinstance(weight, bool) or weight <= 0:
            ctx.problems.add((*ipath, "weight"), "weight must be a positive whole number")
            continue
        if goto:
            paths.append(SplitPath(weight, goto))
    return SplitStep(tuple(paths)) if len(paths) == len(value) else None


def _task(value: object, body: Mapping[str, object], path: Path, ctx: _Ctx) -> Step | None:
    if not isinstance(value, Mapping) or set(value) != {"queue", "title"}:
        ctx.problems.add(path, "task takes {queue: NAME, title: TEXT}")
        return None
    queue = ctx.name(value["queue"], (*path, "queue"), "queue")
    title = ctx.name(value["title"], (*path, "title"), "title")
    return TaskStep(queue, title, _next(body)) if queue and title else None


_ENV_NAME = re.compile(r"^[A-Z][A-Z0-9_]{2,100}$")


def _webhook(value: object, body: Mapping[str, object], path: Path, ctx: _Ctx) -> Step | None:
    """{url: https://…, secret_env: NAME, fields: [first_name, …]} (fields: what is sent)."""
    if (
        not isinstance(value, Mapping)
        or not {"url", "secret_env"} <= set(value)
        or (set(value) - {"url", "secret_env", "fields"})
    ):
        ctx.problems.add(path, "webhook takes {url: URL, secret_env: NAME, fields: [FIELD, …]}")
        return None
    before = len(ctx.problems)
    url = value["url"]
    parts = urlsplit(url) if isinstance(url, str) else None
    if parts is None or parts.scheme not in ("https", "http") or not parts.hostname:
        ctx.problems.add((*path, "url"), "an http(s) URL")
    elif parts.username or parts.password:
        ctx.problems.add((*path, "url"), "no credentials in the URL: the request is signed")
    secret_env = value["secret_env"]
    if not isinstance(secret_env, str) or not _ENV_NAME.match(secret_env):
        ctx.problems.add((*path, "secret_env"), "the name of an environment variable")
    fields = _str_list(value.get("fields"), (*path, "fields"), ctx)
    for i, name in enumerate(fields):
        if ctx.schema.get(name) is None:
            ctx.problems.add((*path, "fields", i), f"unknown contact field {name!r}")
    if len(ctx.problems) > before:
        return None
    return WebhookStep(str(url), str(secret_env), fields, _next(body))


def _enroll(value: object, body: Mapping[str, object], path: Path, ctx: _Ctx) -> Step | None:
    if isinstance(value, str):
        value = {"workflow": value}
    if not isinstance(value, Mapping) or "workflow" not in value:
        ctx.problems.add(path, "enroll takes a workflow name or {workflow, end_current}")
        return None
    for key in sorted(set(value) - {"workflow", "end_current"}, key=str):
        ctx.problems.add((*path, str(key)), "unknown key (expected workflow, end_current)")
    target = ctx.name(value["workflow"], (*path, "workflow"), "workflow")
    end_current = value.get("end_current", False)
    if not isinstance(end_current, bool):
        ctx.problems.add((*path, "end_current"), "end_current takes true or false")
        return None
    return EnrollStep(target, end_current, _next(body)) if target else None


def _goto(value: object, body: Mapping[str, object], path: Path, ctx: _Ctx) -> Step | None:
    target = ctx.name(value, path, "step")
    return GotoStep(target) if target else None


def _exit(value: object, body: Mapping[str, object], path: Path, ctx: _Ctx) -> Step | None:
    try:
        return ExitStep(EndStatus(str(value)))
    except ValueError:
        ctx.problems.add(path, f"exit takes one of {', '.join(EndStatus)}")
        return None


_STEP_PARSERS: dict[str, Callable[[object, Mapping[str, object], Path, _Ctx], Step | None]] = {
    "email": _email,
    "update": _update,
    "list": _list,
    "wait": _wait,
    "wait_for": _wait_for,
    "branch": _branch,
    "split": _split,
    "task": _task,
    "webhook": _webhook,
    "enroll": _enroll,
    "goto": _goto,
    "exit": _exit,
}
