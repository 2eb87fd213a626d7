//! The packaging suite: the repository as a packager and an operator meet it — the RPM
//! built offline from the source tarballs (a release build of the whole tree, several
//! minutes), rpmlint, `install.sh`, the systemd unit, the container environment and the
//! scripts; and the aarch64 RPM cross-built the same way.
//!
//! One module per file of `tests/e2e/`; `docs/testing.md` says how the suites are organised.

#[path = "../e2e/aarch64.rs"]
mod aarch64;
#[path = "../e2e/packaging.rs"]
mod packaging;
