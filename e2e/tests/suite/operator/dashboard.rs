//! The chart's Grafana dashboard against the operator's real `/metrics`: the exposition passes
//! `promtool check metrics`, every query parses (`promtool check rules`), and every metric and
//! label name a panel or a template variable uses is exported.

use std::collections::BTreeSet;

use anyhow::{Context, Result, bail, ensure};
use hostrouter_e2e::cli::ToolCommand;
use hostrouter_e2e::operator::chart_dir;
use hostrouter_e2e::promql::{self, VariableQuery};
use hostrouter_e2e::toolchain::{tool, vars};
use hostrouter_e2e::{Progress, TestContext, wait_until};
use serde_json::Value;

use crate::world::{CONVERGE, World};

/// The dashboard the chart ships.
const DASHBOARD: &str = "dashboards/hostrouter.json";

/// One query of the dashboard and where it is.
struct Query {
    /// `panel 9 "Reconcile latency" query B`, `variable "router"`.
    place: String,
    expr: String,
    /// For a template variable: the whole variable query (`label_values(...)`).
    variable: Option<VariableQuery>,
}

pub async fn queries_use_only_exported_metrics(cx: &TestContext) -> Result<()> {
    // The per-router series exist once the operator manages a HostRouter; creating it writes
    // (the Proxy, the Envoy objects, the status), and each reconcile fills the histogram.
    let w = World::new(cx, &[]).await?;
    let ns = w.app.name();
    w.create_router(ns, "edge", &w.proxy_name).await?;
    let text = wait_until(
        "the router's series, a Proxy write and a finished reconcile on /metrics",
        CONVERGE,
        || async {
            let m = w.operator.metrics().await?;
            let hosts = hostrouter_e2e::http::metric(
                &m,
                "hostrouter_virtual_hosts",
                &[("namespace", ns), ("name", "edge")],
            );
            let writes = hostrouter_e2e::http::metric(
                &m,
                "hostrouter_object_writes_total",
                &[("kind", "Proxy"), ("operation", "apply")],
            );
            let reconciled =
                hostrouter_e2e::http::metric(&m, "controller_runtime_reconcile_time_seconds_count", &[]);
            Ok(
                if hosts.is_some_and(|h| h > 0.0)
                    && writes.is_some_and(|n| n >= 1.0)
                    && reconciled.is_some_and(|n| n >= 1.0)
                {
                    Progress::Done(m)
                } else {
                    Progress::pending(format!(
                        "virtual hosts {hosts:?}, Proxy applies {writes:?}, reconciles {reconciled:?}"
                    ))
                },
            )
        },
    )
    .await?;
    std::fs::write(cx.log_dir().join("metrics.txt"), &text)?;
    let promtool = tool(vars::PROMTOOL)?;

    // The exposition as Prometheus lints it: no problem allowed.
    let lint = ToolCommand::new(&promtool)
        .args(["check", "metrics"])
        .stdin(text.clone())
        .status_and_text()
        .await?;
    let (linted, said) = lint;
    ensure!(
        linted && said.trim().is_empty(),
        "promtool check metrics on the operator's /metrics (in {}):\n{said}",
        cx.log_dir().join("metrics.txt").display()
    );
    let exported = promql::exposition(&text)?;

    let path = chart_dir().join(DASHBOARD);
    let dashboard: Value = serde_json::from_str(
        &std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?,
    )
    .with_context(|| format!("parsing {}", path.display()))?;
    let (queries, panels) = queries_of(&dashboard)?;
    ensure!(!queries.is_empty(), "no query in {}", path.display());

    // Every query parses as PromQL (Grafana's variables replaced), by Prometheus' own parser.
    let rules = promql::rules_file(
        &queries
            .iter()
            .filter(|q| !q.expr.is_empty())
            .map(|q| (q.place.clone(), promql::without_grafana_variables(&q.expr)))
            .collect::<Vec<_>>(),
    )?;
    let rules_path = cx.log_dir().join("dashboard-rules.yaml");
    std::fs::write(&rules_path, rules)?;
    let parsed = ToolCommand::new(&promtool)
        .args(["check", "rules"])
        .arg(&rules_path)
        .run()
        .await
        .context("a dashboard query is not valid PromQL")?;

    // Every metric and label a query uses is exported.
    let mut problems = Vec::new();
    let mut metrics = BTreeSet::new();
    let mut labels = BTreeSet::new();
    for q in &queries {
        let found = match &q.variable {
            Some(v) => v.problems(&exported),
            None => promql::problems(&q.expr, &exported),
        }
        .with_context(|| format!("{}: {}", q.place, q.expr))?;
        problems.extend(
            found
                .into_iter()
                .map(|p| format!("{}: {p}\n    {}", q.place, q.expr)),
        );
        let ids = promql::identifiers(&q.expr)?;
        metrics.extend(ids.metrics().into_iter().map(str::to_owned));
        labels.extend(ids.grouping);
        labels.extend(ids.selectors.into_iter().flat_map(|s| s.labels));
        if let Some(VariableQuery::LabelValues { label, .. }) = &q.variable {
            labels.insert(label.clone());
        }
    }
    ensure!(
        problems.is_empty(),
        "{} uses what the operator does not export (its /metrics is in {}):\n{}",
        path.display(),
        cx.log_dir().join("metrics.txt").display(),
        problems.join("\n")
    );
    let unused: Vec<&String> = exported
        .keys()
        .filter(|m| m.starts_with("hostrouter_") && !metrics.contains(*m))
        .collect();
    eprintln!(
        "{}: promtool check metrics: no lint problem in {} series names; promtool check rules: {}; \
         {panels} panels and {} queries ({} of template variables) use {} metrics and {} label names, \
         all exported; hostrouter_ series on no panel: {unused:?}",
        cx.name(),
        exported.len(),
        parsed.trim().replace('\n', " "),
        queries.len(),
        queries.iter().filter(|q| q.variable.is_some()).count(),
        metrics.len(),
        labels.len(),
    );
    Ok(())
}

