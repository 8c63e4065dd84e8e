//! Names in the route table: templates for hostnames and path prefixes, the one rule a
//! hostname must follow, and which extra hostnames a router allows.
//!
//! The hostname rule, stated once (and in the README): a hostname is lowercase letters, digits,
//! '-' and '.', labels that start and end with a letter or a digit, at most 253 characters in
//! all; and a name with a '.' is a DNS name, whose labels have at most 63 characters (RFC 1123).
//! A name without a '.' (the default `<namespace>-<service>-<port>`) is a Host header only: no
//! one resolves it, no certificate names it, so the DNS label limit does not apply to it.
//! Extra hostnames may be wildcards (`*.shop.example.com`).

use std::fmt;

/// A variable of a template.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Var {
    Namespace,
    Service,
    Port,
    PortName,
}

impl Var {
    const ALL: [Var; 4] = [Var::Namespace, Var::Service, Var::Port, Var::PortName];

    fn name(self) -> &'static str {
        match self {
            Var::Namespace => "namespace",
            Var::Service => "service",
            Var::Port => "port",
            Var::PortName => "portName",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Part {
    Literal(String),
    Var(Var),
}

/// A parsed hostname or path template, e.g. `{service}.{namespace}.apps.example.com`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Template {
    parts: Vec<Part>,
}

/// The values of a template's variables for one Service port.
#[derive(Clone, Copy, Debug)]
pub struct Values<'a> {
    pub namespace: &'a str,
    pub service: &'a str,
    pub port: u16,
    /// The port's name; `None` for an unnamed port, which `{portName}` renders as its number.
    pub port_name: Option<&'a str>,
}

impl Template {
    /// Parses `{variable}`s and literal text. Fails on an unknown variable or an unclosed
    /// brace (the CRD rejects both at admission; this guards objects stored before it).
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut parts = Vec::new();
        let mut rest = text;
        while let Some(open) = rest.find('{') {
            if open > 0 {
                parts.push(Part::Literal(rest[..open].to_owned()));
            }
            let after = &rest[open + 1..];
            let close = after
                .find('}')
                .ok_or_else(|| format!("template {text:?} has a '{{' without '}}'"))?;
            let name = &after[..close];
            let var = Var::ALL
                .into_iter()
                .find(|v| v.name() == name)
                .ok_or_else(|| {
                    format!(
                        "template {text:?} uses the unknown variable {{{name}}}; known: {{namespace}}, {{service}}, {{port}}, {{portName}}"
                    )
                })?;
            parts.push(Part::Var(var));
            rest = &after[close + 1..];
        }
        if !rest.is_empty() {
            parts.push(Part::Literal(rest.to_owned()));
        }
        if parts
            .iter()
            .any(|p| matches!(p, Part::Literal(l) if l.contains('}')))
        {
            return Err(format!("template {text:?} has a '}}' without '{{'"));
        }
        Ok(Self { parts })
    }

    /// Whether the template names a port, so that each port gets its own name; otherwise a
    /// Service gets one name, for its primary port.
    pub fn per_port(&self) -> bool {
        self.parts
            .iter()
            .any(|p| matches!(p, Part::Var(Var::Port | Var::PortName)))
    }

    pub fn render(&self, v: &Values<'_>) -> String {
        use std::fmt::Write;
        let mut out = String::with_capacity(64);
        for part in &self.parts {
            // Writing to a String cannot fail.
            let _ = match part {
                Part::Literal(l) => out.write_str(l),
                Part::Var(Var::Namespace) => out.write_str(v.namespace),
                Part::Var(Var::Service) => out.write_str(v.service),
                Part::Var(Var::Port) => write!(out, "{}", v.port),
                Part::Var(Var::PortName) => match v.port_name {
                    Some(name) if !name.is_empty() => out.write_str(name),
                    _ => write!(out, "{}", v.port),
                },
            };
        }
        out
    }
}

impl fmt::Display for Template {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for part in &self.parts {
            match part {
                Part::Literal(l) => f.write_str(l)?,
                Part::Var(v) => write!(f, "{{{}}}", v.name())?,
            }
        }
        Ok(())
    }
}

/// Why `name` is not a valid hostname, or `None` when it is one. A leading `*.` label is
/// accepted only with `wildcard`.
pub fn hostname_problem(name: &str, wildcard: bool) -> Option<String> {
    let plain = match name.strip_prefix("*.") {
        Some(rest) if wildcard => rest,
        Some(_) => return Some("wildcards are not allowed here".to_owned()),
        None => name,
    };
    if name.len() > 253 {
        return Some(format!("{} characters, more than 253", name.len()));
    }
    if plain.is_empty() {
        return Some("empty".to_owned());
    }
    let dns = name.contains('.');
    for label in plain.split('.') {
        if label.is_empty() {
            return Some("has an empty label".to_owned());
        }
        if dns && label.len() > 63 {
            return Some(format!(
                "the label {label:?} has {} characters, more than 63",
                label.len()
            ));
        }
        if !label
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            return Some(format!(
                "the label {label:?} has characters other than lowercase letters, digits and '-'"
            ));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Some(format!("the label {label:?} starts or ends with '-'"));
        }
    }
    None
}

