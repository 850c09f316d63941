"""The command line end to end: exit codes, `file:line: message`, a journey driven by commands."""

from __future__ import annotations

import json
import sqlite3
from datetime import date
from pathlib import Path

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from carepath.db.schema import page_view_counts
from carepath.entrypoints.cli import app

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "bariatric"
runner = CliRunner()


def carepath(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, list(args), env={"COLUMNS": "200"})
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout, result.stderr


def test_validate_prints_file_line_message_and_exits_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "workflow: w\n"
        "trigger: {event: form.submitted}\n"
        "steps:\n"
        "  a: {email: missing, next: b}\n"
        "  b: {wait: soon, next: c}\n"
        "  c: {goto: d}\n"
        "  d: {goto: c}\n"
        "  e: {exit: completed}\n"
    )
    code, _, err = carepath("validate", str(bad))
    assert code == 2
    assert err.splitlines() == [
        f"{bad}:5: 'soon' is not a duration (use a number and a unit s, m, h, d or w, e.g. 7d)",
        f"{bad}:6: loop with no wait: c -> d -> c",
        f"{bad}:4: unknown template 'missing'",
    ]


def test_validate_accepts_the_examples() -> None:
    for folder in (EXAMPLES, EXAMPLES.parent / "preventive"):
        code, out, _ = carepath("validate", str(folder))
        assert code == 0
        assert "documents valid" in out


def test_schema_prints_json_schema_for_a_kind() -> None:
    code, out, _ = carepath("schema", "workflow")
    assert code == 0
    schema = json.loads(out)
    assert schema["type"] == "object"
    assert carepath("schema", "nonsense")[0] == 2


def test_a_journey_driven_from_the_command_line(empty_database_url: str, tmp_path: Path) -> None:
    db = ["--db", empty_database_url]
    assert carepath("init", *db, "--simulated-clock", "2026-01-05T08:00:00Z")[0] == 0
    assert carepath("apply", *db, str(EXAMPLES))[0] == 0
    people = tmp_path / "people.csv"
    people.write_text(
        "external_id,email,first_name,birth_date,time_zone,bmi\n"
        "MRN-1,ann@example.test,Ann,1958-04-02,America/Chicago,42\n"
    )
    assert carepath("contacts", "import", str(people), *db)[1].strip() == "1 created, 0 updated"
    hra = tmp_path / "hra.jsonl"
    hra.write_text(
        json.dumps(
            {
                "type": "form.submitted",
                "contact": {"external_id": "MRN-1"},
                "idempotency_key": "hra-1",
                "data": {"form": "bariatric-hra", "score": 61},
            }
        )
        + "\n"
    )
    assert "1 accepted" in carepath("events", "ingest", str(hra), *db)[1]
    assert "0 accepted, 1 duplicates ignored" in carepath("events", "ingest", str(hra), *db)[1]
    assert carepath("worker", "--once", *db)[0] == 0
    code, out, _ = carepath("runs", "show", "MRN-1", *db)
    assert code == 0
    assert "bariatric-journey v1: waiting at await-click" in out
    click = tmp_path / "click.jsonl"
    click.write_text(
        json.dumps({"type": "email.clicked", "contact": {"email": "ann@example.test"}}) + "\n"
    )
    carepath("events", "ingest", str(click), *db)
    carepath("clock", "advance", "1h", *db)
    code, out, _ = carepath("tasks", "list", *db)
    assert "Discuss a bariatric consultation" in out
    assert carepath("tasks", "complete", "1", "--outcome", "booked", *db)[0] == 0
    code, _, err = carepath("tasks", "complete", "1", "--outcome", "booked", *db)
    assert (code, err.strip()) == (2, "error: task 1 is already completed")
    code, out, _ = carepath("report", "funnel", "bariatric-journey", "--format", "json", *db)
    funnel = {row["step"]: row for row in json.loads(out)["steps"]}
    assert funnel["call"]["entered"] == 1
    assert funnel["await-booking"]["waiting"] == 1
    assert carepath("clock", "advance", "15d", *db)[0] == 0
    assert (
        "at no-booking" in carepath("runs", "show", "MRN-1", *db)[1]
        or "completed" in carepath("runs", "show", "MRN-1", *db)[1]
    )


