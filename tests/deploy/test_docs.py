"""The documents a newcomer and a consumer read are complete and point only at what exists:
README.md's walkthrough and areas and protos/README.md are fresh renders; every event of every
events.proto is in the contracts; every variable the code reads is in the configuration table;
no document or comment points at a file outside the repository."""
from __future__ import annotations

import importlib.util
import re
import subprocess

from tests.deploy.tools import ROOT

README = ROOT / "README.md"
CONTRACTS = ROOT / "protos" / "README.md"


def render():
    spec = importlib.util.spec_from_file_location("vocreg_render", ROOT / "protos" / "render.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_rendered_documents_are_fresh():
    doc = render()
    text = README.read_text(encoding="utf-8")
    assert doc.readme_with_walkthrough(text) == text, "run `make docs` and commit README.md"
    assert CONTRACTS.read_text(encoding="utf-8") == doc.render_protos_readme() + "\n", \
        "run `make docs` and commit protos/README.md"


def test_every_event_of_every_events_proto_is_in_the_contracts():
    """Read from the .proto text itself, not through the renderer."""
    contracts = CONTRACTS.read_text(encoding="utf-8")
    found = 0
    for path in sorted((ROOT / "protos" / "vocreg").glob("*/v1/events.proto")):
        producer = path.parent.parent.name
        package = f"vocreg.{producer}.v1"
        assert f"exchange `{producer}.events`" in contracts, producer
        for name in re.findall(r"^message (\w+) \{", path.read_text(encoding="utf-8"), re.M):
            assert f"| `{name}` | `{package}.{name}` |" in contracts, f"{package}.{name}"
            found += 1
    assert found >= 30


def variables_read_by_the_code() -> set[str]:
    names = set()
    pattern = re.compile(r"""(?:env|env_int|env_float)\(\s*"([A-Z][A-Z0-9_]+)"|"""
                         r"""setting(?:_int)?\(\s*\w+,\s*"([A-Z][A-Z0-9_]+)"|"""
                         r"""environ\.get\(\s*"([A-Z][A-Z0-9_]+)"|"""
                         r"""^([A-Z_]+_ENV) = "([A-Z][A-Z0-9_]+)\"""", re.M)
    for path in (ROOT / "services").rglob("*.py"):
        if "gen" in path.parts:
            continue
        for match in pattern.finditer(path.read_text(encoding="utf-8")):
            names.update(g for g in match.groups() if g and not g.endswith("_ENV"))
    return names


def test_every_variable_the_code_reads_is_in_the_configuration_table():
    text = README.read_text(encoding="utf-8")
    table = text[text.index("## Configuration"):text.index("## How it is built")]
    names = variables_read_by_the_code()
    assert {"AMQP_URI", "GRPC_PORT", "VOCREG_CALENDAR_OVERRIDES", "VOCREG_CLOCK_FILE",
            "FAULT_INJECT_PUBLISH_FAILURES", "VOCREG_PAGE_TOKEN_SECRET"} <= names
    missing = sorted(n for n in names if f"`{n}`" not in table)
    assert missing == [], f"document these in README.md's configuration table: {missing}"
    for test_only in ("VOCREG_CLOCK_FILE", "FAULT_INJECT_PUBLISH_FAILURES"):
        row = next(line for line in table.splitlines() if line.startswith(f"| `{test_only}`"))
        assert "tests only" in row


# Files that live with the project's requirements, outside this repository.
OUTSIDE = re.compile(r"RULES\.md|DESIGN\.md|STYLE\.md|\bshared/|\bseeds/")


def tracked_files() -> list:
    listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"],
                            cwd=ROOT, capture_output=True, text=True, check=True).stdout
    return [ROOT / line for line in listed.splitlines()
            if not line.startswith("services/gen/") and (ROOT / line).is_file()]


def test_nothing_points_at_a_file_outside_the_repository():
    offenders = []
    for path in tracked_files():
        if path.suffix not in (".py", ".md", ".proto", ".yaml", ".yml", ".toml", ".json",
                               ".sh", "") or path == ROOT / "tests" / "deploy" / "test_docs.py":
            continue
        for n, line in enumerate(path.read_text(encoding="utf-8", errors="replace")
                                 .splitlines(), 1):
            if OUTSIDE.search(line):
                offenders.append(f"{path.relative_to(ROOT)}:{n}: {line.strip()[:80]}")
    assert offenders == []


def test_every_path_the_documents_name_exists():
    """Markdown links, and `code` spans that name a path in the repository."""
    missing = []
    for doc in (README, CONTRACTS, ROOT / "k8s" / "README.md"):
        text = doc.read_text(encoding="utf-8")
        names = re.findall(r"\]\(([^)#\s]+)", text)
        names += [n for n in re.findall(r"`([\w./-]+/[\w./-]*)`", text)
                  if re.match(r"(services|protos|deploy|k8s|tests|\.ci)/|[\w-]+\.(py|md|proto|"
                              r"ya?ml|json)$", n)]
        for name in names:
            if name.startswith(("http://", "https://")):
                continue
            bases = (doc.parent, ROOT)
            if not any((base / name).exists() for base in bases):
                missing.append(f"{doc.relative_to(ROOT)}: {name}")
    assert missing == []
