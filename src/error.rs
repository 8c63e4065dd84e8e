//! The crate's one error type. Every error carries what was being done, to which object.

use crate::render::RenderError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An API call failed.
    #[error("{action} {kind} {namespace}/{name}: {}", plain(source))]
    Api {
        action: &'static str,
        kind: &'static str,
        namespace: String,
        name: String,
        #[source]
        source: Box<kube::Error>,
    },

    #[error(transparent)]
    Render(#[from] RenderError),

    #[error("serialising {kind}: {source}")]
    Serialize {
        kind: &'static str,
        #[source]
        source: serde_json::Error,
    },

    #[error("watch caches are not available: {0}")]
    Cache(String),

    #[error("{0}")]
    Config(String),

    #[error("reading {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },

    #[error("parsing {what}: {message}")]
    Parse { what: String, message: String },

    #[error("{what}: no answer within {after:?}")]
    Timeout {
        what: String,
        after: std::time::Duration,
    },

    #[error("lost the leader Lease; exiting so that only the new leader writes")]
    LeadershipLost,

    #[error("connecting to the Kubernetes API: {0}")]
    Client(#[source] Box<kube::Error>),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn api(
        action: &'static str,
        kind: &'static str,
        namespace: &str,
        name: &str,
        source: kube::Error,
    ) -> Self {
        Self::Api {
            action,
            kind,
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            source: Box::new(source),
        }
    }
}

/// What went wrong, in the API server's words when it answered (its message and reason), else
/// the client's error: never a debug dump of the Status object.
pub fn plain(err: &kube::Error) -> String {
    match err {
        kube::Error::Api(status) if !status.message.is_empty() => {
            format!("{} ({})", status.message, status.reason)
        }
        other => other.to_string(),
    }
}

/// The API server answered 404 for a resource type it does not serve (a missing CRD), rather
/// than for a missing object.
pub fn is_missing_resource_type(err: &kube::Error) -> bool {
    matches!(err, kube::Error::Api(s) if s.code == 404 && s.details.as_ref().is_none_or(|d| d.name.is_empty()))
}

pub fn is_not_found(err: &kube::Error) -> bool {
    matches!(err, kube::Error::Api(s) if s.code == 404)
}

pub fn is_conflict(err: &kube::Error) -> bool {
    matches!(err, kube::Error::Api(s) if s.code == 409)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_errors_read_like_the_api_servers_message() {
        let status =
            kube::core::Status::failure("namespaces \"gone\" not found", "NotFound").with_code(404);
        let e = Error::api(
            "applying",
            "Proxy",
            "gone",
            "edge",
            kube::Error::Api(Box::new(status)),
        );
        assert_eq!(
            e.to_string(),
            "applying Proxy gone/edge: namespaces \"gone\" not found (NotFound)"
        );
    }
}
