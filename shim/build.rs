//! The shim is a static PIE: see kos-buildsupport for why and how.
fn main() {
    kos_buildsupport::static_pie("containerd-shim-kos-v2");
}
