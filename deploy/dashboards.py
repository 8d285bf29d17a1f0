"""Grafana dashboards for every declared service and an overview, built with Grafana's own
typed builders (grafana-foundation-sdk, generated from Grafana's dashboard schema), so a
panel field Grafana does not know cannot be written. deploy/render.py writes them to
deploy/grafana/dashboards/; the compose stack provisions them (deploy/grafana/provisioning/).

Every query reads the metrics of services/common/metrics.py with the target labels the scrape
configs attach (`service`, `component`), or the recording rules of
deploy/prometheus/rules/vocreg.rules.yml, so the dashboards and the alerts agree.
"""
from __future__ import annotations

import json

from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.builders import prometheus, stat, timeseries
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models.dashboard import DataSourceRef

# The provisioned Prometheus data source (deploy/grafana/provisioning/datasources/).
DATASOURCE = DataSourceRef(type_val="prometheus", uid="prometheus")
# Server-side failures, as in the recording rules: refusals of bad input are not errors.
SERVER_ERRORS = 'INTERNAL|UNKNOWN|UNAVAILABLE|DEADLINE_EXCEEDED|DATA_LOSS'


def query(expr: str, legend: str = "", ref: str = "A") -> prometheus.Dataquery:
    return (prometheus.Dataquery().expr(expr).legend_format(legend or "__auto").ref_id(ref)
            .datasource(DATASOURCE))


def graph(title: str, unit: str, *queries: tuple[str, str], description: str = "",
          width: int = 12) -> timeseries.Panel:
    panel = (timeseries.Panel().title(title).unit(unit).datasource(DATASOURCE).height(8)
             .span(width).description(description))
    for index, (expr, legend) in enumerate(queries):
        panel = panel.with_target(query(expr, legend, chr(ord("A") + index)))
    return panel


def single(title: str, unit: str, expr: str, description: str = "",
           width: int = 6) -> stat.Panel:
    return (stat.Panel().title(title).unit(unit).datasource(DATASOURCE).height(4).span(width)
            .description(description).with_target(query(expr)))


def service_dashboard(spec) -> db.Dashboard:
    s = f'service="{spec.name}"'
    return (
        db.Dashboard(f"vocreg · {spec.name}")
        .uid(f"vocreg-{spec.name}")
        .description(f"{spec.name}: {spec.summary or spec.name} ({spec.proto})")
        .tags(["vocreg", spec.name])
        .timezone("Asia/Shanghai")
        .refresh("30s")
        .time("now-6h", "now")
        .with_row(db.Row("Health"))
        .with_panel(single("Serving (edges)", "none",
                           f'min(vocreg_edge_service_serving{{{s}}})',
                           "1 while a worker consumes the queue and answers its health check"))
        .with_panel(single("Workers up", "none", f'sum(up{{{s},component="worker"}})'))
        .with_panel(single("Edges up", "none", f'sum(up{{{s},component="edge"}})'))
        .with_panel(single("Events waiting to publish", "none",
                           f'sum(vocreg_outbox_pending{{{s}}})',
                           "Stored with their change, not yet on the bus (the relay retries)"))
        .with_row(db.Row("API (at the edges)"))
        .with_panel(graph("Calls by method", "reqps",
                          (f'sum by (grpc_method) (rate(grpc_server_handled_total{{{s}}}[5m]))',
                           "{{grpc_method}}")))
        .with_panel(graph("Answers by code", "reqps",
                          (f'sum by (grpc_code) (rate(grpc_server_handled_total{{{s}}}[5m]))',
                           "{{grpc_code}}"),
                          description="Refusals of bad input (INVALID_ARGUMENT, NOT_FOUND, ...) "
                                      "are the API working; the alert counts server errors only"))
        .with_panel(graph("Server error ratio", "percentunit",
                          (f'service:grpc_server_handled_errors:ratio_rate5m{{{s}}}', "errors"),
                          description=f"Codes {SERVER_ERRORS} over all calls (alert above 5%)"))
        .with_panel(graph("Latency p50 / p99 by method", "s",
                          (f'histogram_quantile(0.5, sum by (grpc_method, le) '
                           f'(rate(grpc_server_handling_seconds_bucket{{{s}}}[5m])))',
                           "p50 {{grpc_method}}"),
                          (f'histogram_quantile(0.99, sum by (grpc_method, le) '
                           f'(rate(grpc_server_handling_seconds_bucket{{{s}}}[5m])))',
                           "p99 {{grpc_method}}")))
        .with_row(db.Row("Worker"))
        .with_panel(graph("Entrypoints by outcome", "ops",
                          (f'sum by (entrypoint, grpc_code) '
                           f'(rate(vocreg_worker_handled_total{{{s}}}[5m]))',
                           "{{entrypoint}} {{grpc_code}}"),
                          description="RPCs, event handlers and timers, outcomes as gRPC codes"))
        .with_panel(graph("Entrypoint latency p99", "s",
                          (f'histogram_quantile(0.99, sum by (entrypoint, le) '
                           f'(rate(vocreg_worker_handling_seconds_bucket{{{s}}}[5m])))',
                           "{{entrypoint}}")))
        .with_panel(graph("Business events published", "ops",
                          (f'sum by (event_type) (rate(vocreg_events_total{{{s}}}[5m]))',
                           "{{event_type}}")))
        .with_panel(graph("Bus trouble", "ops",
                          (f'sum(rate(vocreg_event_publish_failures_total{{{s}}}[5m]))',
                           "publish failures"),
                          (f'sum by (event_type) (rate(vocreg_dead_letters_total{{{s}}}[5m]))',
                           "dead-lettered {{event_type}}"),
                          (f'sum by (event_type) (rate(vocreg_events_rejected_total{{{s}}}[5m]))',
                           "rejected {{event_type}}"),
                          (f'sum by (document) (rate(vocreg_write_conflicts_total{{{s}}}[5m]))',
                           "write conflicts {{document}}")))
        .with_panel(graph("Memory (resident)", "bytes",
                          (f'process_resident_memory_bytes{{{s}}}', "{{component}} {{instance}}")))
        .with_panel(graph("CPU", "percentunit",
                          (f'rate(process_cpu_seconds_total{{{s}}}[5m])',
                           "{{component}} {{instance}}")))
    )


