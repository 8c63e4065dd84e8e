//! Uniquely named namespaces for trials, deleted at the end.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{DeleteParams, ObjectMeta, PostParams};
use kube::{Api, Client};

/// Label set on every namespace the harness creates.
pub const TEST_LABEL: &str = "e2e.hostrouter.io/test";

/// A namespace created for one trial. [`TestNamespace::delete`] removes it; dropping
/// it deletes it in the background (best effort), as does stopping the control plane.
pub struct TestNamespace {
    name: String,
    client: Client,
    deleted: bool,
}

impl TestNamespace {
    /// Creates a namespace named `<prefix>-<unique suffix>` with `labels` plus
    /// [`TEST_LABEL`]`=true`.
    pub async fn create<'a>(
        client: &Client,
        prefix: &str,
        labels: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<Self> {
        let name = unique_name(prefix);
        let mut all_labels: BTreeMap<String, String> = labels
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        all_labels.insert(TEST_LABEL.to_owned(), "true".to_owned());
        let namespace = Namespace {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                labels: Some(all_labels),
                ..ObjectMeta::default()
            },
            ..Namespace::default()
        };
        Api::<Namespace>::all(client.clone())
            .create(&PostParams::default(), &namespace)
            .await
            .with_context(|| format!("creating namespace {name}"))?;
        Ok(Self {
            name,
            client: client.clone(),
            deleted: false,
        })
    }

    /// The namespace's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Deletes the namespace (the namespace controller then removes its contents).
    pub async fn delete(mut self) -> Result<()> {
        self.deleted = true;
        Api::<Namespace>::all(self.client.clone())
            .delete(&self.name, &DeleteParams::default())
            .await
            .with_context(|| format!("deleting namespace {}", self.name))?;
        Ok(())
    }
}

impl std::fmt::Debug for TestNamespace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestNamespace")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl Drop for TestNamespace {
    fn drop(&mut self) {
        if self.deleted {
            return;
        }
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let api = Api::<Namespace>::all(self.client.clone());
            let name = std::mem::take(&mut self.name);
            runtime.spawn(async move {
                if let Err(err) = api.delete(&name, &DeleteParams::default()).await {
                    tracing::debug!("deleting namespace {name}: {err}");
                }
            });
        }
    }
}

/// `<prefix>-<suffix>`: a DNS label (at most 63 characters) unique within this process
/// and, through the time in the suffix, very likely across runs against one cluster.
pub fn unique_name(prefix: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default();
    let suffix = format!("{:x}{n:x}", secs & 0xff_ffff);
    let mut prefix = sanitize(prefix);
    prefix.truncate(62 - suffix.len());
    let prefix = prefix.trim_end_matches('-');
    if prefix.is_empty() {
        format!("e2e-{suffix}")
    } else {
        format!("{prefix}-{suffix}")
    }
}

/// Lower-case alphanumerics and dashes only, no leading or trailing dash.
pub fn sanitize(text: &str) -> String {
    let mapped: String = text
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    let mut out = String::with_capacity(mapped.len());
    for c in mapped.chars() {
        if c == '-' && (out.is_empty() || out.ends_with('-')) {
            continue;
        }
        out.push(c);
    }
    out.trim_end_matches('-').to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_dns_labels() {
        let a = unique_name("Operator::Creates_Proxy");
        let b = unique_name("Operator::Creates_Proxy");
        assert_ne!(a, b);
        for name in [&a, &b] {
            assert!(name.starts_with("operator-creates-proxy-"), "{name}");
            assert!(name.len() <= 63);
            assert!(
                name.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
            );
        }
    }

    #[test]
    fn long_prefixes_are_truncated() {
        let name = unique_name(&"x".repeat(100));
        assert!(name.len() <= 63, "{name}");
    }

    #[test]
    fn empty_prefix_still_yields_a_label() {
        assert!(unique_name("::").starts_with("e2e-"));
    }
}