/// Why `prefix` is not a valid path prefix, or `None` when it is one: '/'-separated,
/// non-empty segments of unreserved characters (RFC 3986), no trailing '/'.
pub fn path_problem(prefix: &str) -> Option<String> {
    if prefix.len() > 1024 {
        return Some(format!("{} characters, more than 1024", prefix.len()));
    }
    let Some(rest) = prefix.strip_prefix('/') else {
        return Some("does not start with '/'".to_owned());
    };
    for segment in rest.split('/') {
        if segment.is_empty() {
            return Some("has an empty segment".to_owned());
        }
        if segment == "." || segment == ".." {
            return Some(format!("has the segment {segment:?}"));
        }
        if !segment.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'-' | b'.' | b'_' | b'~')
        }) {
            return Some(format!(
                "the segment {segment:?} has characters other than lowercase letters, digits, '-', '.', '_' and '~'"
            ));
        }
    }
    None
}

/// Whether an extra hostname lies under one of `suffixes`: strictly under, so `example.com`
/// allows `shop.example.com` but not `example.com`; and `*.<name>` only when `<name>` does, so
/// no single Service can take a whole allowed zone with `*.example.com`.
pub fn allowed(name: &str, suffixes: &[String]) -> bool {
    let plain = name.strip_prefix("*.").unwrap_or(name);
    suffixes.iter().any(|suffix| {
        plain
            .strip_suffix(suffix.as_str())
            .and_then(|head| head.strip_suffix('.'))
            .is_some_and(|head| !head.is_empty())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(port_name: Option<&'static str>) -> Values<'static> {
        Values {
            namespace: "default",
            service: "petstore",
            port: 8080,
            port_name,
        }
    }

    #[test]
    fn renders_every_variable() {
        let t = Template::parse("{service}.{namespace}.{portName}-{port}.example.com").unwrap();
        assert_eq!(
            t.render(&values(Some("web"))),
            "petstore.default.web-8080.example.com"
        );
        // An unnamed port is named by its number.
        assert_eq!(
            t.render(&values(None)),
            "petstore.default.8080-8080.example.com"
        );
        assert!(t.per_port());
        assert_eq!(
            t.to_string(),
            "{service}.{namespace}.{portName}-{port}.example.com"
        );
    }

    #[test]
    fn the_default_template_gives_todays_names() {
        let t = Template::parse(crate::api::routing::DEFAULT_HOST_TEMPLATE).unwrap();
        assert_eq!(t.render(&values(Some("http"))), "default-petstore-8080");
        assert!(t.per_port());
        assert!(!Template::parse("{service}.x").unwrap().per_port());
    }

    #[test]
    fn unknown_variables_and_stray_braces_are_errors() {
        let e = Template::parse("{svc}.example.com").unwrap_err();
        assert!(e.contains("unknown variable {svc}"), "{e}");
        assert!(Template::parse("{service.x").is_err());
        assert!(Template::parse("service}.x").is_err());
    }

    #[test]
    fn hostnames_follow_rfc_1123() {
        assert_eq!(
            hostname_problem("petstore.default.apps.example.com", false),
            None
        );
        assert_eq!(hostname_problem("default-petstore-8080", false), None);
        let long = format!("{}.example.com", "a".repeat(64));
        assert!(
            hostname_problem(&long, false)
                .unwrap()
                .contains("more than 63")
        );
        assert!(hostname_problem(&"a.".repeat(127), false).is_some());
        assert!(hostname_problem("Shop.example.com", false).is_some());
        assert!(hostname_problem("-a.example.com", false).is_some());
        assert!(hostname_problem("a..b", false).is_some());
        assert_eq!(hostname_problem("*.shop.example.com", true), None);
        assert!(hostname_problem("*.shop.example.com", false).is_some());
        assert!(hostname_problem("shop.*.example.com", true).is_some());
    }

    #[test]
    fn path_prefixes_are_clean_segments() {
        assert_eq!(path_problem("/default/petstore"), None);
        assert!(path_problem("default").is_some());
        assert!(path_problem("/a//b").is_some());
        assert!(path_problem("/a/").is_some());
        assert!(path_problem("/a/../b").is_some());
        assert!(path_problem("/a b").is_some());
    }

    #[test]
    fn extra_hostnames_must_lie_strictly_under_an_allowed_suffix() {
        let suffixes = vec!["example.com".to_owned()];
        assert!(allowed("shop.example.com", &suffixes));
        assert!(allowed("www.shop.example.com", &suffixes));
        assert!(allowed("*.shop.example.com", &suffixes));
        assert!(!allowed("example.com", &suffixes));
        assert!(!allowed("*.example.com", &suffixes));
        assert!(!allowed("badexample.com", &suffixes));
        assert!(!allowed("login.example.org", &suffixes));
        assert!(!allowed("shop.example.com", &[]));
    }
}
