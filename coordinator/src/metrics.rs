//! The coordinator's OpenTelemetry metrics (exported over OTLP when `[telemetry]
//! otlp_endpoint` is set; otherwise recorded nowhere).
//!
//! | metric | kind | labels | what |
//! |---|---|---|---|
//! | `seedship.import_job.deadline_days_left` | gauge | `job`, `deadline` | days left on a job's running 14-day clock, set at each warning step |
//! | `seedship.import_job.deadline_warnings` | counter | `job`, `deadline`, `day` | warnings (day 10, 12, 13) and expiries (day 14) announced |

use opentelemetry::KeyValue;
use opentelemetry::metrics::{Counter, Gauge};
use std::sync::OnceLock;

struct Instruments {
    days_left: Gauge<i64>,
    warnings: Counter<u64>,
}

fn instruments() -> &'static Instruments {
    static I: OnceLock<Instruments> = OnceLock::new();
    I.get_or_init(|| {
        let m = opentelemetry::global::meter("seedship-coordinator");
        Instruments {
            days_left: m
                .i64_gauge("seedship.import_job.deadline_days_left")
                .with_description("Days left on the import job's running 14-day deadline")
                .with_unit("d")
                .build(),
            warnings: m
                .u64_counter("seedship.import_job.deadline_warnings")
                .with_description("Deadline warnings (days 10, 12, 13) and expiries (day 14)")
                .build(),
        }
    })
}

/// Records a deadline step of `job`.
pub fn deadline_warning(job: &str, deadline: &str, day: i64, days_left: i64) {
    let i = instruments();
    let labels = [KeyValue::new("job", job.to_string()), KeyValue::new("deadline", deadline.to_string())];
    i.days_left.record(days_left, &labels);
    let mut with_day = labels.to_vec();
    with_day.push(KeyValue::new("day", day));
    i.warnings.add(1, &with_day);
}

#[cfg(test)]
mod tests {
    use opentelemetry_sdk::metrics::data::{AggregatedMetrics, MetricData};
    use opentelemetry_sdk::metrics::{InMemoryMetricExporter, PeriodicReader, SdkMeterProvider};

    #[test]
    fn a_deadline_warning_sets_the_gauge_and_counts() {
        let exporter = InMemoryMetricExporter::default();
        let provider =
            SdkMeterProvider::builder().with_reader(PeriodicReader::builder(exporter.clone()).build()).build();
        opentelemetry::global::set_meter_provider(provider.clone());
        super::deadline_warning("job-a", "tracking_number", 12, 2);
        super::deadline_warning("job-a", "tracking_number", 13, 1);
        provider.force_flush().unwrap();
        let got = exporter.get_finished_metrics().unwrap();
        let mut gauge = None;
        let mut count = 0;
        for rm in &got {
            for sm in rm.scope_metrics() {
                for m in sm.metrics() {
                    match (m.name(), m.data()) {
                        ("seedship.import_job.deadline_days_left", AggregatedMetrics::I64(MetricData::Gauge(g))) => {
                            gauge = g.data_points().map(|p| p.value()).last();
                        }
                        ("seedship.import_job.deadline_warnings", AggregatedMetrics::U64(MetricData::Sum(s))) => {
                            count = s.data_points().map(|p| p.value()).sum::<u64>();
                        }
                        _ => {}
                    }
                }
            }
        }
        assert_eq!(gauge, Some(1), "the gauge holds the last days-left");
        assert_eq!(count, 2, "one count per warning");
    }
}
