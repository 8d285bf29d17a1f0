"""Render what is derived from the protos and the example requests, so it cannot drift from
them: protos/README.md (every service's RPCs, the field limits of their requests, and the event
contracts: exchange, routing key, message, fields) and the walkthrough section of README.md
(grpcurl commands over protos/examples/, and the same first call from Python).

    make docs          # (.venv/bin/python protos/render.py)

tests/deploy/test_docs.py fails while either file differs from a fresh render, and
tests/e2e/test_examples.py sends every example through a running platform the way the
walkthrough does (the same placeholders, the same captures).
"""
from __future__ import annotations

import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "protos" / "examples"
WALKTHROUGH = EXAMPLES / "walkthrough.json"
BEGIN, END = "<!-- walkthrough:begin (rendered by protos/render.py) -->", "<!-- walkthrough:end -->"
EXAMPLE_INSTITUTION = "52410502MJ0000088Y"
# Shell variables the walkthrough captures, and the placeholders of the example files they fill.
PLACEHOLDERS = {"today": "TODAY", "application_id": "APP", "certificate_number": "CERT"}
TOKEN_VARIABLES = {"institution": "INST", "regulator": "REG"}


# --- the walkthrough: shared with tests/e2e/test_examples.py --------------------------------
def steps() -> list[dict]:
    return json.loads(WALKTHROUGH.read_text(encoding="utf-8"))


def fill(text: str, values: dict[str, str]) -> str:
    """An example file with its {{placeholders}} replaced, as the walkthrough's sed does.
    `values` maps shell variable names (TODAY, APP, CERT) to their values."""
    for placeholder, variable in PLACEHOLDERS.items():
        text = text.replace("{{" + placeholder + "}}", values.get(variable, ""))
    return text


def json_path(data, path: str):
    """A jq path such as .results[0].certificateNumber, on decoded JSON."""
    for name, index in re.findall(r"\.(\w+)|\[(\d+)\]", path):
        data = data[name] if name else data[int(index)]
    return data


def render_walkthrough() -> str:
    lines = [
        BEGIN,
        "```sh",
        "# Once per shell: the examples, today's date in Shanghai, a helper that fills the",
        "# {{placeholders}} of an example file, and two development tokens.",
        "EX=protos/examples",
        "TODAY=$(TZ=Asia/Shanghai date +%F)",
        'fill() { sed -e "s/{{today}}/$TODAY/g" -e "s/{{application_id}}/$APP/g" \\',
        '             -e "s/{{certificate_number}}/$CERT/g" "$EX/$1"; }',
        "REG=$(.venv/bin/python -m services.common.auth regulator)",
        f"INST=$(.venv/bin/python -m services.common.auth institution --institution-id "
        f"{EXAMPLE_INSTITUTION})",
    ]
    for n, step in enumerate(steps(), 1):
        auth = f'-H "authorization: Bearer ${TOKEN_VARIABLES[step["as"]]}" ' if step["as"] else ""
        call = (f"fill {step['file']} | grpcurl -plaintext {auth}-d @ localhost:50051 "
                f"{step['method']}")
        lines += ["", f"# {n}. {step['title']}"]
        capture = step.get("capture") or {}
        if capture:
            [(variable, path)] = capture.items()
            lines.append(f"{variable}=$({call} | jq -r {path}); echo {variable}=${variable}")
        else:
            lines.append(call)
    lines += [
        "```",
        "",
        "The same first call from Python (the stubs are on the venv's path; `.venv/bin/python`):",
        "",
        "```python",
        *PYTHON_EXAMPLE.strip("\n").splitlines(),
        "```",
        END,
    ]
    return "\n".join(lines)


PYTHON_EXAMPLE = f'''
import grpc
from google.protobuf import json_format
from vocreg.filing.v1 import filing_pb2, filing_pb2_grpc

from services.common.auth import issue_token

channel = grpc.insecure_channel("localhost:50051")
filing = filing_pb2_grpc.FilingServiceStub(channel)
token = issue_token("institution", "institution", institution_id="{EXAMPLE_INSTITUTION}")
with open("protos/examples/filing/SubmitApplication.json", encoding="utf-8") as fh:
    request = json_format.Parse(fh.read(), filing_pb2.SubmitApplicationRequest())
answer = filing.SubmitApplication(request, timeout=10,
                                  metadata=[("authorization", f"Bearer {{token}}")])
print(answer.application.application_id, filing_pb2.ApplicationState.Name(answer.application.state))
'''