/// Every query of the dashboard (panels, panels inside rows, template variables of type
/// query), and the number of panels that are not rows.
fn queries_of(dashboard: &Value) -> Result<(Vec<Query>, usize)> {
    let mut queries = Vec::new();
    let mut panels = 0;
    let top = dashboard["panels"]
        .as_array()
        .context("the dashboard has no panels")?;
    for panel in top
        .iter()
        .flat_map(|p| std::iter::once(p).chain(p["panels"].as_array().into_iter().flatten()))
    {
        if panel["type"] == "row" {
            continue;
        }
        panels += 1;
        let title = panel["title"].as_str().unwrap_or_default();
        let targets = panel["targets"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default();
        ensure!(!targets.is_empty(), "panel {title:?} has no query");
        for target in targets {
            let place = format!(
                "panel {} {title:?} query {}",
                panel["id"],
                target["refId"].as_str().unwrap_or("?")
            );
            let expr = target["expr"]
                .as_str()
                .with_context(|| format!("{place} has no expr"))?;
            queries.push(Query {
                place,
                expr: expr.to_owned(),
                variable: None,
            });
        }
    }
    for variable in dashboard["templating"]["list"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
    {
        if variable["type"] != "query" {
            continue;
        }
        let place = format!(
            "variable {:?}",
            variable["name"].as_str().unwrap_or_default()
        );
        // Grafana writes the query as a string, or as an object holding it.
        let text = match &variable["query"] {
            Value::String(s) => s.as_str(),
            q => match q["query"].as_str() {
                Some(s) => s,
                None => bail!("{place} has no query"),
            },
        };
        let parsed = VariableQuery::parse(text).with_context(|| place.clone())?;
        queries.push(Query {
            place,
            // Empty for label_values(label): no PromQL, its label is checked on its own.
            expr: parsed.expr().unwrap_or_default().to_owned(),
            variable: Some(parsed),
        });
    }
    Ok((queries, panels))
}
