//! The process's Prometheus recorder. The `metrics` facade takes one recorder per process, so
//! it is installed once, by the first call to [`install_prometheus`], with what each service
//! running in the process records ([`ServiceMetrics`]): a standalone binary passes its own, the
//! one-process stack every service's at once. Every later call returns the same handle.

use std::collections::BTreeSet;
use std::sync::OnceLock;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// A histogram and its bucket bounds. A metric recorded with `metrics::histogram!` that is not
/// declared so is rendered as a summary (quantiles) instead.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Histogram {
    /// The metric's full name, e.g. `http_request_duration_seconds`.
    pub name: &'static str,
    /// Upper bounds of the buckets, ascending, in the metric's unit (seconds for `…_seconds`).
    pub buckets: &'static [f64],
}

/// What one service records, as the recorder must know it: its histograms' buckets (fixed
/// when the recorder is installed) and the descriptions of its series (`# HELP` lines).
#[derive(Debug, Clone, Copy)]
pub struct ServiceMetrics {
    /// The service's histograms.
    pub histograms: &'static [Histogram],
    /// Registers the service's descriptions with the installed recorder
    /// (`metrics::describe_counter!` and the like); called once the recorder is installed.
    pub describe: fn(),
}

/// Why the recorder could not be installed: another `metrics` recorder was installed in this
/// process first, or the buckets of a histogram are empty.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot install the Prometheus recorder: {0}")]
pub struct InstallError(pub String);

/// The recorder of this process and the histograms it was installed with.
static RECORDER: OnceLock<Result<Installed, InstallError>> = OnceLock::new();

struct Installed {
    handle: PrometheusHandle,
    histograms: BTreeSet<&'static str>,
}

/// Installs the Prometheus recorder as the process's `metrics` recorder, with the histograms
/// of `services` (where two declare the same name, the first one's buckets), registers their
/// descriptions and returns the handle that renders the text format. The first call decides: a later call returns the same handle (or the same error)
/// and registers its descriptions, but a histogram it declares that the first call did not
/// stays a summary (logged as a warning). A process running several services passes all of
/// them in its first call.
///
/// # Errors
///
/// [`InstallError`] when the first call could not install the recorder.
pub fn install_prometheus(services: &[ServiceMetrics]) -> Result<PrometheusHandle, InstallError> {
    let installed = RECORDER.get_or_init(|| install(services));
    let installed = installed.as_ref().map_err(Clone::clone)?;
    for service in services {
        for histogram in service.histograms {
            if !installed.histograms.contains(histogram.name) {
                tracing::warn!(
                    metric = histogram.name,
                    "histogram rendered as a summary: the recorder was installed without its buckets"
                );
            }
        }
        (service.describe)();
    }
    Ok(installed.handle.clone())
}

fn install(services: &[ServiceMetrics]) -> Result<Installed, InstallError> {
    let failed = |e: metrics_exporter_prometheus::BuildError| InstallError(e.to_string());
    let mut builder = PrometheusBuilder::new();
    let mut histograms = BTreeSet::new();
    for histogram in services.iter().flat_map(|service| service.histograms) {
        if histograms.insert(histogram.name) {
            builder = builder
                .set_buckets_for_metric(Matcher::Full(histogram.name.to_owned()), histogram.buckets)
                .map_err(failed)?;
        }
    }
    let handle = builder.install_recorder().map_err(failed)?;
    Ok(Installed { handle, histograms })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    const FIRST: ServiceMetrics = ServiceMetrics {
        histograms: &[Histogram {
            name: "plumbing_test_first_seconds",
            buckets: &[0.5, 1.0],
        }],
        describe: || metrics::describe_counter!("plumbing_test_first_total", "First's counter"),
    };

    const LATER: ServiceMetrics = ServiceMetrics {
        histograms: &[Histogram {
            name: "plumbing_test_later_seconds",
            buckets: &[2.0],
        }],
        describe: || metrics::describe_counter!("plumbing_test_later_total", "Later's counter"),
    };

    /// The only test of this binary that installs a recorder (one per process).
    #[test]
    fn the_first_call_installs_and_later_calls_share_it() {
        let handle = install_prometheus(&[FIRST]).unwrap();
        let again = install_prometheus(&[LATER]).unwrap();
        metrics::histogram!("plumbing_test_first_seconds").record(0.7);
        metrics::histogram!("plumbing_test_later_seconds").record(0.7);
        metrics::counter!("plumbing_test_first_total").increment(1);
        metrics::counter!("plumbing_test_later_total").increment(1);
        for text in [handle.render(), again.render()] {
            assert!(
                text.contains(r#"plumbing_test_first_seconds_bucket{le="0.5"} 0"#),
                "{text}"
            );
            assert!(
                text.contains(r#"plumbing_test_first_seconds_bucket{le="1"} 1"#),
                "{text}"
            );
            // Declared only after the recorder was installed: a summary.
            assert!(
                !text.contains("plumbing_test_later_seconds_bucket"),
                "{text}"
            );
            assert!(
                text.contains(r#"plumbing_test_later_seconds{quantile="#),
                "{text}"
            );
            // Both calls' descriptions are registered.
            assert!(
                text.contains("# HELP plumbing_test_first_total First's counter"),
                "{text}"
            );
            assert!(
                text.contains("# HELP plumbing_test_later_total Later's counter"),
                "{text}"
            );
        }
    }
}
