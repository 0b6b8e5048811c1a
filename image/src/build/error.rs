//! Errors of a build. Everything that comes from one instruction names its
//! Dockerfile line.

use super::dockerfile::ParseError;

/// Result alias of the build module.
pub type BuildResultT<T> = std::result::Result<T, BuildError>;

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error(transparent)]
    Parse(#[from] ParseError),
    /// An instruction failed; `message` says how.
    #[error("Dockerfile line {line}: {instruction}: {message}")]
    Step {
        line: usize,
        instruction: String,
        message: String,
    },
    /// An instruction failed in the image layer below it (store, unpack, mount).
    #[error("Dockerfile line {line}: {instruction}: {source}")]
    StepImage {
        line: usize,
        instruction: String,
        #[source]
        source: crate::Error,
    },
    /// `RUN` exited non-zero.
    #[error("Dockerfile line {line}: RUN {command}: returned a non-zero code: {code}{}", output_tail(.output))]
    RunFailed {
        line: usize,
        command: String,
        code: i32,
        /// The last lines the command printed.
        output: String,
    },
    /// A base image lacks the platform asked for (named in the message);
    /// the FROM or COPY --from step turns it into a `Step` error.
    #[error("{0}")]
    Platform(String),
    #[error("build context: {0}")]
    Context(String),
    #[error("invalid build option: {0}")]
    Options(String),
    #[error(transparent)]
    Image(#[from] crate::Error),
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

fn output_tail(out: &str) -> String {
    if out.trim().is_empty() {
        String::new()
    } else {
        format!("; output: {}", out.trim_end().replace('\n', " | "))
    }
}

impl BuildError {
    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        BuildError::Io {
            context: context.into(),
            source,
        }
    }

    /// The Dockerfile line the error belongs to, when it has one.
    pub fn line(&self) -> Option<usize> {
        match self {
            BuildError::Parse(p) => Some(p.line),
            BuildError::Step { line, .. }
            | BuildError::StepImage { line, .. }
            | BuildError::RunFailed { line, .. } => Some(*line),
            _ => None,
        }
    }
}
