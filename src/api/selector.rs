//! A label selector with the same wire format as `metav1.LabelSelector`, but with a schema that
//! lets the API server reject malformed selectors at admission: the operator is an enum, keys and
//! values carry Kubernetes' own syntax rules, and `values` must be set exactly for `In`/`NotIn`.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1 as metav1;
use kube::KubeSchema;
use kube::core::{Selector, SelectorExt};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A qualified label key: an optional DNS-subdomain prefix and `/`, then a name of at most 63
/// characters that starts and ends with an alphanumeric character.
pub const LABEL_KEY_PATTERN: &str = r"^([a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?(\.[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?)*/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$";

/// CEL: a qualified name `k` (a label or annotation key) has a DNS-subdomain prefix of at most
/// 253 characters, if it has one (the pattern alone cannot bound the prefix's length).
pub fn prefix_length_rule(k: &str) -> String {
    format!("(!{k}.contains('/') || {k}.indexOf('/') <= 253)")
}

/// CEL: every key of the map `self` is a qualified name (label or annotation key).
pub fn qualified_keys_rule() -> String {
    format!(
        "self.all(k, k.matches(r'{LABEL_KEY_PATTERN}') && {})",
        prefix_length_rule("k")
    )
}

/// A label value: empty, or at most 63 characters that start and end with an alphanumeric.
pub const LABEL_VALUE_PATTERN: &str = r"^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$";

/// Selects objects by their labels. The result of `matchLabels` and `matchExpressions` are ANDed.
/// An empty selector (`{}`) selects every object.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct LabelSelector {
    /// Labels the object must carry with exactly these values, e.g. `{team: payments}`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend(
        "maxProperties" = 64,
        "additionalProperties" = {"type": "string", "maxLength": 63, "pattern": LABEL_VALUE_PATTERN}
    ))]
    #[x_kube(
        validation = Rule::new(qualified_keys_rule()).message("matchLabels keys must be valid label keys: an optional DNS-subdomain prefix of at most 253 characters and '/', then a name of at most 63 alphanumerics, '-', '_' or '.'")
    )]
    pub match_labels: BTreeMap<String, String>,

    /// Label requirements the object must meet, e.g. `{key: env, operator: In, values: [prod]}`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    pub match_expressions: Vec<LabelSelectorRequirement>,
}

/// One requirement of a label selector.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("(self.operator == 'In' || self.operator == 'NotIn') == (has(self.values) && size(self.values) > 0)").message("values must be non-empty for operators In and NotIn, and must be empty for Exists and DoesNotExist"))]
pub struct LabelSelectorRequirement {
    /// The label key the requirement applies to.
    #[schemars(length(min = 1, max = 317), regex(pattern = LABEL_KEY_PATTERN))]
    #[x_kube(validation = Rule::new(prefix_length_rule("self")).message("key: the prefix before '/' must have at most 253 characters"))]
    pub key: String,

    /// How the key relates to the values: `In`, `NotIn`, `Exists` or `DoesNotExist`.
    pub operator: LabelSelectorOperator,

    /// The values for `In` and `NotIn`; must be empty for `Exists` and `DoesNotExist`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64), inner(length(max = 63), regex(pattern = LABEL_VALUE_PATTERN)))]
    pub values: Vec<String>,
}

/// The relation between a label's key and the listed values.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum LabelSelectorOperator {
    /// The label is set to one of the values.
    In,
    /// The label is missing or set to none of the values.
    NotIn,
    /// The label is set, to any value.
    Exists,
    /// The label is not set.
    DoesNotExist,
}

impl LabelSelector {
    /// Compiles the selector for matching; fails on selectors the schema could not rule out
    /// (for instance an object written before the schema was installed).
    pub fn compile(&self) -> Result<Selector, String> {
        let k8s = metav1::LabelSelector {
            match_labels: (!self.match_labels.is_empty()).then(|| self.match_labels.clone()),
            match_expressions: (!self.match_expressions.is_empty()).then(|| {
                self.match_expressions
                    .iter()
                    .map(|r| metav1::LabelSelectorRequirement {
                        key: r.key.clone(),
                        operator: r.operator.as_str().to_owned(),
                        values: (!r.values.is_empty()).then(|| r.values.clone()),
                    })
                    .collect()
            }),
        };
        Selector::try_from(k8s).map_err(|e| e.to_string())
    }
}

impl LabelSelectorOperator {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::In => "In",
            Self::NotIn => "NotIn",
            Self::Exists => "Exists",
            Self::DoesNotExist => "DoesNotExist",
        }
    }
}

