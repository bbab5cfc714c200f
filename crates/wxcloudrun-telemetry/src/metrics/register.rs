//! Registering a labelled family once, the one way every family of the contract is registered.

use prometheus::core::Collector;
use prometheus::{Opts, Registry};

use crate::config::ConfigError;

/// Registers a family of counters or gauges, made by `new`, and hands it back.
pub(super) fn register_vec<C: Collector + Clone + 'static>(
    registry: &Registry,
    (name, help): (&str, &str),
    labels: &[&str],
    new: impl FnOnce(Opts, &[&str]) -> prometheus::Result<C>,
) -> Result<C, ConfigError> {
    let family = new(Opts::new(name, help), labels)?;
    registry.register(Box::new(family.clone()))?;
    Ok(family)
}
