//! What a PromQL query reads, to check a dashboard's queries against what a process exports.
//!
//! [`identifiers`] extracts the metric names and label names of a query: each selector's metric
//! and the label names of its `{...}` matchers, and the label names of `by`, `without`, `on`,
//! `ignoring`, `group_left` and `group_right`. It is not a PromQL parser: it finds identifiers
//! by their place (`promtool check rules` parses the queries for real, see
//! [`rules_file`]). An identifier is a metric name unless it is followed by `(` (a function or
//! an aggregation), is a keyword or an aggregation operator, or stands inside a matcher or a
//! label list; strings, comments and `[...]` (ranges, subqueries) are skipped.
//!
//! [`exposition`] reads the Prometheus text format: every series name with the label names it
//! has (a histogram's `_bucket`, `_sum` and `_count` series are names of their own there, and
//! only `_bucket` has `le`). [`problems`] compares the two.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::{Context, Result, bail, ensure};

/// Series names of a `/metrics` text, each with the union of its samples' label names.
pub type Exposition = BTreeMap<String, BTreeSet<String>>;

/// One vector selector: `metric{label="...", ...}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selector {
    /// The metric name; `None` for a selector of matchers only (`{job="x"}`) without
    /// `__name__="..."`.
    pub metric: Option<String>,
    /// Label names of the matchers, in order (`__name__` left out).
    pub labels: Vec<String>,
}

/// The identifiers of one query.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Identifiers {
    pub selectors: Vec<Selector>,
    /// Label names in `by`, `without`, `on`, `ignoring`, `group_left` and `group_right`.
    pub grouping: BTreeSet<String>,
}

impl Identifiers {
    /// Every metric name the query selects.
    pub fn metrics(&self) -> BTreeSet<&str> {
        self.selectors
            .iter()
            .filter_map(|s| s.metric.as_deref())
            .collect()
    }
}

/// Aggregation operators: an identifier that is one of these is never a metric name, also
/// where `by (...)`/`without (...)` come between it and its `(`.
const AGGREGATIONS: &[&str] = &[
    "sum",
    "min",
    "max",
    "avg",
    "group",
    "stddev",
    "stdvar",
    "count",
    "count_values",
    "bottomk",
    "topk",
    "quantile",
    "limitk",
    "limit_ratio",
];

/// Keywords followed by a list of label names in parentheses (optional for group_left/right).
const GROUPING: &[&str] = &[
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
];

/// Keywords that are neither metrics nor followed by labels.
const KEYWORDS: &[&str] = &[
    "and", "or", "unless", "bool", "offset", "atan2", "inf", "nan",
];

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Ident(String),
    Str(String),
    /// A number, a duration, or a Grafana variable standing for one (`$n`).
    Number,
    /// `=`, `!=`, `=~`, `!~` (matchers), and the other operators and punctuation.
    Op(String),
}