/// Checks a label selector in its string form (`--router-selector`, `kubectl -l`): requirements
/// separated by commas, each `key`, `!key`, `key=value`, `key==value`, `key!=value`,
/// `key in (v1,v2)` or `key notin (v1,v2)`, with keys and values in Kubernetes' syntax.
pub fn check_selector_string(selector: &str) -> Result<(), String> {
    let key_re = regex::Regex::new(LABEL_KEY_PATTERN).map_err(|e| e.to_string())?;
    let value_re = regex::Regex::new(LABEL_VALUE_PATTERN).map_err(|e| e.to_string())?;
    let key_ok =
        |k: &str| key_re.is_match(k) && k.len() <= 317 && k.find('/').is_none_or(|i| i <= 253);
    let value_ok = |v: &str| v.len() <= 63 && value_re.is_match(v);
    let bad = |what: String| Err(format!("{selector:?} is not a label selector: {what}"));
    // Split on the commas that are not inside a set's parentheses.
    let mut requirements = Vec::new();
    let (mut depth, mut start) = (0i32, 0usize);
    for (i, c) in selector.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                requirements.push(&selector[start..i]);
                start = i + 1;
            }
            _ => {}
        }
        if !(0..=1).contains(&depth) {
            return bad("unbalanced parentheses".into());
        }
    }
    if depth != 0 {
        return bad("unbalanced parentheses".into());
    }
    requirements.push(&selector[start..]);
    for req in requirements.iter().map(|r| r.trim()) {
        if req.is_empty() {
            return bad("an empty requirement".into());
        }
        let set = |op: &str| -> Option<(String, String)> {
            let (key, rest) = req.split_once(&format!(" {op} "))?;
            Some((key.trim().to_owned(), rest.trim().to_owned()))
        };
        if let Some((key, values)) = set("in").or_else(|| set("notin")) {
            let Some(inner) = values.strip_prefix('(').and_then(|v| v.strip_suffix(')')) else {
                return bad(format!("{req:?}: values must be in parentheses"));
            };
            if !key_ok(&key) {
                return bad(format!("{key:?} is not a label key"));
            }
            for v in inner.split(',').map(str::trim) {
                if !value_ok(v) {
                    return bad(format!("{v:?} is not a label value"));
                }
            }
            continue;
        }
        let (key, value) = if let Some((k, v)) = req.split_once("!=") {
            (k, Some(v))
        } else if let Some((k, v)) = req.split_once("==") {
            (k, Some(v))
        } else if let Some((k, v)) = req.split_once('=') {
            (k, Some(v))
        } else {
            (req.strip_prefix('!').unwrap_or(req), None)
        };
        if !key_ok(key.trim()) {
            return bad(format!("{:?} is not a label key", key.trim()));
        }
        if let Some(v) = value
            && !value_ok(v.trim())
        {
            return bad(format!("{:?} is not a label value", v.trim()));
        }
    }
    Ok(())
}

/// A compiled selector that treats missing labels as an empty label set.
pub fn matches(selector: &Selector, labels: Option<&BTreeMap<String, String>>) -> bool {
    static EMPTY: BTreeMap<String, String> = BTreeMap::new();
    selector.matches(labels.unwrap_or(&EMPTY))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn selector_strings_are_checked() {
        for good in [
            "shard=a",
            "shard==a,tier!=edge",
            "hostrouter.io/shard in (a, b),!legacy",
            "team notin (x),env",
            "e2e.hostrouter.io/trial=t-1",
        ] {
            check_selector_string(good).unwrap_or_else(|e| panic!("{good}: {e}"));
        }
        assert!(check_selector_string("").is_err());
        assert!(check_selector_string("=a").is_err());
        assert!(check_selector_string("shard in a,b").is_err());
        assert!(check_selector_string("shard in (a").is_err());
        assert!(check_selector_string("bad key=a").is_err());
        assert!(check_selector_string("shard=not a value").is_err());
        assert!(check_selector_string("a,,b").is_err());
        assert!(check_selector_string("shard in (a))").is_err());
        // An empty value is a valid label value.
        assert!(check_selector_string("shard=").is_ok());
    }

    #[test]
    fn empty_selector_selects_everything() {
        let s = LabelSelector::default().compile().unwrap();
        assert!(matches(&s, None));
        assert!(matches(&s, Some(&labels(&[("a", "b")]))));
    }

    #[test]
    fn match_labels_and_expressions_are_anded() {
        let sel = LabelSelector {
            match_labels: labels(&[("team", "pay")]),
            match_expressions: vec![LabelSelectorRequirement {
                key: "env".into(),
                operator: LabelSelectorOperator::In,
                values: vec!["prod".into(), "stage".into()],
            }],
        }
        .compile()
        .unwrap();
        assert!(matches(
            &sel,
            Some(&labels(&[("team", "pay"), ("env", "prod")]))
        ));
        assert!(!matches(
            &sel,
            Some(&labels(&[("team", "pay"), ("env", "dev")]))
        ));
        assert!(!matches(&sel, Some(&labels(&[("env", "prod")]))));
    }

    #[test]
    fn does_not_exist_and_not_in_match_missing_labels() {
        let sel = LabelSelector {
            match_labels: BTreeMap::new(),
            match_expressions: vec![
                LabelSelectorRequirement {
                    key: "skip".into(),
                    operator: LabelSelectorOperator::DoesNotExist,
                    values: vec![],
                },
                LabelSelectorRequirement {
                    key: "env".into(),
                    operator: LabelSelectorOperator::NotIn,
                    values: vec!["dev".into()],
                },
            ],
        }
        .compile()
        .unwrap();
        assert!(matches(&sel, None));
        assert!(!matches(&sel, Some(&labels(&[("skip", "")]))));
        assert!(!matches(&sel, Some(&labels(&[("env", "dev")]))));
    }

    #[test]
    fn patterns_accept_and_reject_like_kubernetes() {
        let key = regex::Regex::new(LABEL_KEY_PATTERN).unwrap();
        for ok in [
            "app",
            "app.kubernetes.io/name",
            "a_b.c-d",
            "x/Y",
            &"k".repeat(63),
        ] {
            assert!(key.is_match(ok), "{ok} should be a valid key");
        }
        for bad in [
            "-app",
            "app-",
            "/app",
            "Example.com/app",
            "a/b/c",
            "",
            &"k".repeat(64),
        ] {
            assert!(!key.is_match(bad), "{bad} should be rejected");
        }
        let value = regex::Regex::new(LABEL_VALUE_PATTERN).unwrap();
        for ok in ["", "v1.2_3-x", "A", &"a".repeat(63)] {
            assert!(value.is_match(ok), "{ok} should be a valid value");
        }
        for bad in ["-v", "v-", "a b", &"a".repeat(64)] {
            assert!(!value.is_match(bad), "{bad} should be rejected");
        }
    }
}