def overview_dashboard(specs) -> db.Dashboard:
    board = (
        db.Dashboard("vocreg · overview")
        .uid("vocreg-overview")
        .description("Every vocreg service: serving, traffic, errors, latency, the bus, "
                     "and the alerts firing")
        .tags(["vocreg"])
        .timezone("Asia/Shanghai")
        .refresh("30s")
        .time("now-6h", "now")
        .with_row(db.Row("Now"))
        .with_panel(single("Alerts firing", "none",
                           'count(ALERTS{alertstate="firing",alertname=~"Vocreg.*"}) or vector(0)'))
        .with_panel(single("Services not serving", "none",
                           'count(max by (service) (vocreg_edge_service_serving) == 0) '
                           'or vector(0)'))
        .with_panel(single("Report editions overdue", "none",
                           'max(vocreg_report_editions_overdue) or vector(0)'))
        .with_panel(single("Escrow accounts out of balance", "none",
                           'max(vocreg_escrow_conservation_breaches) or vector(0)'))
        .with_row(db.Row("Services"))
        .with_panel(graph("Calls per service", "reqps",
                          ("service:grpc_server_handled:rate5m", "{{service}}")))
        .with_panel(graph("Server error ratio per service", "percentunit",
                          ("service:grpc_server_handled_errors:ratio_rate5m", "{{service}}")))
        .with_panel(graph("Latency p99 per service", "s",
                          ("service:grpc_server_handling_seconds:p99_5m", "{{service}}")))
        .with_panel(graph("Events waiting to publish", "none",
                          ("service:vocreg_outbox_pending:max", "{{service}}")))
        .with_panel(graph("Business events per service", "ops",
                          ("service:vocreg_events:rate5m", "{{service}}")))
        .with_panel(graph("Worker failures (INTERNAL)", "ops",
                          ("service:vocreg_worker_handled_internal:rate5m", "{{service}}")))
    )
    return board.link(db.DashboardLink("Services").type("dashboards").tags(["vocreg"])
                      .as_dropdown(True)) if specs else board


def to_json(board: db.Dashboard) -> str:
    built = board.build()
    for number, panel in enumerate(built.panels, 1):  # unique ids, stable across renders
        panel.id_val = number
    return json.dumps(built, cls=JSONEncoder, indent=2, ensure_ascii=False,
                      sort_keys=True) + "\n"


def render(specs) -> dict[str, str]:
    files = {f"deploy/grafana/dashboards/{spec.name}.json": to_json(service_dashboard(spec))
             for spec in specs}
    files["deploy/grafana/dashboards/overview.json"] = to_json(overview_dashboard(specs))
    return files


def expressions(text: str) -> list[str]:
    """Every PromQL expression of a dashboard's JSON (the tests check each with promtool)."""
    found = []

    def walk(node):
        if isinstance(node, dict):
            if isinstance(node.get("expr"), str):
                found.append(node["expr"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(json.loads(text))
    return found