AREAS_BEGIN, AREAS_END = ("<!-- areas:begin (rendered by protos/render.py) -->",
                          "<!-- areas:end -->")


def render_areas() -> str:
    """The default areas (Anyang) with their quotas, as filing's ListAreas answers them."""
    from services.filing import domain

    lines = [AREAS_BEGIN, "| district_code | name | kind | quota per occupation |",
             "|---|---|---|---|"]
    for code, (name, kind) in sorted(domain.ANYANG_AREAS.items()):
        quota = (f"{domain.DISTRICT_QUOTA} across all districts" if kind == "district"
                 else f"{domain.COUNTY_QUOTA} in this county")
        lines.append(f"| {code} | {name} | {kind} | {quota} |")
    return "\n".join([*lines, AREAS_END])


def _replace(text: str, begin: str, end: str, rendered: str) -> str:
    start, stop = text.index(begin), text.index(end) + len(end)
    return text[:start] + rendered + text[stop:]


def readme_with_walkthrough(text: str) -> str:
    """README.md with its rendered sections (the walkthrough, the areas) fresh."""
    text = _replace(text, BEGIN, END, render_walkthrough())
    return _replace(text, AREAS_BEGIN, AREAS_END, render_areas())


# --- protos/README.md ------------------------------------------------------------------------
def _descriptor_modules():
    """(service declarations, events modules by producer): every events.proto of the tree,
    built services or not (their contracts are agreed before they are built)."""
    import importlib

    from services.common.protos import service_proto
    from services.common.spec import registry

    services = [service_proto(name) for name in registry()]
    events = {}
    for path in sorted((ROOT / "protos" / "vocreg").glob("*/v1/events.proto")):
        producer = path.parent.parent.name
        events[producer] = importlib.import_module(f"vocreg.{producer}.v1.events_pb2")
    return services, events


def _field_type(field) -> str:
    from google.protobuf.descriptor import FieldDescriptor

    if field.message_type is not None:
        name = field.message_type.full_name
    elif field.enum_type is not None:
        name = field.enum_type.full_name
    else:
        name = {FieldDescriptor.TYPE_STRING: "string", FieldDescriptor.TYPE_BOOL: "bool",
                FieldDescriptor.TYPE_INT32: "int32", FieldDescriptor.TYPE_INT64: "int64",
                FieldDescriptor.TYPE_UINT32: "uint32", FieldDescriptor.TYPE_DOUBLE: "double",
                FieldDescriptor.TYPE_BYTES: "bytes"}.get(field.type, str(field.type))
    return f"repeated {name}" if field.is_repeated else name


def _access(policy) -> str:
    if policy is None:
        return "nobody"
    return "public" if policy.public else ", ".join(sorted(policy.roles))