def test_commands_on_an_uninitialised_database_say_so(tmp_path: Path) -> None:
    code, _, err = carepath("worker", "--once", "--db", str(tmp_path / "none.db"))
    assert code == 2
    assert "run `carepath init`" in err


def test_demo_runs_the_journey_and_prints_the_funnel(tmp_path: Path) -> None:
    code, out, _ = carepath("demo", "--contacts", "40", "--db", str(tmp_path / "demo.db"))
    assert code == 0
    assert "bariatric-journey" in out
    assert "received by the SMTP sink" in out
    assert (tmp_path / "demo-funnel.png").read_bytes().startswith(b"\x89PNG")
    db = ("--db", str(tmp_path / "demo.db"))
    code, out, _ = carepath("report", "engagement", "bariatric-journey", "--format", "json", *db)
    report = json.loads(out)
    steps = {row["step"]: row for row in report["steps"]}
    assert steps["educate-a"]["sent"] == steps["educate-a"]["delivered"] > 0
    assert report["splits"][0]["paths"] == ["educate-a", "educate-b"]
    code, out, _ = carepath("report", "messages", "--step", "educate-a", "--format", "csv", *db)
    lines = out.splitlines()
    assert lines[0].startswith("id,created_at,contact_id,workflow,step,template,status")
    assert len(lines) == steps["educate-a"]["messages"] + 1
    contact = lines[1].split(",")[2]
    chart = tmp_path / "engagement.svg"
    carepath("report", "engagement", "bariatric-journey", "--chart", str(chart), *db)
    assert "<svg" in chart.read_text()
    code, _, err = carepath("report", "funnel", "bariatric-journey", "--chart", "x.gif", *db)
    assert (code, err.strip()) == (2, "--chart: a chart file ends in .png or .svg")
    code, out, _ = carepath("report", "contact", contact, "--format", "json", *db)
    entries = json.loads(out)
    assert entries[0]["what"] == "event"
    assert any(e["summary"] == "bariatric-education-a sent" for e in entries)


def test_preventive_demo_prints_enrollments_per_month_over_a_year(tmp_path: Path) -> None:
    args = ["demo", "--scenario", "preventive", "--contacts", "60", "--db", str(tmp_path / "p.db")]
    code, out, _ = carepath(*args)
    assert code == 0
    lines = out.splitlines()
    header = next(line for line in lines if "annual-wellness" in line)
    assert "birthday-greeting" in header
    assert "post-procedure-check-ins" in header
    months = [line for line in lines if line.startswith("│ 2026-")]
    assert len(months) == 12  # every month of the year has its row
    assert "received by the SMTP sink" in out


def test_demo_refuses_a_url_or_a_missing_folder_clearly(tmp_path: Path) -> None:
    code, _, err = carepath("demo", "--db", f"sqlite:///{tmp_path / 'demo.db'}")
    assert code == 2
    assert "--db takes a file path" in err
    code, _, err = carepath("demo", "--db", str(tmp_path / "no-such-folder" / "demo.db"))
    assert code == 2
    assert "does not exist" in err
    assert "Traceback" not in err


def test_outbox_status_and_release(tmp_path: Path) -> None:
    db = ("--db", str(tmp_path / "c.db"))
    assert carepath("init", *db)[0] == 0
    code, out, _ = carepath("outbox", "status", *db)
    assert code == 0
    assert "status" in out
    code, out, _ = carepath("outbox", "release", *db)
    assert (code, out.strip()) == (0, "released 0 held messages")


def test_a_bad_smtp_setting_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    db = ("--db", str(tmp_path / "c.db"))
    assert carepath("init", *db)[0] == 0
    monkeypatch.setenv("CAREPATH_SMTP_URL", "smtp://user:hunter2@mail?tls=sometimes")
    code, _, err = carepath("worker", "--once", *db)
    assert code == 2
    assert "tls must be required, opportunistic or none" in err
    assert "hunter2" not in err
    monkeypatch.setenv("CAREPATH_SMTP_URL", "smtp://127.0.0.1:9?tls=none")
    monkeypatch.setenv("CAREPATH_RETRY_FOR", "soon")
    code, _, err = carepath("worker", "--once", *db)
    assert code == 2
    assert "CAREPATH_RETRY_FOR" in err


