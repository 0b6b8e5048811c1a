//! The daemon's typed API errors and the one mapping from them to HTTP status codes.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

/// Result of an engine operation.
pub type Result<T, E = ApiError> = std::result::Result<T, E>;

/// Everything an API call can fail with, classified the way Docker classifies it.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 404: the object (container, image, volume, network, exec, path) does not exist.
    #[error("{0}")]
    NotFound(String),
    /// 409: the request clashes with the object's state (name taken, image in use, running).
    #[error("{0}")]
    Conflict(String),
    /// 400: the request itself is malformed or names an invalid value.
    #[error("{0}")]
    BadRequest(String),
    /// 401: the registry refused the credentials.
    #[error("{0}")]
    Unauthorized(String),
    /// 304: the operation is already done (start a running container, stop a stopped one).
    #[error("not modified")]
    NotModified,
    /// 500: the engine failed while doing something valid; says which step failed.
    #[error("{0}")]
    Internal(String),
    /// 503: the endpoint needs a mode kosd does not run in (swarm).
    #[error("{0}")]
    Unavailable(String),
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::NotModified => StatusCode::NOT_MODIFIED,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// An internal error naming the step that failed.
    pub fn internal(step: &str, e: impl std::fmt::Display) -> Self {
        ApiError::Internal(format!("{step}: {e}"))
    }

    pub fn bad(msg: impl Into<String>) -> Self {
        ApiError::BadRequest(msg.into())
    }
}

impl From<kos_image::Error> for ApiError {
    fn from(e: kos_image::Error) -> Self {
        use kos_image::Error as E;
        match &e {
            E::ImageNotFound(name) => ApiError::NotFound(format!("No such image: {name}")),
            E::InvalidReference { .. } | E::InvalidDigest(_) => ApiError::BadRequest(e.to_string()),
            E::NoMatchingPlatform(_) | E::UnknownUser(_) | E::UnknownGroup(_) => {
                ApiError::BadRequest(e.to_string())
            }
            E::InvalidArchive(_) => ApiError::BadRequest(e.to_string()),
            E::InUse(_) => ApiError::Conflict(e.to_string()),
            E::Registry { message, .. }
                if message.contains("401") || message.contains("nauthorized") =>
            {
                ApiError::Unauthorized(e.to_string())
            }
            E::Registry { message, .. }
                if message.contains("MANIFEST_UNKNOWN")
                    || message.contains("NAME_UNKNOWN")
                    || message.contains("manifest unknown")
                    || message.contains("404") =>
            {
                ApiError::NotFound(e.to_string())
            }
            _ => ApiError::Internal(e.to_string()),
        }
    }
}

impl From<kos_shim_client::Error> for ApiError {
    fn from(e: kos_shim_client::Error) -> Self {
        use kos_shim_client::ErrorKind as K;
        match e.kind() {
            K::NotFound => ApiError::NotFound(e.to_string()),
            K::AlreadyExists | K::FailedPrecondition => ApiError::Conflict(e.to_string()),
            K::InvalidArgument => ApiError::BadRequest(e.to_string()),
            _ => ApiError::Internal(e.to_string()),
        }
    }
}

impl From<kos_units::Error> for ApiError {
    fn from(e: kos_units::Error) -> Self {
        use kos_units::Error as E;
        match &e {
            E::NotFound(_) => ApiError::NotFound(e.to_string()),
            E::Ambiguous(..) | E::BadName(_) | E::BadUnit { .. } | E::Static(_) => {
                ApiError::BadRequest(e.to_string())
            }
            // The unit asked for is itself unloadable (bad-setting, masked): the request is bad.
            E::Dependency { anchor, unit, why } if anchor == unit && why != "not found" => {
                ApiError::BadRequest(format!("unit {unit} is {why}"))
            }
            E::Cycle { .. } | E::Dependency { .. } => ApiError::Conflict(e.to_string()),
            E::Io { .. } | E::Parse { .. } | E::Runtime { .. } | E::Notify { .. } => {
                ApiError::Internal(e.to_string())
            }
        }
    }
}

impl From<rusqlite::Error> for ApiError {
    fn from(e: rusqlite::Error) -> Self {
        ApiError::internal("state database", e)
    }
}

impl From<tokio::task::JoinError> for ApiError {
    fn from(e: tokio::task::JoinError) -> Self {
        ApiError::internal("background task", e)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        if status == StatusCode::NOT_MODIFIED {
            return status.into_response();
        }
        if status.is_server_error() {
            tracing::error!(error = %self, "request failed");
        } else {
            tracing::debug!(error = %self, %status, "request refused");
        }
        (
            status,
            axum::Json(serde_json::json!({ "message": self.to_string() })),
        )
            .into_response()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn image_errors_map_to_docker_status_codes() {
        let nf: ApiError = kos_image::Error::ImageNotFound("x:1".into()).into();
        assert_eq!(nf.status(), StatusCode::NOT_FOUND);
        assert_eq!(nf.to_string(), "No such image: x:1");
        let bad: ApiError = kos_image::Error::InvalidReference {
            reference: "A B".into(),
            reason: "r".into(),
        }
        .into();
        assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
        let unauth: ApiError = kos_image::Error::Registry {
            reference: "r".into(),
            message: "401 Unauthorized".into(),
        }
        .into();
        assert_eq!(unauth.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(ApiError::NotModified.status(), StatusCode::NOT_MODIFIED);
    }
}