def render_protos_readme() -> str:
    from services.common import limits
    from services.common.idempotency import request_id_use
    from services.common.protos import access_policies

    services, events = _descriptor_modules()
    out = [
        "# vocreg's API and event contracts",
        "",
        "Rendered from the protos by `make docs` (protos/render.py); do not edit by hand. The",
        "protos under `vocreg/` are the one schema: the gRPC API the edge serves (with",
        "reflection, so `grpcurl localhost:50051 describe <name>` shows any of it), the dicts",
        "the workers exchange over the bus, and the events. Example requests for every step of",
        "a filing and a certificate batch are in `examples/`, walked through in the top-level",
        "README.",
        "",
        "## Conventions every RPC follows",
        "",
        "- **Who may call** is declared on each RPC (`vocreg.common.v1.access`); a bearer JWT",
        "  carries the role. Refused: `UNAUTHENTICATED` (no or bad token), `PERMISSION_DENIED`.",
        "- **Limits** are declared on each request field (`vocreg.common.v1.field`): the most",
        "  characters of a string, the most entries of a list. Control characters are refused",
        "  in every string (line breaks only in multi-line text). A violation is",
        "  `INVALID_ARGUMENT` naming the field's path, e.g.",
        "  `rows[3].row_ref: at most 64 characters (got 100000)`.",
        "- **Retries**: every RPC that changes something takes a `request_id` (1-64 of",
        "  `A-Z a-z 0-9 . _ : -`), required or optional as the table says. The same request",
        "  again (same caller, same id, same content) answers as the first time did and changes",
        "  nothing more; the same id with other content is `ALREADY_EXISTS`; a refused request",
        "  stores nothing. Ids are remembered for 7 days. Reads are marked",
        "  `idempotency_level = NO_SIDE_EFFECTS`.",
        "- **Paging**: every List RPC takes `page {page_size, page_token}` (size 1-100, default",
        "  20) and answers `page.next_page_token`, empty on the last page. A token is opaque and",
        "  signed, valid for 24 hours, for the same RPC, caller and filters; any other use is",
        "  `INVALID_ARGUMENT` (start again from the first page).",
        "",
    ]
    for proto in services:
        policies = access_policies(proto.name)
        out += [f"## {proto.full_name}", "", f"Proto: `vocreg/{proto.name}/v1/{proto.name}.proto`.", "",
                "| RPC | who may call | changes | request_id |", "|---|---|---|---|"]
        for method in proto.service_descriptor.methods:
            use = request_id_use(proto.name, method.name)
            changes = "no" if use is None else "yes"
            out.append(f"| {method.name} | {_access(policies.get(method.name))} | {changes} | "
                       f"{(use or '').lower() or '-'} |")
        out += ["", "Limits of the fields of its requests (characters / entries):", "",
                "| field | type | limit |", "|---|---|---|"]
        for message in limits.request_messages(proto.service_descriptor):
            for field in message.fields:
                rules = limits.field_rules(field)
                parts = []
                if rules and rules.max_length:
                    parts.append(f"{rules.max_length} characters")
                if rules and rules.max_items:
                    parts.append(f"{rules.max_items} entries")
                if rules and rules.multiline:
                    parts.append("multi-line")
                if parts:
                    out.append(f"| {message.full_name}.{field.name} | {_field_type(field)} | "
                               f"{', '.join(parts)} |")
        out.append("")
    out += [
        "## Event contracts",
        "",
        "Each service publishes the facts it records on its own RabbitMQ exchange,",
        "`<service>.events` (type `topic`, durable), one message per event type. The routing",
        "key is the message's name; the body is the message in the proto JSON mapping with",
        "proto field names (`content-type: application/json`); the header `vocreg.event_id`",
        "repeats `meta.event_id`. Delivery is at least once: a consumer is idempotent on",
        "`meta.event_id`, and one that keeps a copy of an aggregate's state applies an event",
        "only when its `meta.sequence` is above the last one applied for `meta.aggregate_id`",
        "(redeliveries and reordering then change nothing). A consumer parses the body with",
        "the producer's `events.proto`, accepting fields it does not know.",
        "",
        "A nameko service consumes with `@event_handler(\"filing\", \"InstitutionFiled\")` (in",
        "vocreg: `services.common.entrypoints.on_event`, which parses the message); any other",
        "AMQP client binds a durable queue of its own to the exchange with the routing key.",
        "",
    ]
    for producer, module in events.items():
        out += [f"### {producer}: exchange `{producer}.events`", "",
                f"Proto: `vocreg/{producer}/v1/events.proto`.", "",
                "| routing key | message | fields |", "|---|---|---|"]
        for name, message in module.DESCRIPTOR.message_types_by_name.items():
            fields = ", ".join(f"`{f.name}`" for f in message.fields if f.name != "meta")
            out.append(f"| `{name}` | `{message.full_name}` | {fields} |")
        out.append("")
    return "\n".join(out)


def main() -> int:
    readme = ROOT / "README.md"
    readme.write_text(readme_with_walkthrough(readme.read_text(encoding="utf-8")),
                      encoding="utf-8")
    (ROOT / "protos" / "README.md").write_text(render_protos_readme() + "\n", encoding="utf-8")
    print("rendered README.md (walkthrough) and protos/README.md")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    sys.exit(main())