fn tokens(expr: &str) -> Result<Vec<Token>> {
    let chars: Vec<char> = expr.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    let at = |i: usize| chars.get(i).copied();
    while let Some(c) = at(i) {
        match c {
            c if c.is_whitespace() => i += 1,
            '#' => {
                while at(i).is_some_and(|c| c != '\n') {
                    i += 1;
                }
            }
            '"' | '\'' | '`' => {
                let start = i;
                i += 1;
                let mut s = String::new();
                loop {
                    match at(i) {
                        None => bail!("unterminated string at offset {start}"),
                        Some(q) if q == c => break,
                        Some('\\') if c != '`' => {
                            let escaped = at(i + 1).with_context(|| {
                                format!("unterminated string at offset {start}")
                            })?;
                            s.push(escaped);
                            i += 2;
                        }
                        Some(other) => {
                            s.push(other);
                            i += 1;
                        }
                    }
                }
                i += 1;
                out.push(Token::Str(s));
            }
            // Ranges and subqueries: `[5m]`, `[$__rate_interval]`, `[1h:5m]`.
            '[' => {
                let start = i;
                while at(i).is_some_and(|c| c != ']') {
                    i += 1;
                }
                ensure!(at(i).is_some(), "unclosed '[' at offset {start}");
                i += 1;
                out.push(Token::Number);
            }
            // Grafana variables: `$name`, `${name}`, `${name:format}`.
            '$' => {
                i += 1;
                if at(i) == Some('{') {
                    while at(i).is_some_and(|c| c != '}') {
                        i += 1;
                    }
                    ensure!(at(i).is_some(), "unclosed '${{' in {expr:?}");
                    i += 1;
                } else {
                    while at(i).is_some_and(|c| c.is_ascii_alphanumeric() || c == '_') {
                        i += 1;
                    }
                }
                out.push(Token::Number);
            }
            c if c.is_ascii_digit()
                || (c == '.' && at(i + 1).is_some_and(|d| d.is_ascii_digit())) =>
            {
                // Digits, hex, durations (`1h30m`), and an exponent's sign (`1e-3`).
                while let Some(d) = at(i) {
                    let exponent_sign =
                        (d == '+' || d == '-') && matches!(at(i - 1), Some('e' | 'E'));
                    if !(d.is_ascii_alphanumeric() || d == '.' || d == '_' || exponent_sign) {
                        break;
                    }
                    i += 1;
                }
                out.push(Token::Number);
            }
            c if c.is_ascii_alphabetic() || c == '_' || c == ':' => {
                let start = i;
                while at(i).is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':') {
                    i += 1;
                }
                out.push(Token::Ident(chars[start..i].iter().collect()));
            }
            _ => {
                let two: String = chars[i..(i + 2).min(chars.len())].iter().collect();
                if ["!=", "=~", "!~", "==", "<=", ">="].contains(&two.as_str()) {
                    out.push(Token::Op(two));
                    i += 2;
                } else if "(){},=<>+-*/%^@".contains(c) {
                    out.push(Token::Op(c.to_string()));
                    i += 1;
                } else {
                    bail!("unexpected {c:?} at offset {i} in {expr:?}");
                }
            }
        }
    }
    Ok(out)
}

fn is_op(t: Option<&Token>, op: &str) -> bool {
    matches!(t, Some(Token::Op(o)) if o == op)
}

/// The metric names and label names `expr` uses.
pub fn identifiers(expr: &str) -> Result<Identifiers> {
    let toks = tokens(expr)?;
    let mut ids = Identifiers::default();
    let mut i = 0;
    let mut depth = 0i32;
    while let Some(tok) = toks.get(i) {
        match tok {
            Token::Ident(name) => {
                let lower = name.to_ascii_lowercase();
                let next = toks.get(i + 1);
                if GROUPING.contains(&lower.as_str()) {
                    if is_op(next, "(") {
                        i = label_list(&toks, i + 1, &mut ids.grouping)
                            .with_context(|| format!("after {name:?} in {expr:?}"))?;
                        continue;
                    }
                    ensure!(
                        lower.starts_with("group_"),
                        "{name:?} without a label list in {expr:?}"
                    );
                } else if AGGREGATIONS.contains(&lower.as_str())
                    || KEYWORDS.contains(&lower.as_str())
                    || is_op(next, "(")
                {
                    // An aggregation, a keyword or a function.
                } else if is_op(next, "{") {
                    let (selector, after) = matchers(&toks, i + 1, Some(name.clone()))
                        .with_context(|| format!("in the matchers of {name:?} in {expr:?}"))?;
                    ids.selectors.push(selector);
                    i = after;
                    continue;
                } else {
                    ids.selectors.push(Selector {
                        metric: Some(name.clone()),
                        labels: Vec::new(),
                    });
                }
            }
            Token::Op(o) if o == "{" => {
                let (selector, after) = matchers(&toks, i, None)
                    .with_context(|| format!("in a selector of {expr:?}"))?;
                ids.selectors.push(selector);
                i = after;
                continue;
            }
            Token::Op(o) if o == "}" => bail!("unbalanced '}}' in {expr:?}"),
            Token::Op(o) if o == "(" => depth += 1,
            Token::Op(o) if o == ")" => {
                depth -= 1;
                ensure!(depth >= 0, "unbalanced ')' in {expr:?}");
            }
            _ => {}
        }
        i += 1;
    }
    ensure!(depth == 0, "unbalanced '(' in {expr:?}");
    Ok(ids)
}