def test_bounces_ingest_reads_report_files(tmp_path: Path) -> None:
    from tests.support.reports import arf, dsn  # noqa: PLC0415 - only this test needs them

    db = ("--db", str(tmp_path / "c.db"))
    assert carepath("init", *db)[0] == 0
    (tmp_path / "bounce.eml").write_bytes(dsn("<x@y>", "ann@example.org"))
    (tmp_path / "complaint.eml").write_bytes(arf("<z@y>", "bea@example.org"))
    code, out, _ = carepath(
        "bounces", "ingest", str(tmp_path / "bounce.eml"), str(tmp_path / "complaint.eml"), *db
    )
    assert code == 0
    assert out.strip() == (
        "hard bounces 1, soft bounces 0, complaints 1, unmatched 2; 2 addresses suppressed"
    )
    (tmp_path / "junk.eml").write_bytes(b"hello")
    code, _, err = carepath("bounces", "ingest", str(tmp_path / "junk.eml"), *db)
    assert code == 2
    assert "junk.eml: not a multipart/report message" in err


def test_validate_refuses_phi_in_subjects_and_urls_with_lines(tmp_path: Path) -> None:
    (tmp_path / "t.yaml").write_text(
        "template: t\n"
        'subject: "Results for {{ contact.first_name }}"\n'
        "html: |\n"
        '  <a href="https://x.example/r?mrn={{ contact.external_id }}">open</a>\n'
        "  {{ contact.first_name|attr('__class__') }}\n"
    )
    code, _, err = carepath("validate", str(tmp_path / "t.yaml"))
    assert code == 2
    assert "t.yaml:2: contact data may not appear in the subject (PHI)" in err
    assert "t.yaml:3: contact, trigger or event data may not appear in a URL (PHI)" in err
    assert "t.yaml:3: filter not allowed: attr" in err
    assert "Ann" not in err


def test_template_preview_renders_for_one_contact(tmp_path: Path) -> None:
    db = ("--db", str(tmp_path / "c.db"))
    (tmp_path / "t.yaml").write_text(
        "template: hello\nsubject: Welcome\nhtml: '<p>Hello {{ contact.first_name }}</p>'\n"
    )
    (tmp_path / "people.csv").write_text("external_id,email,first_name\nMRN-1,a@example.org,Ann\n")
    assert carepath("init", *db)[0] == 0
    assert carepath("apply", str(tmp_path / "t.yaml"), *db)[0] == 0
    assert carepath("contacts", "import", str(tmp_path / "people.csv"), *db)[0] == 0
    code, out, _ = carepath("template", "preview", "hello", "--contact", "ext:MRN-1", "--html", *db)
    assert code == 0
    assert out.splitlines()[0] == "Subject: Welcome"
    assert "Hello Ann" in out
    assert "<p>Hello Ann</p>" in out
    code, _, err = carepath("template", "preview", "nope", "--contact", "ext:MRN-1", *db)
    assert (code, err.strip()) == (2, "error: no template named nope")
    code, out, _ = carepath("audit", "export", *db)
    rows = [json.loads(line) for line in out.splitlines()]
    assert [(r["action"], r["contact_ids"]) for r in rows] == [
        ("resources.apply", []),
        ("contacts.import", []),
        ("template.preview", [1]),  # a read of Ann's data
    ]


def test_workflows_are_paused_and_activated_by_name(tmp_path: Path) -> None:
    db = ["--db", str(tmp_path / "w.db")]
    assert carepath("init", *db)[0] == 0
    assert carepath("apply", str(EXAMPLES), *db)[0] == 0
    assert carepath("workflows", "pause", "bariatric-journey", *db)[1].strip() == (
        "paused bariatric-journey"
    )
    assert "was paused already" in carepath("workflows", "pause", "bariatric-journey", *db)[1]
    assert carepath("workflows", "activate", "bariatric-journey", *db)[1].strip() == (
        "activated bariatric-journey"
    )
    code, _, err = carepath("workflows", "pause", "nope", *db)
    assert code == 2
    assert "no workflow named 'nope'" in err


