//! OCI images for KOS.