/// Reads `( label, ... )` starting at the `(` at `i`; returns the index after `)`.
fn label_list(toks: &[Token], mut i: usize, into: &mut BTreeSet<String>) -> Result<usize> {
    ensure!(is_op(toks.get(i), "("), "expected '('");
    i += 1;
    loop {
        match toks.get(i) {
            Some(Token::Op(o)) if o == ")" => return Ok(i + 1),
            Some(Token::Ident(label)) => {
                into.insert(label.clone());
                i += 1;
                match toks.get(i) {
                    Some(Token::Op(o)) if o == "," => i += 1,
                    Some(Token::Op(o)) if o == ")" => {}
                    other => bail!("expected ',' or ')' after label {label:?}, found {other:?}"),
                }
            }
            other => bail!("expected a label name, found {other:?}"),
        }
    }
}

/// Reads `{ label op "value", ... }` starting at the `{` at `i`; returns the selector and the
/// index after `}`.
fn matchers(toks: &[Token], mut i: usize, metric: Option<String>) -> Result<(Selector, usize)> {
    ensure!(is_op(toks.get(i), "{"), "expected '{{'");
    i += 1;
    let mut selector = Selector {
        metric,
        labels: Vec::new(),
    };
    loop {
        match toks.get(i) {
            Some(Token::Op(o)) if o == "}" => return Ok((selector, i + 1)),
            Some(Token::Ident(label)) => {
                let op = match toks.get(i + 1) {
                    Some(Token::Op(op)) if ["=", "!=", "=~", "!~"].contains(&op.as_str()) => op,
                    other => bail!("expected a matcher operator after {label:?}, found {other:?}"),
                };
                let value = match toks.get(i + 2) {
                    Some(Token::Str(value)) => value,
                    other => bail!("expected a string after {label}{op}, found {other:?}"),
                };
                if label == "__name__" {
                    ensure!(
                        op == "=",
                        "__name__{op} selects metrics by pattern: not checkable"
                    );
                    ensure!(
                        selector.metric.is_none(),
                        "a metric name and __name__ in one selector"
                    );
                    selector.metric = Some(value.clone());
                } else {
                    selector.labels.push(label.clone());
                }
                i += 3;
                match toks.get(i) {
                    Some(Token::Op(o)) if o == "," => i += 1,
                    Some(Token::Op(o)) if o == "}" => {}
                    other => bail!("expected ',' or '}}' after a matcher, found {other:?}"),
                }
            }
            other => bail!("expected a label name, found {other:?}"),
        }
    }
}

/// Series names and their label names in a Prometheus text exposition (comments skipped).
pub fn exposition(text: &str) -> Result<Exposition> {
    let mut out = Exposition::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let end = line
            .find(|c: char| c == '{' || c.is_whitespace())
            .with_context(|| format!("line {}: no value: {line}", n + 1))?;
        let labels = out.entry(line[..end].to_owned()).or_default();
        let mut rest = line[end..].chars().peekable();
        if rest.peek() != Some(&'{') {
            continue;
        }
        rest.next();
        while rest.peek() != Some(&'}') {
            let label: String = rest
                .by_ref()
                .take_while(|&c| c != '=')
                .collect::<String>()
                .trim()
                .to_owned();
            ensure!(
                !label.is_empty() && rest.next() == Some('"'),
                "line {}: malformed labels: {line}",
                n + 1
            );
            labels.insert(label);
            // The value: up to the closing quote, past escapes.
            loop {
                match rest.next() {
                    Some('\\') => {
                        rest.next();
                    }
                    Some('"') => break,
                    Some(_) => {}
                    None => bail!("line {}: unterminated label value: {line}", n + 1),
                }
            }
            match rest.peek() {
                Some('}') => {}
                Some(',') => {
                    rest.next();
                }
                _ => bail!("line {}: malformed labels: {line}", n + 1),
            }
        }
    }
    Ok(out)
}