def test_segments_refresh_count_and_members_as_spreadsheet_safe_csv(tmp_path: Path) -> None:
    db = ("--db", str(tmp_path / "s.db"))
    (tmp_path / "s.yaml").write_text(
        "segment: women-40-plus\n"
        "condition: {all: [{field: contact.sex, eq: female}, {field: contact.age, gte: 40}]}\n"
    )
    (tmp_path / "people.csv").write_text(
        "external_id,email,sex,birth_date\n"
        "=HYPERLINK(1),a@example.org,female,1970-03-01\n"
        "MRN-2,b@example.org,female,2001-03-01\n"
        "MRN-3,c@example.org,male,1960-03-01\n"
    )
    assert carepath("init", *db)[0] == 0
    assert carepath("apply", str(tmp_path / "s.yaml"), *db)[0] == 0
    assert carepath("contacts", "import", str(tmp_path / "people.csv"), *db)[0] == 0
    assert carepath("segments", "refresh", *db)[1].strip() == "women-40-plus: 1 entered, 0 left"
    assert carepath("segments", "count", "women-40-plus", *db)[1].strip() == "1"
    code, out, _ = carepath("segments", "members", "women-40-plus", *db)
    assert code == 0
    assert out.splitlines() == ["id,external_id,email", "1,'=HYPERLINK(1),a@example.org"]
    code, out, _ = carepath("segments", "members", "women-40-plus", "--format", "jsonl", *db)
    assert json.loads(out) == {"id": 1, "external_id": "=HYPERLINK(1)", "email": "a@example.org"}
    code, _, err = carepath("segments", "count", "nobody", *db)
    assert (code, err.strip()) == (2, "error: no segment named 'nobody'")


def test_audit_verify_and_export_from_the_command_line(tmp_path: Path) -> None:
    db = ("--db", str(tmp_path / "a.db"))
    assert carepath("init", *db)[0] == 0
    assert carepath("apply", str(EXAMPLES), *db)[0] == 0
    assert carepath("keys", "create", "--name", "bridge", "--scopes", "events:write", *db)[0] == 0
    code, out, _ = carepath("audit", "verify", *db)
    assert (code, out.strip()) == (0, "audit log intact: 2 rows")
    code, out, _ = carepath("audit", "export", *db)
    rows = [json.loads(line) for line in out.splitlines()]
    assert [r["action"] for r in rows] == ["resources.apply", "api_key.create"]
    assert rows[1]["prev_hash"] == rows[0]["hash"]
    with sqlite3.connect(tmp_path / "a.db") as raw:
        raw.execute("UPDATE audit_log SET detail = 'bridge: contacts:read' WHERE id = 2")
    code, _, err = carepath("audit", "verify", *db)
    assert (code, err.strip()) == (1, "audit log broken at row 2: its content was changed")


