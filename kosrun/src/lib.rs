//! The kosrun container lifecycle.