/// What `expr` uses that `exported` does not have: unknown metrics, matcher labels the
/// selected metric does not carry, and grouping labels no selected metric carries.
pub fn problems(expr: &str, exported: &Exposition) -> Result<Vec<String>> {
    let ids = identifiers(expr)?;
    let mut out = Vec::new();
    let mut all_labels = BTreeSet::new();
    for s in &ids.selectors {
        let Some(metric) = &s.metric else {
            out.push(format!(
                "a selector without a metric name ({:?}) cannot be checked",
                s.labels
            ));
            continue;
        };
        let Some(labels) = exported.get(metric) else {
            out.push(format!("metric {metric} is not exported"));
            continue;
        };
        all_labels.extend(labels.iter().cloned());
        for label in &s.labels {
            if !labels.contains(label) {
                out.push(format!(
                    "label {label} is not on {metric} (it has {})",
                    describe(labels)
                ));
            }
        }
    }
    for label in &ids.grouping {
        if !all_labels.contains(label) {
            out.push(format!(
                "label {label} (in by/without/on/ignoring/group_*) is on none of {}",
                describe(&ids.metrics().into_iter().map(str::to_owned).collect())
            ));
        }
    }
    Ok(out)
}

fn describe(set: &BTreeSet<String>) -> String {
    if set.is_empty() {
        "no labels".to_owned()
    } else {
        set.iter().cloned().collect::<Vec<_>>().join(", ")
    }
}

/// A Grafana Prometheus template-variable query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VariableQuery {
    /// `label_values(label)` or `label_values(expr, label)`.
    LabelValues { expr: Option<String>, label: String },
    /// `query_result(expr)`.
    QueryResult(String),
}

impl VariableQuery {
    pub fn parse(query: &str) -> Result<Self> {
        let q = query.trim();
        let inner = |prefix: &str| {
            q.strip_prefix(prefix)
                .and_then(|r| r.trim_start().strip_prefix('('))
                .and_then(|r| r.trim_end().strip_suffix(')'))
        };
        if let Some(args) = inner("label_values") {
            return Ok(match top_level_last_comma(args) {
                Some(at) => Self::LabelValues {
                    expr: Some(args[..at].trim().to_owned()),
                    label: args[at + 1..].trim().to_owned(),
                },
                None => Self::LabelValues {
                    expr: None,
                    label: args.trim().to_owned(),
                },
            });
        }
        if let Some(expr) = inner("query_result") {
            return Ok(Self::QueryResult(expr.trim().to_owned()));
        }
        bail!(
            "unsupported Grafana variable query {q:?} (want label_values(...) or query_result(...))"
        )
    }

    /// The PromQL expression in the query, if any.
    pub fn expr(&self) -> Option<&str> {
        match self {
            Self::LabelValues { expr, .. } => expr.as_deref(),
            Self::QueryResult(expr) => Some(expr),
        }
    }

    /// What the query uses that `exported` does not have.
    pub fn problems(&self, exported: &Exposition) -> Result<Vec<String>> {
        let mut out = match self.expr() {
            Some(expr) => problems(expr, exported)?,
            None => Vec::new(),
        };
        if let Self::LabelValues { expr, label } = self {
            let metrics: Vec<String> = match expr {
                Some(e) => identifiers(e)?
                    .metrics()
                    .into_iter()
                    .map(str::to_owned)
                    .collect(),
                None => exported.keys().cloned().collect(),
            };
            let found = metrics
                .iter()
                .any(|m| exported.get(m).is_some_and(|l| l.contains(label)));
            if !found {
                out.push(format!(
                    "label {label} (the variable's values) is on none of {}",
                    metrics.join(", ")
                ));
            }
        }
        Ok(out)
    }
}

/// The byte offset of the last comma outside parentheses, braces and strings.
fn top_level_last_comma(s: &str) -> Option<usize> {
    let mut depth = 0i32;
    let mut quote: Option<char> = None;
    let mut escaped = false;
    let mut last = None;
    for (i, c) in s.char_indices() {
        if let Some(q) = quote {
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == q {
                quote = None;
            }
            continue;
        }
        match c {
            '"' | '\'' | '`' => quote = Some(c),
            '(' | '{' | '[' => depth += 1,
            ')' | '}' | ']' => depth -= 1,
            ',' if depth == 0 => last = Some(i),
            _ => {}
        }
    }
    last
}