def test_a_keyring_file_is_made_rotated_and_pruned_from_the_command_line(tmp_path: Path) -> None:
    keyring = tmp_path / "carepath.keyring"
    env = {"COLUMNS": "200", "CAREPATH_KEYRING": "", "CAREPATH_KEYRING_FILE": str(keyring)}

    def run(*args: str) -> tuple[int, str, str]:
        result = runner.invoke(app, list(args), env=env)
        return result.exit_code, result.stdout, result.stderr

    db = ("--db", str(tmp_path / "k.db"))
    assert run("keys", "new-keyring", str(keyring))[0] == 0
    assert run("keys", "new-keyring", str(keyring))[2].strip().endswith("is never overwritten")
    (tmp_path / "people.csv").write_text(
        "external_id,email,first_name\nMRN-1,a@example.org,Ann\nMRN-2,b@example.org,Bob\n"
    )
    assert run("init", *db)[0] == 0
    assert not (tmp_path / "k.db.keyring").exists()  # the configured keyring is used
    assert run("contacts", "import", str(tmp_path / "people.csv"), *db)[0] == 0
    code, out, _ = run("keys", "add-key", *db)
    assert (code, out.split(":")[0]) == (0, "new current key k2")
    code, _, err = run("keys", "remove-key", "k1", *db)
    assert (code, err.strip()) == (2, "error: 6 values are still sealed with k1: rotate first")
    code, out, _ = run("keys", "rotate", "--batch", "1", *db)
    assert (code, out.splitlines()[-1]) == (0, "6 values re-sealed under key k2")
    code, out, _ = run("keys", "usage", *db)
    rows = [
        [cell.strip() for cell in line.strip("│").split("│")]
        for line in out.splitlines()
        if line.startswith("│ k")
    ]
    assert rows == [["k1", "0", ""], ["k2", "6", "yes"]]
    assert run("keys", "remove-key", "k1", *db)[0] == 0
    with sqlite3.connect(tmp_path / "k.db") as raw:
        stored = raw.execute("SELECT email, first_name FROM contacts").fetchall()
    assert all(value.startswith("cp1:k2:") for row in stored for value in row)
    code, out, _ = run("audit", "export", *db)
    actions = [json.loads(line)["action"] for line in out.splitlines()]
    assert actions[-3:] == ["keys.add", "keys.rotate", "keys.remove"]


def test_validate_warns_about_phi_outside_a_templates_allow_list_and_still_passes(
    tmp_path: Path,
) -> None:
    file = tmp_path / "t.yaml"
    file.write_text('template: hi\nsubject: Hi\nhtml: "Dear {{ contact.last_name }}"\n')
    code, out, err = carepath("validate", str(file))
    assert (code, out.strip()) == (0, "1 documents valid")
    assert err.splitlines() == [
        f"{file}:3: warning: shows PHI outside its allow-list (phi): last_name"
    ]


def test_a_lost_keyring_is_not_replaced_by_a_new_one_that_could_not_read_the_data(
    tmp_path: Path,
) -> None:
    env = {"COLUMNS": "200", "CAREPATH_KEYRING": "", "CAREPATH_KEYRING_FILE": ""}

    def run(*args: str) -> tuple[int, str, str]:
        result = runner.invoke(app, list(args), env=env)
        return result.exit_code, result.stdout, result.stderr

    db = ("--db", str(tmp_path / "e.db"))
    keyring = tmp_path / "e.db.keyring"
    (tmp_path / "people.csv").write_text("external_id,email\nMRN-1,a@example.org\n")
    assert run("init", *db)[0] == 0
    assert keyring.stat().st_mode & 0o777 == 0o600  # made beside the new database
    assert run("contacts", "import", str(tmp_path / "people.csv"), *db)[0] == 0
    keyring.unlink()
    assert run("init", *db)[0] == 0
    assert not keyring.exists()
    code, _, err = run("runs", "show", "ext:MRN-1", *db)
    assert code == 2
    assert "no keyring" in err


def test_page_views_are_reported_per_path(tmp_path: Path) -> None:
    db = ("--db", str(tmp_path / "c.db"))
    assert carepath("init", *db)[0] == 0
    with sa.create_engine(f"sqlite:///{tmp_path / 'c.db'}").begin() as conn:
        conn.execute(
            page_view_counts.insert(),
            [
                {"day": date(2026, 3, 1), "path": "/a", "anonymous": 4, "identified": 1},
                {"day": date(2026, 3, 2), "path": "/a", "anonymous": 2, "identified": 0},
                {"day": date(2026, 3, 2), "path": "/b", "anonymous": 9, "identified": 0},
            ],
        )
    code, out, _ = carepath(
        "report", "page-views", "--since", "2026-03-02", "--format", "json", *db
    )
    assert code == 0
    assert json.loads(out)["pages"] == [
        {"path": "/b", "identified": 0, "anonymous": 9, "views": 9},
        {"path": "/a", "identified": 0, "anonymous": 2, "views": 2},
    ]
    code, out, _ = carepath("report", "page-views", *db)
    assert code == 0
    assert "/a" in out
    assert "7" in out
    code, _, err = carepath("report", "page-views", "--until", "March", *db)
    assert (code, err.strip()) == (2, "error: --until is a day such as 2026-01-31")