/// `expr` with Grafana's variables replaced, for a PromQL parser: the interval variables by
/// durations, any other `$name`/`${name}` (used in regex matchers) by `.*`.
pub fn without_grafana_variables(expr: &str) -> String {
    let mut s = expr.to_owned();
    for (var, value) in [
        ("__rate_interval", "5m"),
        ("__interval", "1m"),
        ("__range", "1h"),
    ] {
        s = s
            .replace(&format!("${{{var}}}"), value)
            .replace(&format!("${var}"), value);
    }
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '$' {
            out.push(c);
            continue;
        }
        if chars.peek() == Some(&'{') {
            for d in chars.by_ref() {
                if d == '}' {
                    break;
                }
            }
        } else {
            while chars
                .peek()
                .is_some_and(|d| d.is_ascii_alphanumeric() || *d == '_')
            {
                chars.next();
            }
        }
        out.push_str(".*");
    }
    out
}

/// A Prometheus rules file with one recording rule per `(name, expr)`, each in a group of its
/// own named `name`, for `promtool check rules` to parse every expression.
pub fn rules_file(queries: &[(String, String)]) -> Result<String> {
    let groups: Vec<serde_json::Value> = queries
        .iter()
        .enumerate()
        .map(|(n, (name, expr))| {
            serde_json::json!({
                "name": name,
                "rules": [{"record": format!("dashboard:query_{n}:check"), "expr": expr}],
            })
        })
        .collect();
    Ok(serde_yaml::to_string(
        &serde_json::json!({ "groups": groups }),
    )?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sel(metric: &str, labels: &[&str]) -> Selector {
        Selector {
            metric: Some(metric.to_owned()),
            labels: labels.iter().map(|l| l.to_string()).collect(),
        }
    }

    fn set(items: &[&str]) -> BTreeSet<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn finds_metrics_matchers_and_grouping_labels() {
        let ids = identifiers(
            r#"histogram_quantile(0.99, sum by (le) (rate(controller_runtime_reconcile_time_seconds_bucket{controller="hostrouter"}[$__rate_interval])))"#,
        )
        .unwrap();
        assert_eq!(
            ids.selectors,
            vec![sel(
                "controller_runtime_reconcile_time_seconds_bucket",
                &["controller"]
            )]
        );
        assert_eq!(ids.grouping, set(&["le"]));

        // `by` after the parentheses, `without`, binary operators with on/group_left, offset,
        // a subquery, a comment, keywords in any case, numbers in every form.
        let ids = identifiers(
            "sum(rate(a_total{x=~\"$ns\", y!=\"}\"}[5m:1m] offset 1h)) without (z)\n\
             / on (x) group_left (w) max(b) BY (x) # c_not_a_metric{q=\"1\"}\n\
             > bool 1e-3 AND c unless d or 0x1F * Inf - .5",
        )
        .unwrap();
        assert_eq!(
            ids.selectors,
            vec![
                sel("a_total", &["x", "y"]),
                sel("b", &[]),
                sel("c", &[]),
                sel("d", &[])
            ]
        );
        assert_eq!(ids.grouping, set(&["z", "x", "w"]));
    }

    #[test]
    fn strings_and_function_names_are_not_metrics() {
        let ids = identifiers(
            r#"label_replace(up{job='a\'b'}, "dst", "$1", "src", "(.*)") or vector(0) or count_values("v", m)"#,
        )
        .unwrap();
        assert_eq!(ids.selectors, vec![sel("up", &["job"]), sel("m", &[])]);
        assert!(ids.grouping.is_empty());
        // An aggregation keeps its name also when `by` comes first.
        let ids = identifiers("count by (kind) (x == 0)").unwrap();
        assert_eq!(ids.selectors, vec![sel("x", &[])]);
    }

    #[test]
    fn name_matcher_and_nameless_selectors() {
        let ids = identifiers(r#"{__name__="up", job="x"}"#).unwrap();
        assert_eq!(ids.selectors, vec![sel("up", &["job"])]);
        let ids = identifiers(r#"{job="x"}"#).unwrap();
        assert_eq!(ids.selectors[0].metric, None);
        assert!(identifiers(r#"{__name__=~"up.*"}"#).is_err());
    }

    #[test]
    fn malformed_queries_are_errors() {
        for bad in [
            "sum(x",
            "x)",
            "x{a=\"1\"",
            "x{a}",
            "x{a=1}",
            "rate(x[5m)",
            "\"open",
            "sum by x (y)",
            "x ; y",
        ] {
            assert!(identifiers(bad).is_err(), "{bad} parsed");
        }
    }

    const TEXT: &str = r#"# HELP req_total Requests.
# TYPE req_total counter
req_total{code="200",path="/a,b}c \"q\""} 3
req_total{code="500",method="GET",} 1
# TYPE lat_seconds histogram
lat_seconds_bucket{le="0.1"} 1
lat_seconds_bucket{le="+Inf"} 2
lat_seconds_sum 0.3
lat_seconds_count 2
up 1 1700000000000
empty{} 0
"#;

    #[test]
    fn reads_series_and_their_labels() {
        let e = exposition(TEXT).unwrap();
        assert_eq!(e["req_total"], set(&["code", "path", "method"]));
        assert_eq!(e["lat_seconds_bucket"], set(&["le"]));
        assert_eq!(e["lat_seconds_sum"], set(&[]));
        assert_eq!(e["up"], set(&[]));
        assert_eq!(e["empty"], set(&[]));
        assert_eq!(e.len(), 6);
        assert!(exposition("x{a=\"1} 2").is_err());
    }

    #[test]
    fn problems_name_what_is_missing() {
        let e = exposition(TEXT).unwrap();
        assert!(
            problems(
                "histogram_quantile(0.9, sum by (le) (rate(lat_seconds_bucket[5m])))",
                &e
            )
            .unwrap()
            .is_empty()
        );
        assert!(
            problems("sum by (method) (rate(req_total{code=~\"5..\"}[5m]))", &e)
                .unwrap()
                .is_empty()
        );
        assert_eq!(
            problems("rate(lat_seconds[5m])", &e).unwrap(),
            vec!["metric lat_seconds is not exported"]
        );
        assert_eq!(
            problems("sum(lat_seconds_sum{le=\"1\"})", &e).unwrap(),
            vec!["label le is not on lat_seconds_sum (it has no labels)"]
        );
        assert_eq!(
            problems("sum by (job) (up) and on (code) req_total", &e).unwrap(),
            vec![
                "label job (in by/without/on/ignoring/group_*) is on none of req_total, up"
                    .to_owned()
            ]
        );
    }

    #[test]
    fn grafana_variable_queries() {
        let e = exposition(TEXT).unwrap();
        let q = VariableQuery::parse(r#"label_values(req_total{code=~"$c"}, method)"#).unwrap();
        assert_eq!(
            q,
            VariableQuery::LabelValues {
                expr: Some(r#"req_total{code=~"$c"}"#.to_owned()),
                label: "method".to_owned()
            }
        );
        assert!(q.problems(&e).unwrap().is_empty());
        let q = VariableQuery::parse("label_values(up, code)").unwrap();
        assert_eq!(
            q.problems(&e).unwrap(),
            vec!["label code (the variable's values) is on none of up"]
        );
        assert!(
            VariableQuery::parse("label_values(le)")
                .unwrap()
                .problems(&e)
                .unwrap()
                .is_empty()
        );
        assert_eq!(
            VariableQuery::parse("query_result(count(nope))")
                .unwrap()
                .expr(),
            Some("count(nope)")
        );
        assert!(VariableQuery::parse("metrics(req_.*)").is_err());
    }

    #[test]
    fn grafana_variables_are_replaced_for_a_parser() {
        assert_eq!(
            without_grafana_variables(
                r#"rate(x{n=~"$namespace", r=~"${router:regex}"}[$__rate_interval]) + y[${__range}]"#
            ),
            r#"rate(x{n=~".*", r=~".*"}[5m]) + y[1h]"#
        );
    }

    #[test]
    fn rules_file_has_a_group_per_query() {
        let text = rules_file(&[("panel 'A' query A".to_owned(), "sum(x)".to_owned())]).unwrap();
        let v: serde_json::Value = serde_yaml::from_str(&text).unwrap();
        assert_eq!(v["groups"][0]["name"], "panel 'A' query A");
        assert_eq!(v["groups"][0]["rules"][0]["expr"], "sum(x)");
    }
}
